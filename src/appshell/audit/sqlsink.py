"""The SQL sink: table ``appshell_audit``, one chain per session, no lock shared by the fleet.

Each session keeps its own chain in memory (``seq`` 1, 2, … and ``prev``) and
only ever INSERTs: it never reads the table, so it cannot be led to chain onto
rows someone else left, and it takes no lock another session could hold. Rows
are ordered by an identity column ``id``. The sink's connection has lock and
statement timeouts, so a lock held on the table makes the sink fail (and a
required audit refuse) instead of hanging the session.

Records are written on the sink's own connection, committed at once: a
rollback of the app's session — ``rollback()``, a sandbox, a crash — never
erases them.

The table is always named with its schema (:func:`schema_of`), by the sink and
by every reader, and the sink's PostgreSQL connections pin ``search_path``: an
unqualified name would follow the role's ``search_path``, whose first entry is
``"$user"`` — a role with CREATE on the database could make a schema named after
itself, put its own ``appshell_audit`` there, and catch (then truncate) every
later session's records while ``verify --url`` read the same decoy (issue 21).
"""
# Over 350 lines: the SQL sink's chain, its pinned schema
# and its failure modes are one contract with the database.

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from appshell.audit.records import GENESIS, canonical, digest, seal
from appshell.audit.verify import Report

__all__ = [
    "SqlSink",
    "TABLE",
    "SCHEMA",
    "schema_of",
    "table_at",
    "table_of",
    "verify_table",
    "read_rows",
    "recent_session_rows",
    "session_rows",
    "LOCK_TIMEOUT_MS",
    "STATEMENT_TIMEOUT_MS",
]

TABLE = "appshell_audit"
SCHEMA = "public"  # PostgreSQL's, unless the URL names a search_path (schema_of)
LOCK_TIMEOUT_MS = 3000
STATEMENT_TIMEOUT_MS = 10000


def _search_path(options: str) -> list[str] | None:
    """The schemas a libpq ``options`` string sets search_path to (``-c search_path=a,b``,
    ``-csearch_path=a``, ``--search_path=a``; the last one wins, as in the server), else None."""
    words = re.split(r"(?<!\\)\s+", options.strip())
    found = None
    i = 0
    while i < len(words):
        word, i = words[i], i + 1
        if word == "-c" and i < len(words):
            word, i = "-c" + words[i], i + 1
        if not word.startswith(("-c", "--")):
            continue
        name, _, value = word[2:].replace("\\ ", " ").partition("=")
        if name.strip().lower().replace("-", "_") == "search_path":
            found = value
    if found is None:
        return None
    names = []
    for entry in (e.strip() for e in found.split(",")):
        quoted = len(entry) >= 2 and entry[0] == entry[-1] == '"'
        names.append(
            entry[1:-1].replace('""', '"') if quoted else entry.lower()
        )  # unquoted names fold, as the server folds them
    return names


def schema_of(url: str) -> str | None:
    """Where the table lives: on PostgreSQL the first schema the URL's own search_path names
    (``?options=-csearch_path=audit``), else ``public`` — never the role's ``"$user"`` schema;
    on MySQL/MariaDB the URL's database; None on SQLite, which has no schemas to shadow it
    (another connection's TEMP tables are not this connection's)."""
    from sqlalchemy.engine import make_url

    from appshell.config.urls import sync_url

    parsed = make_url(sync_url(url))
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        options = parsed.query.get("options")
        text = options[-1] if isinstance(options, tuple) else options
        chosen = [n for n in _search_path(text or "") or [] if n not in ("$user", "pg_temp", "pg_catalog", "")]
        return chosen[0] if chosen else SCHEMA
    if backend in ("mysql", "mariadb"):
        return parsed.database or None
    return None


def table_at(url: str) -> Any:
    """The table of the sink at *url*, named with its schema."""
    from sqlalchemy import MetaData

    return table_of(MetaData(), schema_of(url))


