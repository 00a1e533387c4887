from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ownengine.db import Base


class Shelf(Base):
    __tablename__ = "shelves"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(40))


class Jar(Base):
    __tablename__ = "jars"
    id: Mapped[int] = mapped_column(primary_key=True)
    shelf_id: Mapped[int] = mapped_column(ForeignKey("shelves.id", ondelete="CASCADE"))
