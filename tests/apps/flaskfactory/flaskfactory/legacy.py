"""Models on a declarative base of their own (like Flask-AppBuilder's `Model`), not db.Model."""

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class LegacyBase(DeclarativeBase):
    pass


class LegacyUser(LegacyBase):
    __tablename__ = "ab_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))


class LegacyRole(LegacyBase):
    __tablename__ = "ab_role"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
