"""Context providers: a callable returning a mapping, and a generator with teardown."""

import os
import sys

from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str]


def context():
    engine = create_engine(os.environ["DATABASE_URL"])
    Base.metadata.create_all(engine)
    return {"engine": engine, "session": Session(engine), "Note": Note, "greeting": "hello from provider"}


def with_teardown():
    engine = create_engine(os.environ["DATABASE_URL"])
    Base.metadata.create_all(engine)
    yield {"engine": engine, "Note": Note}
    print("provider teardown ran", file=sys.stderr)