def table_of(metadata: Any, schema: str | None = None) -> Any:
    from sqlalchemy import BigInteger, Column, Identity, Index, Integer, String, Table, Text

    return Table(
        TABLE,
        metadata,
        # The order of rows in the table; SQLite's INTEGER PRIMARY KEY is its rowid.
        Column("id", BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True),
        Column("session", String(64), nullable=False),
        Column("seq", BigInteger, nullable=False),  # position in the session's chain
        Column("ts", String(32), nullable=False),
        Column("event", String(32), nullable=False),
        Column("prev", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
        Column("record", Text, nullable=False),
        Index("appshell_audit_session_seq", "session", "seq", unique=True),
        schema=schema,
    )


def _timeouts(engine: Any, schema: str | None) -> None:
    """Every connection of the sink gives up on a lock or a slow statement instead of waiting for
    ever; on PostgreSQL its search_path is pinned to the sink's schema (pg_catalog first, so no
    function or operator of another schema stands in for a built-in one)."""
    from sqlalchemy import event

    dialect = engine.dialect.name
    if dialect == "postgresql":
        pinned = engine.dialect.identifier_preparer.quote_schema(schema or SCHEMA)
        statements = [
            f"SET lock_timeout = {LOCK_TIMEOUT_MS}",
            f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}",
            f"SET idle_in_transaction_session_timeout = {STATEMENT_TIMEOUT_MS}",
            f"SET search_path = pg_catalog, {pinned}",
        ]
    elif dialect in ("mysql", "mariadb"):
        seconds = max(1, LOCK_TIMEOUT_MS // 1000)
        statements = [f"SET SESSION innodb_lock_wait_timeout = {seconds}", f"SET SESSION lock_wait_timeout = {seconds}"]
    else:
        return  # SQLite: the busy timeout is a connect argument

    @event.listens_for(engine, "connect")
    def _set(dbapi_conn: Any, record: Any) -> None:
        cursor = dbapi_conn.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.close()
        if dialect == "postgresql":
            dbapi_conn.commit()


def audit_engine(url: str) -> Any:
    """The audit's own engine: synchronous, on the sync driver of an async URL's database (appshell.config.urls)."""
    from sqlalchemy import create_engine

    from appshell.config.urls import missing_driver, sync_url
    from appshell.safety.engines import exempt

    sync = sync_url(url)
    try:
        if sync.startswith("sqlite"):
            engine = create_engine(sync, connect_args={"timeout": LOCK_TIMEOUT_MS / 1000})
        else:
            engine = create_engine(sync, pool_size=1, max_overflow=0)
            _timeouts(engine, schema_of(url))
    except ModuleNotFoundError as exc:  # create_engine imports the driver
        raise missing_driver(url, exc, "the SQL audit sink") from None
    exempt(engine)  # the session's sandbox, read-only and SQL capture are not for the audit's own writes
    return engine


class SqlSink:
    """INSERTs this session's records, chained within the session."""

    name = "sql"
    TABLE = TABLE

    def __init__(self, url: str) -> None:
        from sqlalchemy import inspect

        self.engine = audit_engine(url)
        self.table = table_at(url)
        schema = self.table.schema
        with self.engine.connect() as conn:
            found = inspect(conn).has_table(TABLE, schema=schema)
            columns = {c["name"] for c in inspect(conn).get_columns(TABLE, schema=schema)} if found else None
        if columns is not None and "id" not in columns:
            name = f"{schema}.{TABLE}" if schema else TABLE
            raise RuntimeError(
                f"table {name} has the old layout (one chain for all sessions); rename it "
                f"(ALTER TABLE {name} RENAME TO {TABLE}_v1) and appshell creates the new one"
            )
        if columns is None:
            self.table.metadata.create_all(self.engine)
        self.seq, self.prev = 0, GENESIS

    def append(self, body: dict[str, Any]) -> dict[str, Any]:
        record = seal(body, self.seq + 1, self.prev)
        with self.engine.begin() as conn:
            conn.execute(
                self.table.insert().values(
                    session=record["session"],
                    seq=record["seq"],
                    ts=record["ts"],
                    event=record["event"],
                    prev=record["prev"],
                    hash=record["hash"],
                    record=canonical(record).decode("utf-8"),
                )
            )
        self.seq, self.prev = record["seq"], record["hash"]
        return record

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def connected(url: str) -> Iterator[Any]:
    """A connection to the audit table's database, on an engine of its own, disposed after."""
    from sqlalchemy.exc import DBAPIError

    from appshell.config.redact import mask_url
    from appshell.errors import DatabaseUnavailable, connect_reason

    engine = audit_engine(url)
    try:
        try:
            conn = engine.connect()
        except (DBAPIError, OSError) as exc:
            raise DatabaseUnavailable(
                f"cannot connect to the audit table's database {mask_url(url)} ({mask_url(connect_reason(exc))})",
                "check --url (or APPSHELL_AUDIT_URL) and that the server is running",
            ) from None
        with conn:
            try:
                yield conn
            except DBAPIError:
                _table_or_error(conn, url)  # a missing table is the operator's to fix, not a traceback
                raise
    finally:
        engine.dispose()


def _table_or_error(conn: Any, url: str) -> None:
    """Raise the one-line error for a database that has no audit table where appshell looks."""
    from sqlalchemy import inspect

    from appshell.config.redact import mask_url
    from appshell.errors import ConfigError

    conn.rollback()  # the failed statement's transaction, before asking the catalog
    schema = schema_of(url)
    if inspect(conn).has_table(TABLE, schema=schema):
        return
    name = f"{schema}.{TABLE}" if schema else TABLE
    moved = (
        f"; a table an older appshell made in another schema moves with ALTER TABLE … SET SCHEMA {schema} "
        "(docs/audit.md: the table's schema)"
        if conn.dialect.name == "postgresql"
        else ""
    )
    raise ConfigError(
        f"no table {name} in {mask_url(url)}", f"check --url (a session with the sql sink creates the table){moved}"
    ) from None


def read_rows(url: str) -> list[tuple[int, str]]:
    """(id, record) of every row, in table order."""
    from sqlalchemy import select

    t = table_at(url)
    with connected(url) as conn:
        return [(int(i), str(r)) for i, r in conn.execute(select(t.c.id, t.c.record).order_by(t.c.id))]


def recent_session_rows(url: str, count: int) -> list[str]:
    """The records of the last *count* sessions to start, in table order: two indexed queries, not a scan."""
    from sqlalchemy import select

    t = table_at(url)
    with connected(url) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                select(t.c.session).where(t.c.event == "session_start").order_by(t.c.id.desc()).limit(count)
            )
        ]
        if not ids:
            return []
        return [str(r[0]) for r in conn.execute(select(t.c.record).where(t.c.session.in_(ids)).order_by(t.c.id))]


