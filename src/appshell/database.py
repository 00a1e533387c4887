"""Database-side safety and visibility: read-only enforced by the server, SQL echo (SPEC §5)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

__all__ = ["ReadOnlyError", "enforce_read_only", "echo_sql", "READ_ONLY_SQL"]

# What makes each database refuse writes on a connection, raw SQL included.
READ_ONLY_SQL = {
    "sqlite": "PRAGMA query_only = ON",
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "mariadb": "SET SESSION TRANSACTION READ ONLY",
}


class ReadOnlyError(RuntimeError):
    """The session is read-only; raised in the user's code, so it is a normal traceback."""


def _session_target(session: Any) -> Any:
    # A scoped_session (Flask-SQLAlchemy's db.session) proxies a real Session.
    return session.registry() if hasattr(session, "registry") and callable(session.registry) else session


def enforce_read_only(engine: Engine, session: Session, profile: str) -> None:
    """Every connection refuses writes, and the ORM refuses a flush before the database does."""
    from sqlalchemy import event

    statement = READ_ONLY_SQL.get(engine.dialect.name)
    if statement is None:
        raise NotImplementedError(f"read-only is not supported on {engine.dialect.name}")

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(statement)
        cursor.close()
        if engine.dialect.name != "sqlite":
            dbapi_conn.commit()  # the SET opened a transaction on drivers without autocommit

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened before the listener must not be reused

    def before_flush(sess: Any, flush_context: Any, instances: Any) -> None:
        changes = len(sess.new) + len(sess.dirty) + len(sess.deleted)
        if changes:
            raise ReadOnlyError(
                f"this session is read-only (profile {profile}): {changes} pending change(s) not written — "
                "roll back with rollback(), or reopen appshell with --write"
            )

    event.listen(_session_target(session), "before_flush", before_flush)


def echo_sql(engine: Engine) -> None:
    """Print every statement the database runs, on stderr so stdout stays clean for data."""
    from sqlalchemy import event

    def show(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        print(f"-- SQL: {statement.strip()}", file=sys.stderr)

    event.listen(engine, "before_cursor_execute", show)
