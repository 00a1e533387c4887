"""Per-connection setup, enforced by the database itself (SPEC §5).

One ``connect`` listener runs, in order, on every new DBAPI connection of the
app's engine: tagging (``application_name``), timeouts, read-only, and last
the sandbox's outer transaction. The pool is emptied afterwards, so no
connection opened before (appshell's own reachability check) is reused.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

__all__ = ["ConnectionPlan", "configure_connections", "ReadOnlyError", "refuse_orm_writes", "SqlEcho", "backend", "run_statements"]

# How long a sandbox may sit idle inside its transaction on PostgreSQL before
# the server ends it: a forgotten sandbox must not hold locks for days.
SANDBOX_IDLE_TIMEOUT_MS = 15 * 60 * 1000


class ReadOnlyError(RuntimeError):
    """The session is read-only; raised in the user's code, so it is a normal traceback."""


def backend(engine: Engine) -> str:
    """sqlite, postgresql, mysql or mariadb."""
    dialect = engine.dialect
    return "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name


@dataclass(frozen=True)
class ConnectionPlan:
    read_only: bool = False
    statement_timeout_ms: int = 0
    application_name: str | None = None
    sandbox_begin: Callable[[Any], None] | None = None  # opens the sandbox's outer transaction


def _session_statements(kind: str, plan: ConnectionPlan) -> list[str]:
    out: list[str] = []
    if kind == "postgresql":
        if plan.application_name:
            out.append(f"SET application_name = '{plan.application_name}'")
        if plan.statement_timeout_ms:
            out.append(f"SET statement_timeout = {int(plan.statement_timeout_ms)}")
        if plan.sandbox_begin is not None:
            out.append(f"SET idle_in_transaction_session_timeout = {SANDBOX_IDLE_TIMEOUT_MS}")
        if plan.read_only:
            out.append("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    elif kind in ("mysql", "mariadb"):
        if plan.statement_timeout_ms:
            out.append(
                f"SET SESSION max_statement_time = {plan.statement_timeout_ms / 1000}"
                if kind == "mariadb"
                else f"SET SESSION max_execution_time = {int(plan.statement_timeout_ms)}"
            )
        if plan.read_only:
            out.append("SET SESSION TRANSACTION READ ONLY")
    elif kind == "sqlite" and plan.read_only:
        out.append("PRAGMA query_only = ON")
    return out


def run_statements(dbapi_conn: Any, *statements: str) -> None:
    """Run SQL on a raw DBAPI connection, below SQLAlchemy (connection setup, the sandbox's savepoints)."""
    cursor = dbapi_conn.cursor()
    for statement in statements:
        cursor.execute(statement)
    cursor.close()


_DEADLINE = "appshell_deadline"  # key in a pooled connection's info: when its statement must stop


def _sqlite_timeouts(engine: Engine, timeout_ms: int) -> None:
    """SQLite has no server-side timeout: a progress handler interrupts a statement past its deadline.

    The statement listeners are registered once per engine; each connection's
    deadline lives in its pool record's ``info``, which its progress handler reads.
    """
    from sqlalchemy import event

    def start(conn: Any, cursor: Any, *args: Any) -> None:
        conn.connection.info[_DEADLINE][0] = time.monotonic() + timeout_ms / 1000

    def stop(conn: Any, cursor: Any, *args: Any) -> None:
        conn.connection.info[_DEADLINE][0] = 0.0

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        deadline = record.info.setdefault(_DEADLINE, [0.0])
        dbapi_conn.set_progress_handler(lambda: int(bool(deadline[0]) and time.monotonic() > deadline[0]), 10_000)

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "before_cursor_execute", start)
    event.listen(engine, "after_cursor_execute", stop)


def configure_connections(engine: Engine, plan: ConnectionPlan) -> None:
    from sqlalchemy import event

    kind = backend(engine)
    if plan.read_only and kind not in ("sqlite", "postgresql", "mysql", "mariadb"):
        raise NotImplementedError(f"read-only is not supported on {kind}")
    statements = _session_statements(kind, plan)
    if kind == "sqlite" and plan.statement_timeout_ms:
        _sqlite_timeouts(engine, plan.statement_timeout_ms)

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        if statements:
            run_statements(dbapi_conn, *statements)
            if kind != "sqlite":
                dbapi_conn.commit()  # the SETs opened a transaction on drivers without autocommit
        if plan.sandbox_begin is not None:
            plan.sandbox_begin(dbapi_conn)  # last: the outer transaction starts after the session setup

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened before the listener must not be reused


def _session_target(session: Any) -> Any:
    # A scoped_session (Flask-SQLAlchemy's db.session) proxies a real Session.
    return session.registry() if hasattr(session, "registry") and callable(session.registry) else session


def refuse_orm_writes(session: Session, profile: str) -> None:
    """The ORM refuses a flush before the database would: a clearer message, naming --write."""
    from sqlalchemy import event

    def before_flush(sess: Any, flush_context: Any, instances: Any) -> None:
        changes = len(sess.new) + len(sess.dirty) + len(sess.deleted)
        if changes:
            raise ReadOnlyError(
                f"this session is read-only (profile {profile}): {changes} pending change(s) not written — "
                "roll back with rollback(), or reopen appshell with --write"
            )

    event.listen(_session_target(session), "before_flush", before_flush)


class SqlEcho:
    """Prints each SQL statement the database runs, on stderr (stdout stays clean for data)."""

    def __init__(self, engine: Engine, enabled: bool) -> None:
        from sqlalchemy import event

        self.enabled = enabled
        self.color = sys.stderr.isatty()
        event.listen(engine, "before_cursor_execute", self._show)

    def _show(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if not self.enabled:
            return
        text = statement.strip()
        if self.color:
            from pygments import highlight
            from pygments.formatters import TerminalFormatter
            from pygments.lexers import SqlLexer

            text = highlight(text, SqlLexer(), TerminalFormatter()).rstrip()
        shown = f"-- SQL\n{text}"
        if parameters:
            shown += f"\n-- parameters: {parameters!r}"
        print(shown, file=sys.stderr)

    def helper(self) -> Callable[..., None]:
        def echo_sql(on: bool = True) -> None:
            """Print each SQL statement as it runs: echo_sql() to start, echo_sql(False) to stop."""
            self.enabled = bool(on)

        return echo_sql
