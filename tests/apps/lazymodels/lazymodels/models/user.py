from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from lazymodels.models.base import Base


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(80))
