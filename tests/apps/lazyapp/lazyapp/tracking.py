"""Like a tracking library's client: it builds its own engine from the URL, lazily, on first use."""

import os

from sqlalchemy import Engine, create_engine, text

_engine: Engine | None = None


def get_engine() -> Engine:
    global _engine
    if _engine is None:
        _engine = create_engine(os.environ["DATABASE_URL"])
    return _engine


def track(name: str) -> None:
    with get_engine().begin() as conn:
        conn.execute(text("insert into items (name) values (:name)"), {"name": name})
