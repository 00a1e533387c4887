"""An app module that opens a session and queries while it is imported: its connection stays checked out."""

import os

from sqlalchemy import String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


engine = create_engine(os.environ["DATABASE_URL"])
Base.metadata.create_all(engine)
warm = Session(engine)  # not closed: its connection is checked out before appshell takes over
ITEMS_AT_IMPORT = warm.scalar(select(func.count()).select_from(Item))
