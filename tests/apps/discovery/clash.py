"""An app whose own names collide with the query vocabulary: a model `Decimal`, an app value `text`."""

import os

from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Decimal(Base):
    __tablename__ = "decimals"
    id: Mapped[int] = mapped_column(primary_key=True)


def context():
    return {"engine": create_engine(os.environ["DATABASE_URL"]), "Decimal": Decimal, "text": "the app's own text"}
