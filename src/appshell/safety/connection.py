"""One DBAPI connection, below SQLAlchemy: what appshell knows about it (ConnState), how to run SQL on it
and ask the database about it (in a transaction? read-only now? how it reads quotes?), and the drivers' names.

The bottom of safety/: the per-connection setup (appshell.safety.database), the sandbox and the guard
all stand on it, and it imports none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from appshell.errors import ReadOnlyError

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = [
    "ConnState",
    "ReadOnlyError",
    "backend",
    "dialect_kind",
    "run_statements",
    "fetch_rows",
    "in_transaction",
    "sqlite_of",
    "short_sql",
    "lexing_mismatch",
    "read_only_now",
    "classify_cached",
]


def dialect_kind(dialect: Any) -> str:
    """sqlite, postgresql, mysql or mariadb."""
    return "mariadb" if getattr(dialect, "is_mariadb", False) else str(dialect.name)


def backend(engine: Engine) -> str:
    """sqlite, postgresql, mysql or mariadb."""
    return dialect_kind(engine.dialect)


def run_statements(dbapi_conn: Any, *statements: str) -> None:
    """Run SQL on a raw DBAPI connection, below SQLAlchemy (connection setup, the sandbox's savepoints)."""
    cursor = dbapi_conn.cursor()
    for statement in statements:
        cursor.execute(statement)
    cursor.close()


def fetch_rows(dbapi_conn: Any, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
    """The rows of one query run on a raw DBAPI connection, below SQLAlchemy (what appshell asks the database)."""
    cursor = dbapi_conn.cursor()
    try:
        if params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


# SQLAlchemy's adapters of async drivers: the DBAPI connection an AsyncEngine's sync core sees.
ASYNCPG_ADAPTER = "sqlalchemy.dialects.postgresql.asyncpg"
AIOSQLITE_ADAPTER = "sqlalchemy.dialects.sqlite.aiosqlite"
AIOMYSQL_ADAPTER = "sqlalchemy.dialects.mysql.aiomysql"
ASYNCMY_ADAPTER = "sqlalchemy.dialects.mysql.asyncmy"


def sqlite_of(raw: Any) -> Any:
    """The sqlite3 connection under *raw*: itself, or the one aiosqlite's adapter drives in its own thread
    (its ``in_transaction`` and ``total_changes`` may be read from any thread); None for other drivers."""
    module = type(raw).__module__
    if module == "sqlite3":
        return raw
    if module == AIOSQLITE_ADAPTER:
        return getattr(raw.driver_connection, "_connection", None)  # aiosqlite's: None once closed
    return None


def in_transaction(raw: Any) -> bool | None:
    """Is a transaction open on this DBAPI connection? None where the driver cannot say without a round trip."""
    module = type(raw).__module__
    if module in ("sqlite3", AIOSQLITE_ADAPTER):
        conn = sqlite_of(raw)
        return None if conn is None else bool(conn.in_transaction)
    if module == ASYNCPG_ADAPTER:
        # The adapter begins asyncpg's transaction lazily, at its first statement, and keeps its own
        # note of it; asyncpg's protocol knows the server's status from its last reply: no round trip.
        driver = raw.driver_connection
        return None if driver.is_closed() else bool(driver.is_in_transaction())
    if module.startswith("psycopg2"):
        return int(raw.get_transaction_status()) in (1, 2, 3)  # ACTIVE, INTRANS, INERROR
    if module.startswith("psycopg"):
        return int(raw.info.transaction_status) in (1, 2, 3)  # ACTIVE, INTRANS, INERROR
    if module.startswith("pymysql"):
        return bool(raw.server_status & 1)  # SERVER_STATUS_IN_TRANS, from the last reply: no round trip
    if module in (AIOMYSQL_ADAPTER, ASYNCMY_ADAPTER):
        # aiomysql's and asyncmy's connections keep the server's status flags of the last reply, as pymysql does.
        driver = raw.driver_connection
        return None if driver is None else bool(driver.get_transaction_status())
    return None


# What says a connection is read-only now, per backend: (SQL, the answers that mean read-only).
_READ_ONLY_NOW = {
    # The current transaction's and the next ones' (SET default_transaction_read_only = off takes effect at the next).
    # standard_conforming_strings along: off, appshell's parser
    # would misread what follows (issue 25, F2) — read as lifted.
    "postgresql": (
        "SELECT pg_catalog.current_setting('transaction_read_only'), "
        "pg_catalog.current_setting('default_transaction_read_only'), "
        "pg_catalog.current_setting('standard_conforming_strings')"
    ),
    "mariadb": "SELECT @@session.tx_read_only",  # MariaDB before 11.1 has no transaction_read_only
    "mysql": "SELECT @@session.transaction_read_only",
}


# What says how the server reads quotes now (checked once per connection in sandbox and read-only sessions).
LEXING_NOW = {
    "postgresql": "SELECT pg_catalog.current_setting('standard_conforming_strings')",
    "mysql": "SELECT @@session.sql_mode",
    "mariadb": "SELECT @@session.sql_mode",
}


def lexing_mismatch(raw: Any, kind: str) -> str | None:
    """Why this connection's server reads quotes otherwise than appshell's parser (one round trip), or None."""
    sql = LEXING_NOW.get(kind)
    if sql is None:
        return None
    rows = fetch_rows(raw, sql)
    value = str(rows[0][0] if rows else "")
    if kind in ("mysql", "mariadb"):
        bad = [mode for mode in ("NO_BACKSLASH_ESCAPES", "ANSI_QUOTES", "ANSI") if mode in value.upper().split(",")]
        return f"its sql_mode has {', '.join(bad)}" if bad else None
    return None if value.lower() == "on" else f"its standard_conforming_strings is {value}"


def read_only_now(st: ConnState) -> bool | None:
    """Is this connection read-only now, by what the database says? None where it cannot be asked here."""
    if st.sqlite3:
        if st.raw is not st.sq:
            return None  # aiosqlite: its sqlite3 connection belongs to its own thread; the authorizer denies the PRAGMA
        st.own = True  # the authorizer lets appshell's own PRAGMA through
        try:
            row = st.sq.execute("PRAGMA query_only").fetchone()
        finally:
            st.own = False
        return bool(row and row[0])
    sql = _READ_ONLY_NOW.get(st.kind)
    if sql is None:
        return None
    rows = fetch_rows(st.raw, sql)
    return all(str(value).lower() in ("on", "1", "true") for value in rows[0])


def classify_cached(sql: str, kind: str) -> tuple[Any, ...]:
    from appshell.safety.statements import classify

    return classify(sql, kind)


def set_autocommit(raw: Any, on: bool) -> None:
    """Drivers' autocommit flag; an engine made with isolation_level='AUTOCOMMIT' set it on."""
    module = type(raw).__module__
    if module.startswith("psycopg") and bool(raw.autocommit) != on:
        raw.autocommit = on
    elif module.startswith("pymysql"):
        raw.autocommit(on)
    elif module == ASYNCPG_ADAPTER and not on and raw.autocommit:
        # An AUTOCOMMIT engine's adapter begins no transaction at all (its autocommit=False setter
        # goes back to the isolation level it was made with: autocommit again); None is the server's default.
        raw.set_isolation_level(None)


class ConnState:
    """What appshell knows about one DBAPI connection (a plain class: a dataclass costs start-up time)."""

    __slots__ = (
        "raw",
        "kind",
        "dialect",
        "deadline",
        "timed_out",
        "denied",
        "own",
        "autocommit",
        "sandboxed",
        "frames",
        "pending",
        "sq",
        "sqlite3",
        "busy",
        "marker",
        "discarded",
        "counted",
        "read_only_seen",
        "began",
    )

    def __init__(self, raw: Any, kind: str, dialect: Any) -> None:
        self.raw = raw
        self.kind = kind
        self.dialect = dialect
        self.deadline = 0.0  # SQLite: when the running statement must stop (0: none)
        self.timed_out = False
        self.denied: str | None = None  # SQLite: why the authorizer refused the statement being prepared
        self.own = False  # appshell's own statements are running: the authorizer lets them through
        self.autocommit = False  # the app asked for AUTOCOMMIT: in a sandbox each statement is "committed" at once
        self.sandboxed = False  # the sandbox's outer transaction and savepoint are open
        self.frames: list[Any] = []  # the sandbox's accounting, one frame per open savepoint
        # SQLite: a DML statement's changes, settled once fetched: (table, op), total_changes before, its cursor
        self.pending: tuple[tuple[str, str], int, Any] | None = None
        self.sq = sqlite_of(raw)  # the sqlite3 connection: the stdlib driver's, or the one under aiosqlite's adapter
        self.sqlite3 = self.sq is not None
        self.busy = (
            False  # aiosqlite: a statement runs in aiosqlite's thread (Ctrl-C interrupts it: _interrupt_aiosqlite)
        )
        # What the database says identifies the sandbox's transaction (PostgreSQL: transaction_timestamp();
        # MySQL/MariaDB: the session's transaction-statement counters), to tell it from one opened in its place.
        self.marker: Any = None
        self.discarded: Any = (
            None  # PostgreSQL: Counter of the rows the program's own rollbacks undid (the database's counts)
        )
        self.counted: Any = None  # the database's count of what this connection changed, once the connection ended
        self.began: tuple[int, bool] | None = (
            None  # MySQL/MariaDB: (the server's time when the sandbox began, InnoDB lists it from then)
        )
        self.read_only_seen: bool | None = (
            None  # PostgreSQL: the sandbox's round trip of this statement read the setting too
        )


def short_sql(sql: str) -> str:
    """A statement on one line, cut at 80 characters: for messages."""
    text = " ".join(sql.split())
    return text if len(text) <= 80 else text[:77] + "…"
