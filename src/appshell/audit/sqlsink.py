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
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from appshell.audit.records import GENESIS, canonical, digest, seal
from appshell.audit.verify import Report

__all__ = ["SqlSink", "TABLE", "table_of", "verify_table", "read_rows", "recent_session_rows", "session_rows", "LOCK_TIMEOUT_MS", "STATEMENT_TIMEOUT_MS"]

TABLE = "appshell_audit"
LOCK_TIMEOUT_MS = 3000
STATEMENT_TIMEOUT_MS = 10000


def table_of(metadata: Any) -> Any:
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
    )


def _timeouts(engine: Any) -> None:
    """Every connection of the sink gives up on a lock or a slow statement instead of waiting for ever."""
    from sqlalchemy import event

    dialect = engine.dialect.name
    if dialect == "postgresql":
        statements = [f"SET lock_timeout = {LOCK_TIMEOUT_MS}", f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}",
                      f"SET idle_in_transaction_session_timeout = {STATEMENT_TIMEOUT_MS}"]
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


def _engine(url: str) -> Any:
    """The audit's own engine: synchronous, on the sync driver of an async URL's database (appshell.urls)."""
    from sqlalchemy import create_engine

    from appshell.engines import exempt
    from appshell.urls import missing_driver, sync_url

    sync = sync_url(url)
    try:
        if sync.startswith("sqlite"):
            engine = create_engine(sync, connect_args={"timeout": LOCK_TIMEOUT_MS / 1000})
        else:
            engine = create_engine(sync, pool_size=1, max_overflow=0)
            _timeouts(engine)
    except ModuleNotFoundError as exc:  # create_engine imports the driver
        raise missing_driver(url, exc, "the SQL audit sink") from None
    exempt(engine)  # the session's sandbox, read-only and SQL capture are not for the audit's own writes
    return engine


class SqlSink:
    """INSERTs this session's records, chained within the session."""

    name = "sql"
    TABLE = TABLE

    def __init__(self, url: str) -> None:
        from sqlalchemy import MetaData, inspect

        self.engine = _engine(url)
        metadata = MetaData()
        self.table = table_of(metadata)
        with self.engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns(TABLE)} if inspect(conn).has_table(TABLE) else None
        if columns is not None and "id" not in columns:
            raise RuntimeError(f"table {TABLE} has the old layout (one chain for all sessions); rename it "
                               f"(ALTER TABLE {TABLE} RENAME TO {TABLE}_v1) and appshell creates the new one")
        if columns is None:
            metadata.create_all(self.engine)
        self.seq, self.prev = 0, GENESIS

    def append(self, body: dict[str, Any]) -> dict[str, Any]:
        record = seal(body, self.seq + 1, self.prev)
        with self.engine.begin() as conn:
            conn.execute(self.table.insert().values(
                session=record["session"], seq=record["seq"], ts=record["ts"], event=record["event"],
                prev=record["prev"], hash=record["hash"], record=canonical(record).decode("utf-8"),
            ))
        self.seq, self.prev = record["seq"], record["hash"]
        return record

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def connected(url: str) -> Iterator[Any]:
    """A connection to the audit table's database, on an engine of its own, disposed after."""
    from sqlalchemy.exc import DBAPIError

    from appshell.errors import DatabaseUnavailable, connect_reason
    from appshell.redact import mask_url

    engine = _engine(url)
    try:
        try:
            conn = engine.connect()
        except (DBAPIError, OSError) as exc:
            raise DatabaseUnavailable(f"cannot connect to the audit table's database {mask_url(url)} ({mask_url(connect_reason(exc))})",
                                      "check --url (or APPSHELL_AUDIT_URL) and that the server is running") from None
        with conn:
            yield conn
    finally:
        engine.dispose()


def read_rows(url: str) -> list[tuple[int, str]]:
    """(id, record) of every row, in table order."""
    from sqlalchemy import text

    with connected(url) as conn:
        return [(int(i), str(r)) for i, r in conn.execute(text(f"SELECT id, record FROM {TABLE} ORDER BY id"))]


def recent_session_rows(url: str, count: int) -> list[str]:
    """The records of the last *count* sessions to start, in table order: two indexed queries, not a scan."""
    from sqlalchemy import bindparam, text

    with connected(url) as conn:
        ids = [r[0] for r in conn.execute(text(
            f"SELECT session FROM {TABLE} WHERE event = 'session_start' ORDER BY id DESC LIMIT :n"), {"n": count})]
        if not ids:
            return []
        query = text(f"SELECT record FROM {TABLE} WHERE session IN :ids ORDER BY id").bindparams(bindparam("ids", expanding=True))
        return [str(r[0]) for r in conn.execute(query, {"ids": ids})]


def session_rows(url: str, prefix: str) -> list[str]:
    """The records of the sessions whose id starts with *prefix*, in table order (the (session, seq) index)."""
    from sqlalchemy import text

    with connected(url) as conn:
        pattern = prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"  # '!': no dialect treats it specially
        rows = conn.execute(text(f"SELECT record FROM {TABLE} WHERE session LIKE :p ESCAPE '!' ORDER BY id"), {"p": pattern})
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
            missing = f"records {seq + 1}..{record.get('seq', 0) - 1} of session {session} are missing" if isinstance(record.get("seq"), int) and record["seq"] > seq + 1 else "out of order"
            return Report(False, f"{where} (session {session}, seq {record.get('seq')}): chain broken — {missing}: deleted or reordered", warnings)
        chains[session] = (record["seq"], record["hash"])
    if gaps:
        return Report(False, f"{TABLE}: ids {', '.join(gaps)} are missing between rows — rows were deleted "
                             "(or their inserts failed and were rolled back: check the sink's errors)", warnings)
    summary = (f"{TABLE}: {len(rows)} records in {len(chains)} sessions, every session's chain intact; "
               "a session whose last rows were deleted with nothing after them looks like a killed one — compare with the file (--witness)")
    return Report(True, summary, warnings)