def session_rows(url: str, prefix: str) -> list[str]:
    """The records of the sessions whose id starts with *prefix*, in table order (the (session, seq) index)."""
    from sqlalchemy import select

    t = table_at(url)
    with connected(url) as conn:
        pattern = (
            prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
        )  # '!': no dialect treats it specially
        rows = conn.execute(select(t.c.record).where(t.c.session.like(pattern, escape="!")).order_by(t.c.id))
        return [str(r[0]) for r in rows]


def verify_table(url: str) -> Report:
    """Every row's hash, every session's chain (seq 1, 2, … linked by prev), and no id missing between rows."""
    rows = read_rows(url)
    chains: dict[str, tuple[int, str]] = defaultdict(lambda: (0, GENESIS))
    warnings: list[str] = []
    last_id = None
    gaps: list[str] = []
    for row_id, raw in rows:
        where = f"{TABLE}#id={row_id}"
        if last_id is not None and row_id != last_id + 1:
            gaps.append(f"{last_id + 1}" + (f"..{row_id - 1}" if row_id - 1 > last_id + 1 else ""))
        last_id = row_id
        try:
            record = json.loads(raw)
        except ValueError:
            return Report(False, f"{where}: not a JSON record — the row was edited", warnings)
        if not isinstance(record, dict) or digest(record) != record.get("hash"):
            return Report(False, f"{where}: hash mismatch — the record was edited after it was written", warnings)
        session = str(record.get("session"))
        seq, prev = chains[session]
        if record.get("seq") != seq + 1 or record.get("prev") != prev:
            missing = (
                f"records {seq + 1}..{record.get('seq', 0) - 1} of session {session} are missing"
                if isinstance(record.get("seq"), int) and record["seq"] > seq + 1
                else "out of order"
            )
            return Report(
                False,
                f"{where} (session {session}, seq {record.get('seq')}): chain broken — {missing}: deleted or reordered",
                warnings,
            )
        chains[session] = (record["seq"], record["hash"])
    if gaps:
        return Report(
            False,
            f"{TABLE}: ids {', '.join(gaps)} are missing between rows — rows were deleted "
            "(or their inserts failed and were rolled back: check the sink's errors)",
            warnings,
        )
    summary = (
        f"{TABLE}: {len(rows)} records in {len(chains)} sessions, every session's chain intact; "
        "a session whose last rows were deleted with nothing after them "
        "looks like a killed one — compare with the file (--witness)"
    )
    return Report(True, summary, warnings)
