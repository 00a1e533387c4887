"""The sandbox: everything the session does is rolled back at exit (SPEC §5).

Each connection of the app's engine opens one outer transaction and a
savepoint. The dialect's commit only releases and re-opens that savepoint,
its rollback returns to it, and closing the connection rolls the outer
transaction back. This works below the ORM, so the app's own session —
a sessionmaker's, Flask-SQLAlchemy's scoped one — and raw SQL are all inside
it. If the process dies, the database drops the connection and with it the
transaction (SQLite: the hot journal is rolled back at the next open).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from appshell.database import backend, run_statements
from appshell.render import table

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["Sandbox", "SandboxRefused"]

SAVEPOINT = "appshell_sandbox"
_DML = re.compile(r"^\s*(INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+([^\s(]+)", re.I)
# What MySQL and MariaDB commit implicitly: it cannot be rolled back, so a sandbox refuses it.
_NOT_TRANSACTIONAL = re.compile(r"^\s*(CREATE|ALTER|DROP|TRUNCATE|RENAME)\b", re.I)
_OPS = {"INSERT": "inserted", "UPDATE": "updated", "DELETE": "deleted"}


class SandboxRefused(RuntimeError):
    """A statement the database cannot roll back; raised in the user's code."""


class Sandbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.kind = backend(engine)
        self.changes: Counter[tuple[str, str]] = Counter()
        self._before_changes = 0
        # SQLite: (key, connection, total_changes before) of the last DML statement,
        # settled later — with RETURNING, rows change only as they are fetched.
        self._pending: tuple[tuple[str, str], Any, int] | None = None

    # -- the connection's transaction -----------------------------------------

    def begin(self, dbapi_conn: Any) -> None:
        if self.kind == "sqlite":
            # pysqlite's own transaction handling defeats SAVEPOINT: take it over.
            dbapi_conn.isolation_level = None
            run_statements(dbapi_conn, "BEGIN")
        run_statements(dbapi_conn, f"SAVEPOINT {SAVEPOINT}")

    def _commit(self, dbapi_conn: Any) -> None:
        run_statements(dbapi_conn, f"RELEASE SAVEPOINT {SAVEPOINT}", f"SAVEPOINT {SAVEPOINT}")

    def _rollback(self, dbapi_conn: Any) -> None:
        run_statements(dbapi_conn, f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")

    def _close(self, dbapi_conn: Any) -> None:
        self._settle()
        try:
            dbapi_conn.rollback()  # the outer transaction: everything goes
        finally:
            dbapi_conn.close()

    def install(self) -> None:
        from sqlalchemy import event

        dialect: Any = self.engine.dialect
        dialect.do_commit = self._commit
        dialect.do_rollback = self._rollback
        dialect.do_close = self._close
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)

    # -- the dry run's accounting ---------------------------------------------

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.kind in ("mysql", "mariadb") and _NOT_TRANSACTIONAL.match(statement):
            raise SandboxRefused(
                f"{statement.split()[0].upper()} cannot be rolled back on {self.kind} (it commits implicitly): "
                "refused in the sandbox — run it without --sandbox"
            )
        if self.kind == "sqlite":
            self._settle()
            self._before_changes = conn.connection.dbapi_connection.total_changes

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        match = _DML.match(statement)
        if not match:
            return
        key = (match[2].strip('"`[]'), _OPS[match[1].split()[0].upper()])
        if self.kind == "sqlite":
            # sqlite3's rowcount is unreliable with RETURNING; total_changes is exact once fetched.
            self._pending = (key, conn.connection.dbapi_connection, self._before_changes)
        else:
            self.changes[key] += max(cursor.rowcount, 0)

    def _settle(self) -> None:
        if self._pending is not None:
            key, dbapi_conn, before = self._pending
            self._pending = None
            self.changes[key] += dbapi_conn.total_changes - before

    def summary(self) -> str:
        if not any(self.changes.values()):
            return "appshell: sandbox — no rows were changed; nothing to roll back"
        tables = sorted({t for t, _ in self.changes})
        rows = [[t, *(self.changes[(t, op)] for op in ("inserted", "updated", "deleted"))] for t in tables]
        return "appshell: sandbox dry run — these changes were made, then rolled back:\n" + table(
            ["table", "inserted", "updated", "deleted"], rows
        )
