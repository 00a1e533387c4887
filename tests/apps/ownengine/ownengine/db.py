"""The app's engine factory, which its web process calls at startup. SQLite enforces foreign keys
(and so ON DELETE CASCADE) only on connections that turn them on: the factory's listener does."""

import os

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


def make_engine(url: str | None = None) -> Engine:
    engine = create_engine(url or os.environ["DATABASE_URL"])

    @event.listens_for(engine, "connect")
    def foreign_keys_on(dbapi_connection, connection_record):  # type: ignore[no-untyped-def]
        if engine.dialect.name == "sqlite":
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine
