"""Providers handing appshell objects rather than mappings: what it can use, and what it cannot."""

import os
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import sessionmaker

from dbinterface.database import Database


def get_database() -> Database:
    db = Database(os.environ["DB_URL"])
    db.create_database()
    return db


@dataclass
class Settings:
    debug: bool = False
    database_url: str = ""


def get_settings() -> Settings:
    """The app's settings object: no engine, no session, no models in it."""
    return Settings(database_url=os.environ["DB_URL"])


def nothing() -> None:
    """A provider that forgot its `return`."""


class Replicated:
    """A writer and a reader engine, neither named `engine`, and a session factory for each."""

    def __init__(self) -> None:
        self.writer: Engine = create_engine(os.environ["DB_URL"])
        self.reader: Engine = create_engine(os.environ["READER_URL"])


def replicated() -> Replicated:
    return Replicated()


class TwoFactories:
    def __init__(self) -> None:
        self._engine = create_engine(os.environ["DB_URL"])
        self._sessions = sessionmaker(self._engine)
        self._batch_sessions = sessionmaker(self._engine, autoflush=False)


def two_factories() -> TwoFactories:
    return TwoFactories()
