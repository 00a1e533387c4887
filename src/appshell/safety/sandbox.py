"""The sandbox: everything the session does is rolled back at exit (docs/safety.md).

Each connection of every engine opens one outer transaction and a savepoint
(:class:`appshell.safety.database.Coverage` calls :meth:`Sandbox.begin`). Each
engine's dialect is taken over: its commit only releases and re-opens that
savepoint, its rollback returns to it, and closing the connection rolls the
outer transaction back. This works below the ORM, so the app's own sessions,
raw SQL, Alembic and libraries are all inside it.

Why the dialect, and not SQLAlchemy's ``commit``/``rollback`` events: those
events are told of a commit, they cannot stop it. The dialect's ``do_commit``
*is* the commit. What bypasses the dialect — the DBAPI connection's own
``commit()`` — is denied by SQLite's authorizer, and on the other databases
detected: before and after every statement, and when a connection is
returned or closed, appshell checks that the outer transaction is still open
(the driver's transaction status, no round trip). On PostgreSQL a COMMIT then
BEGIN sent through the driver's own ``execute`` leaves *a* transaction open,
not the sandbox's. A commit or rollback meets that at once (the sandbox's
savepoint is gone with its transaction); and at the program's end and when a
connection closes, appshell reads ``transaction_timestamp()`` (one round trip
per connection) and compares it with the one it noted when it began — the
savepoint made again by hand does not pass for it. If a check fails, the
session stops: :class:`~appshell.errors.SandboxBroken`, exit 6.

Statements that would end or change the transaction (``COMMIT``, ``END``,
outer ``ROLLBACK``, ``RELEASE`` of the sandbox's savepoint, autocommit and
isolation changes, MySQL's implicitly committing statements and executable
comments — in multi-statement strings too) are refused before they run.

The parser is the first line, the database the last (issue 21): the sandbox's
transaction is identified by what the database says — PostgreSQL its
``transaction_timestamp()``, MySQL/MariaDB the session's own counts of
transaction statements (``Com_commit``, ``Com_rollback``, …), SQLite the
connection's ``in_transaction`` under an authorizer that denies every
transaction statement — read at the start, at each commit and rollback, after
each statement the parser cannot read (``DO``, ``EXECUTE``, ``CALL``, …) and at
the end. And the dry run's numbers come from the database's counters where it
keeps them: PostgreSQL's ``pg_stat_xact_user_tables`` per table (cascades,
triggers, functions, ``DO``, ``EXECUTE``, ``MERGE``, ``COPY`` included),
MySQL/MariaDB's ``innodb_trx.trx_rows_modified`` (a total), SQLite's
``total_changes()``.

A check that cannot be made is never a pass (issue 25): PostgreSQL's catalog objects, functions and operators
are named ``pg_catalog.…`` (a temporary view or a function earlier in ``search_path`` does not answer for
them), and a marker read that fails or reads nothing breaks the sandbox. MySQL/MariaDB's transaction starts
``WITH CONSISTENT SNAPSHOT``, so ``innodb_trx`` lists it from its start: at the end a transaction missing there,
or begun in a later second, is another one (an implied commit moves no ``Com_*`` counter).
"""
# Over 350 lines: one class whose sections (dialects, savepoints, detection, counting) share its state.

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appshell.errors import SandboxBroken, SandboxRefused
from appshell.safety.connection import (
    AIOMYSQL_ADAPTER,
    AIOSQLITE_ADAPTER,
    ASYNCMY_ADAPTER,
    ASYNCPG_ADAPTER,
    ConnState,
    fetch_rows,
    in_transaction,
    run_statements,
    short_sql,
)
from appshell.safety.statements import LEXING_REASON, SANDBOX_SAVEPOINT

if TYPE_CHECKING:
    from appshell.safety.statements import Statement

__all__ = ["Sandbox", "SandboxRefused"]

SAVEPOINT = SANDBOX_SAVEPOINT
OPS = ("inserted", "updated", "deleted")
# PostgreSQL, in one round trip: what tells the sandbox's own transaction from one opened in its place
# (transaction_timestamp() is constant within a transaction; no transaction id is assigned, so it works on a
# read-only connection and on a hot standby too), and the rows this transaction touched per table. Those
# counters include every row a statement touched — cascades, triggers, functions, DO, EXECUTE, MERGE, COPY —
# and the rows of savepoints rolled back too (the database counts attempts): the program's own rollbacks
# are taken off with a snapshot of the counters at each savepoint (Frame.db). The read-only settings come
# along, so that a guarded read-only session's re-check of the same statement costs no second round trip.
# Every catalog object and function is named with its schema, pg_catalog (operators too): a temporary view of
# the same name (pg_temp is searched first) or a function in a schema put before pg_catalog in search_path would
# otherwise answer in its place (issue 25, F1/F2).
MARKER_SQL = (
    "SELECT pg_catalog.transaction_timestamp(), pg_catalog.current_setting('transaction_read_only'), "
    "pg_catalog.current_setting('default_transaction_read_only'), "
    "pg_catalog.current_setting('standard_conforming_strings'), "
    "s.relname, s.n_tup_ins, s.n_tup_upd, s.n_tup_del FROM (SELECT 1) AS one "
    "LEFT JOIN pg_catalog.pg_stat_xact_user_tables AS s ON "
    "(s.n_tup_ins OPERATOR(pg_catalog.+) s.n_tup_upd OPERATOR(pg_catalog.+) s.n_tup_del) OPERATOR(pg_catalog.>) 0"
)
# MySQL/MariaDB have no transaction id a session can read exactly: information_schema.innodb_trx is a cache
# refreshed at most every 0.1 s (a read may be stale), and a read-only transaction's trx_id is 0. The session's
# own counts of transaction statements change whenever a COMMIT (AND CHAIN), ROLLBACK, BEGIN or XA statement
# runs, wherever it came from (an executable comment, a prepared statement, a stored procedure); the implicit
# commits of DDL clear the protocol's IN_TRANS flag (in_transaction(), no round trip).
MYSQL_MARKER_SQL = (
    "SHOW SESSION STATUS WHERE Variable_name IN "
    "('Com_commit', 'Com_rollback', 'Com_begin', 'Com_xa_commit', 'Com_xa_rollback', 'Com_xa_start', 'Com_xa_prepare')"
)
# The rows the transaction modified, all tables together (InnoDB keeps no count per table), net of rollbacks
# to savepoints. Read once, at the end, after the 0.1 s the cache may lag behind.
MYSQL_ROWS_SQL = (
    "SELECT trx_rows_modified, UNIX_TIMESTAMP(trx_started) FROM information_schema.innodb_trx "
    "WHERE trx_mysql_thread_id = connection_id()"
)
_INNODB_TRX_CACHE_S = 0.11
_REWRITE = re.compile(r"\bTYPE\b[\s\S]*\bUSING\b", re.I)
_SETVAL = re.compile(r"\bsetval\s*\(", re.I)
_ENGINE_SQL = (
    "SELECT t.ENGINE, e.TRANSACTIONS FROM information_schema.TABLES AS t JOIN information_schema.ENGINES AS e "
    "ON e.ENGINE = t.ENGINE WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_NAME = %s"
)
CASCADED = "(tables it cascaded to)"  # TRUNCATE … CASCADE: the tables that reference it, unnamed
OTHER_TABLES = "(other tables)"  # SQLite: rows a statement's cascades and triggers changed, tables unnamed
SOURCES = {
    "postgresql": "pg_stat_xact_user_tables",
    "mysql": "rowcount",
    "mariadb": "rowcount",
    "sqlite": "total_changes()",
}


@dataclass
class Frame:
    """Changes since a savepoint: dropped when the program rolls back to it, kept when it commits."""

    name: str = SAVEPOINT
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    unknown: set[tuple[str, str]] = field(default_factory=set)  # a count the driver cannot give (a data-modifying CTE)
    ddl: list[str] = field(default_factory=list)
    # PostgreSQL: (the database's counters, the connection's discarded rows) when this frame began.
    db: tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]] | None = None

    def add(self, other: Frame) -> None:
        self.rows.update(other.rows)
        self.unknown |= other.unknown
        self.ddl.extend(d for d in other.ddl if d not in self.ddl)

    def empty(self) -> bool:
        return not any(self.rows.values()) and not self.unknown and not self.ddl


def _refuse_dbapi_commit(*args: Any, **kwargs: Any) -> None:
    raise SandboxRefused(
        "commit() on the DBAPI connection would commit the sandbox's "
        "transaction: refused in the sandbox — run it without --sandbox"
    )


def _refusing_autocommit(original: Callable[[bool], Any]) -> Callable[[bool], Any]:
    def autocommit(value: bool) -> Any:
        if value:
            raise SandboxRefused(
                "autocommit(True) on the DBAPI connection would commit the sandbox's transaction: "
                "refused in the sandbox — run it without --sandbox"
            )
        return original(value)

    return autocommit


_REFUSING: dict[type, type] = {}  # an async driver's adapter class -> its subclass that refuses commit()
_REFUSING_CLASSES: set[type] = set()


def _refusing(cls: type) -> type:
    sub = _REFUSING.get(cls)
    if sub is None:

        def commit(self: Any) -> None:
            _refuse_dbapi_commit()

        members: dict[str, Any] = {
            "__slots__": (),
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "commit": commit,
        }
        if callable(
            getattr(cls, "autocommit", None)
        ):  # aiomysql's and asyncmy's adapters: autocommit(True) commits (F4)

            def autocommit(self: Any, value: Any) -> None:
                _refusing_autocommit(lambda on: cls.autocommit(self, on))(value)  # type: ignore[attr-defined]

            members["autocommit"] = autocommit
        # Empty __slots__: the same layout, so an instance's __class__ may be switched to it and back.
        sub = type(cls.__name__, (cls,), members)
        _REFUSING[cls] = sub
        _REFUSING_CLASSES.add(sub)
    return sub


def _read_marker(st: ConnState) -> tuple[Any, Counter[tuple[str, str]] | None]:
    """(what identifies the open transaction, the rows it touched per table — PostgreSQL only), one round trip."""
    if st.kind in ("mysql", "mariadb"):
        return tuple(
            sorted((str(name).lower(), int(value)) for name, value in fetch_rows(st.raw, MYSQL_MARKER_SQL))
        ), None
    rows = fetch_rows(st.raw, MARKER_SQL)
    if rows:
        st.read_only_seen = str(rows[0][1]).lower() == "on" and str(rows[0][2]).lower() == "on"
        if str(rows[0][3]).lower() != "on":  # a DO block or a function switched it off (issue 25, F2)
            raise RuntimeError(f"standard_conforming_strings is {rows[0][3]}: {LEXING_REASON}")
    counts: Counter[tuple[str, str]] = Counter()
    for _, _, _, _, name, ins, upd, dele in rows:
        if name is not None:
            counts.update(
                {(str(name), "inserted"): int(ins), (str(name), "updated"): int(upd), (str(name), "deleted"): int(dele)}
            )
    return (rows[0][0] if rows else None), +counts


@contextmanager
def _owned(st: ConnState) -> Iterator[None]:
    """appshell's own statements run on *st* (the authorizer and the accounting let them through)."""
    st.own = True
    try:
        yield
    finally:
        st.own = False


def _quietly(st: ConnState, fn: Callable[[], Any]) -> None:
    """appshell's own rollback of a connection; a dead connection (the server has dropped its transaction
    already) or a transaction ended behind appshell's back has nothing more to say."""
    with _owned(st):
        try:
            fn()
        except Exception:
            pass


class Sandbox:
    def __init__(self) -> None:
        self.committed = Frame("committed")  # what the program committed (into the sandbox)
        self.left_open = Frame("left open")  # what it had not committed when it ended
        self.frozen = False
        self.broken: SandboxBroken | None = None
        # Set by the Coverage that owns the connections:
        self.state: Callable[[Any], ConnState | None] = lambda conn: None
        self.conns: dict[int, ConnState] = {}
        self.engines: dict[str, str] = {}  # masked URL -> backend
        self._dialects: dict[int, Any] = {}
        # The database's own counts (docs/safety.md, the summary's "counted by"):
        self.db_committed: Counter[tuple[str, str]] = Counter()  # PostgreSQL, per table: committed by the program
        self.db_left_open: Counter[tuple[str, str]] = Counter()  # … and left uncommitted at its end
        self.db_totals: Counter[str] = Counter()  # MySQL/MariaDB: rows modified, all tables together, per backend
        self.db_unknown: set[str] = set()  # backends whose counts could not be read on some connection
        self.sources: dict[str, set[str]] = {}  # table -> where the parser-side numbers of it came from
        self.db_asked: set[str] = set()  # the counters each of these backends keeps were read at the end
        self.unread: set[str] = (
            set()
        )  # statements the parser could not read (DO, EXECUTE…): what they did may be uncounted
        self._engines: dict[
            int, dict[str, str | None]
        ] = {}  # MySQL/MariaDB, per connection: table -> its engine if not transactional

    # -- every engine's dialect ---------------------------------------------------

    def take_over(self, dialect: Any) -> None:
        """Commit, rollback and close of this dialect go through the sandbox (once per dialect)."""
        if self._dialects.get(id(dialect)) is dialect:
            return
        self._dialects[id(dialect)] = dialect
        cls = type(dialect)  # the class's own methods: an earlier session's takeover is not chained

        def do_commit(conn: Any) -> None:
            st = self.state(conn)
            if st is not None and st.sandboxed:
                self.commit(st)
            else:
                cls.do_commit(dialect, conn)

        def do_rollback(conn: Any) -> None:
            st = self.state(conn)
            if st is not None and st.sandboxed:
                self.rollback(st)
            else:
                cls.do_rollback(dialect, conn)

        def do_close(conn: Any) -> None:
            st = self.state(conn)
            if st is not None and st.sandboxed:
                self.end(st)
            cls.do_close(dialect, conn)

        dialect.do_commit, dialect.do_rollback, dialect.do_close = do_commit, do_rollback, do_close

    # -- one connection's transaction --------------------------------------------

    def begin(self, st: ConnState) -> None:
        with _owned(st):
            if st.kind == "sqlite":
                # pysqlite's own transaction handling defeats SAVEPOINT: take it over.
                st.raw.isolation_level = None
                run_statements(st.raw, "BEGIN")
            elif st.kind in ("mysql", "mariadb"):
                # A SAVEPOINT alone does not open one (the IN_TRANS flag stays off). WITH CONSISTENT SNAPSHOT starts
                # InnoDB's transaction now (under REPEATABLE READ), so innodb_trx lists it from the start: at the end,
                # a transaction missing there or begun later is another one (issue 25, F4: an implied commit).
                run_statements(st.raw, "START TRANSACTION WITH CONSISTENT SNAPSHOT")
                isolation = "tx_isolation" if st.kind == "mariadb" else "transaction_isolation"
                began = fetch_rows(st.raw, f"SELECT UNIX_TIMESTAMP(), @@session.{isolation}")
                st.began = (int(began[0][0]), str(began[0][1]).upper() == "REPEATABLE-READ") if began else None
            run_statements(st.raw, f"SAVEPOINT {SAVEPOINT}")
            frame = Frame()
            if st.kind in ("postgresql", "mysql", "mariadb"):
                st.marker, counts = _read_marker(st)
                if counts is not None:
                    st.discarded = Counter()
                    frame.db = (counts, Counter())
        st.frames = [frame]
        st.sandboxed = True
        module = type(st.raw).__module__
        if module.startswith(("psycopg", "pymysql")) and not module.startswith("psycopg2"):
            # The DBAPI connection's own commit() bypasses the dialect: these drivers' connections are
            # Python objects, so an instance attribute refuses it (sqlite3's: the authorizer does).
            # psycopg2's connection is a C type whose commit cannot be replaced: there, a commit() is detected
            # (in_transaction() from the driver's status, then the marker), not refused — docs/safety.md.
            st.raw.commit = _refuse_dbapi_commit
            if module.startswith("pymysql"):
                # autocommit(True) commits the open transaction, and no Com_* counter moves for it (issue 25, F4).
                st.raw.autocommit = _refusing_autocommit(st.raw.autocommit)
        elif module in (ASYNCPG_ADAPTER, AIOSQLITE_ADAPTER, AIOMYSQL_ADAPTER, ASYNCMY_ADAPTER):
            # SQLAlchemy's adapter of an async driver has __slots__ (no instance attribute): it becomes,
            # for as long as it is sandboxed, a subclass whose commit() is refused. (aiosqlite's own
            # connection below it meets the authorizer too; asyncpg's is watched: in_transaction.)
            st.raw.__class__ = _refusing(type(st.raw))

    def _own(self, st: ConnState, *statements: str) -> None:
        with _owned(st):
            run_statements(st.raw, *statements)

    def _own_checked(self, st: ConnState, where: str, *statements: str) -> None:
        """appshell's own savepoint statements; the savepoint gone
        (released behind appshell's back) breaks the sandbox."""
        try:
            self._own(st, *statements)
        except Exception as exc:
            text = str(exc).lower()
            if SAVEPOINT in text or "no such savepoint" in text or "does not exist" in text:
                self._broke(st, f"{where}: its savepoint was gone ({str(exc).splitlines()[0]})")
            raise

    def commit(self, st: ConnState) -> None:
        self._check(st, "at a commit")
        self._settle(st)
        self._own_checked(st, "at a commit", f"RELEASE SAVEPOINT {SAVEPOINT}", f"SAVEPOINT {SAVEPOINT}")
        if not self.frozen:
            for frame in st.frames:
                self.committed.add(frame)
        fresh = Frame()
        if st.marker is not None:
            counts = self._identity(st, "at a commit")
            if counts is not None:
                fresh.db = (counts, Counter(st.discarded))
        st.frames = [fresh]

    def rollback(self, st: ConnState) -> None:
        if self.broken is not None:
            # SANDBOX BROKEN was said already: the rollback of the pool's reset or of the app's teardown
            # undoes what it can, without a second error (a traceback through SQLAlchemy's "Exception during
            # reset"). Every further statement is still refused (before() -> _check).
            self._settle(st)
            st.frames = [Frame()]
            _quietly(st, st.raw.rollback)
            return
        self._check(st, "at a rollback")
        self._settle(st)
        self._own_checked(st, "at a rollback", f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
        first = st.frames[0] if st.frames else Frame()
        if st.marker is not None:
            counts = self._identity(st, "at a rollback")
            if counts is not None:
                self._rewound(st, first, counts)
        st.frames = [Frame(db=first.db)]

    def end(self, st: ConnState) -> None:
        """The connection closes: its outer transaction is rolled back, and with it everything."""
        if not st.sandboxed:
            return
        st.sandboxed = False
        self._settle(st)
        if in_transaction(st.raw) is False:
            self._broke(st, "before the connection closed", raise_=False)
        else:
            if st.kind in ("mysql", "mariadb") and not self.frozen:
                time.sleep(_INNODB_TRX_CACHE_S)  # see MYSQL_ROWS_SQL
            self._final(st, "before the connection closed")
        if not self.frozen:
            for frame in st.frames:
                self.left_open.add(frame)
        try:
            _quietly(st, st.raw.rollback)
        finally:
            if "commit" in getattr(st.raw, "__dict__", {}):
                del st.raw.commit
                st.raw.__dict__.pop("autocommit", None)
            elif type(st.raw) in _REFUSING_CLASSES:
                st.raw.__class__ = type(st.raw).__mro__[1]

    def freeze(self) -> None:
        """The program has ended: what it left uncommitted is counted now, before appshell rolls it back."""
        if any(st.sandboxed and st.marker is not None for st in self.conns.values()):
            from appshell.hooks import aio

            # An async driver's round trip runs inside SQLAlchemy's greenlet.
            aio.sync_io(self._final_all)
        for st in list(self.conns.values()):
            if st.sandboxed:
                if in_transaction(st.raw) is False:
                    self._broke(
                        st,
                        "before the program's end (by something that ran since the last check — a statement or a "
                        "driver call: the audit log lists them)",
                        raise_=False,
                    )
                self._settle(st)
                for frame in st.frames:
                    self.left_open.add(frame)
                st.frames = [Frame()]
        self.frozen = True

    # -- detection ----------------------------------------------------------------

    def _check(self, st: ConnState, where: str) -> None:
        if self.broken is not None:
            raise SandboxBroken(self.broken.what, self.broken.fix)
        if in_transaction(st.raw) is False:
            self._broke(st, where)

    def _verify(self, st: ConnState, where: str, raise_: bool = True) -> Counter[tuple[str, str]] | None:
        """Is the open transaction still the sandbox's own? (One round trip; PostgreSQL: with the rows it
        touched, returned.) A COMMIT then BEGIN sent through the driver's own execute() — or COMMIT AND CHAIN
        from an executable comment — leaves a transaction open, but a new one."""
        if st.marker is None or self.broken is not None or in_transaction(st.raw) is False:
            return None
        try:
            now, counts = self._marker_of(st)
        except Exception as exc:
            failed: Exception = exc
            if raise_:
                self._unconfirmed(st, where, failed, raise_)
                return None
            try:  # at the end: an aborted transaction answers nothing until it returns to the savepoint
                self._own_checked(st, where, f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                now, counts = self._marker_of(st)
            except SandboxBroken:
                return None
            except Exception as again:
                self._unconfirmed(st, where, again, raise_)
                return None
        if now is None:
            self._unconfirmed(st, where, None, raise_)
            return None
        if now != st.marker:
            self._broke(
                st,
                f"{where}: another transaction was open in its place (COMMIT then BEGIN outside SQLAlchemy, "
                "or COMMIT AND CHAIN?)",
                raise_=raise_,
            )
            return None
        return counts

    def _unconfirmed(self, st: ConnState, where: str, exc: Exception | None, raise_: bool) -> None:
        """The marker could not be read (or read nothing): never a pass (issue 25, F1)."""
        why = (
            f"its check failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            if exc
            else "its check read nothing"
        )
        self._broke(
            st,
            where,
            raise_=raise_,
            what=(
                f"appshell could not confirm its transaction survived on {st.kind} {where} ({why}) "
                "— changes may have been committed"
            ),
        )

    def _identity(self, st: ConnState, where: str) -> Counter[tuple[str, str]] | None:
        """_verify, where a failure to read the counters costs the summary its numbers, not the statement."""
        try:
            counts = self._verify(st, where)
        except SandboxBroken:
            raise
        except Exception:
            counts = None
        if counts is None and st.discarded is not None:
            self.db_unknown.add(st.kind)
            st.discarded = None
            for frame in st.frames:
                frame.db = None
        return counts if st.discarded is not None else None

    def _marker_of(self, st: ConnState) -> tuple[Any, Counter[tuple[str, str]] | None]:
        with _owned(st):
            return _read_marker(st)

    def _rewound(self, st: ConnState, frame: Frame, counts: Counter[tuple[str, str]]) -> None:
        """After a ROLLBACK TO *frame*'s savepoint: what the database counted since the frame began, less what
        earlier rollbacks inside it took off already, is undone (the counters keep counting attempts)."""
        if frame.db is None or st.discarded is None:
            return
        start, discarded_then = frame.db
        st.discarded.update((counts - start) - (st.discarded - discarded_then))
        frame.db = (counts, Counter(st.discarded))

    def _final(self, st: ConnState, where: str) -> None:
        """At the end of a connection's sandbox: its identity once more, and the database's count of what it changed."""
        if st.counted is not None or st.marker is None or self.broken is not None:
            return
        counts = self._verify(st, where, raise_=False)
        if self.broken is not None:
            return
        if st.kind in ("mysql", "mariadb"):
            try:
                with _owned(st):
                    rows = fetch_rows(st.raw, MYSQL_ROWS_SQL)
            except Exception:
                self.db_unknown.add(st.kind)
                return
            if st.began is not None:
                began, listed_from_start = st.began
                # Only under REPEATABLE READ does WITH CONSISTENT SNAPSHOT start InnoDB's transaction at once; under
                # another isolation level it starts at its first read, and a later trx_started says nothing.
                if listed_from_start and (not rows or (rows[0][1] is not None and int(rows[0][1]) > began)):
                    # SET autocommit = 1 then = 0 through the driver's own cursor commits with no Com_* counter moving.
                    self._broke(
                        st,
                        f"{where}: another transaction was open in its place (InnoDB's transaction "
                        f"{'began after the sandbox' if rows else 'of the sandbox is gone'}: an implicit commit — "
                        "SET autocommit through the driver's own cursor?)",
                        raise_=False,
                    )
                    return
            st.counted = Counter({"": int(rows[0][0]) if rows else 0})
            self.db_asked.add(f"innodb_trx on {st.kind}")
            if not self.frozen:
                self.db_totals[st.kind] += st.counted[""]
            return
        first = st.frames[0] if st.frames else None
        if counts is None or st.discarded is None or first is None or first.db is None:
            if st.kind == "postgresql":
                self.db_unknown.add(st.kind)
            return
        net = counts - st.discarded
        left = (counts - first.db[0]) - (st.discarded - first.db[1])
        st.counted = net
        self.db_asked.add(SOURCES[st.kind])
        if not self.frozen:
            self.db_left_open.update(left)
            self.db_committed.update(net - left)

    def _final_all(self) -> None:
        if any(st.sandboxed and st.kind in ("mysql", "mariadb") for st in self.conns.values()):
            time.sleep(_INNODB_TRX_CACHE_S)  # see MYSQL_ROWS_SQL
        for st in list(self.conns.values()):
            if st.sandboxed:
                self._final(
                    st,
                    "before the program's end (by something that ran since the last check — a statement or a driver "
                    "call: the audit log lists them)",
                )

    def _broke(self, st: ConnState, where: str, raise_: bool = True, what: str | None = None) -> None:
        error = SandboxBroken(
            what or f"the sandbox's transaction on {st.kind} ended {where} — changes may have been committed",
            "check the database by hand; the audit log names the statement",
        )
        if self.broken is None:
            self.broken = error
            print(f"\n{error.format()}\n", file=sys.stderr, flush=True)
        if raise_:
            raise error

    # -- statements ---------------------------------------------------------------

    def before(self, st: ConnState, statement: str, parsed: Sequence[Statement]) -> None:
        if not st.sandboxed:
            return
        self._check(st, f"before `{short_sql(statement)}` (by a statement or a driver call since the last check)")
        for one in parsed:
            if one.escapes:
                raise SandboxRefused(
                    f"{one.escapes}: `{short_sql(one.text)}` refused in the sandbox — run it without --sandbox"
                )
        if st.kind != "sqlite":
            self._non_transactional(st, statement, parsed)
        if st.sqlite3:
            self._settle(st)
            st.pending = (("", ""), st.sq.total_changes, None)

    def _non_transactional(self, st: ConnState, statement: str, parsed: Sequence[Statement]) -> None:
        """What a rollback does not undo is refused before it runs (issue 25, F7): setval() (PostgreSQL, MariaDB),
        and on MySQL/MariaDB a write to a table whose engine has no transactions (Aria, MyISAM, MEMORY…) —
        asked of information_schema once per table and connection."""
        if "setval" in statement.lower() and _SETVAL.search(statement):
            raise SandboxRefused(
                f"setval() sets a sequence, and a rollback does not undo it: `{short_sql(statement)}` "
                "refused in the sandbox — run it without --sandbox"
            )
        if st.kind not in ("mysql", "mariadb"):
            return
        for one in parsed:
            for table_name, _, _ in one.writes:
                engine = self._engine_of(st, table_name)
                if engine is not None:
                    raise SandboxRefused(
                        f"{table_name} is a {engine} table, which has no transactions: a rollback would not undo "
                        f"`{short_sql(one.text)}` — refused in the sandbox; run it without --sandbox"
                    )

    def _engine_of(self, st: ConnState, table_name: str) -> str | None:
        """The engine of *table_name* in the connection's current database when it is not transactional, else None."""
        cache = self._engines.setdefault(id(st.raw), {})
        if table_name not in cache:
            with _owned(st):
                rows = fetch_rows(st.raw, _ENGINE_SQL, (table_name,))
            cache[table_name] = str(rows[0][0]) if rows and str(rows[0][1]).upper() != "YES" else None
        return cache[table_name]

    def after(self, st: ConnState, cursor: Any, statement: str, parsed: Sequence[Statement]) -> None:
        if not st.sandboxed:
            return
        if in_transaction(st.raw) is False:
            self._broke(st, f"after `{short_sql(statement)}`")
        for other in list(self.conns.values()):  # every connection: one may have been committed from below meanwhile
            if other is not st and other.sandboxed and in_transaction(other.raw) is False:
                self._broke(other, f"noticed after `{short_sql(statement)}` on another connection")
        top = st.frames[-1]
        several = sum(1 for one in parsed if one.writes) > 1
        counted_by_db = st.discarded is not None  # PostgreSQL: the database's counters, read at commits and the end
        asked = False
        for one in parsed:
            asked = self._savepoint(st, one) or asked
            top = st.frames[-1]
            if one.ddl:
                top.ddl.append(one.ddl)
            if one.head == "TRUNCATE" and one.ddl:
                # No counter counts TRUNCATE's rows (pg_stat_xact_user_tables neither): "?", never 0 (issue 25, F8).
                for name in one.ddl.removeprefix("TRUNCATE ").split(", "):
                    top.unknown.add((name, "deleted"))
                if "CASCADE" in one.text.upper():
                    top.unknown.add((CASCADED, "deleted"))
            if one.head == "ALTER" and one.ddl and _REWRITE.search(one.text):
                # ALTER … TYPE … USING rewrites every row's value, and no counter counts it: "?" updated.
                top.unknown.add((one.ddl.split()[-1], "updated"))
            if one.opaque:
                self.unread.add(short_sql(one.text))
            if counted_by_db:
                continue
            for table_name, op, main in one.writes:
                key = (table_name, op)
                self.sources.setdefault(table_name, set()).add(SOURCES.get(st.kind, "rowcount"))
                if not main or several or one.head == "REPLACE":
                    top.unknown.add(key)  # REPLACE over an existing row is a delete and an insert: "?" for both
                    if one.head == "REPLACE":
                        top.unknown.add((table_name, "deleted"))
                elif st.sqlite3:
                    # sqlite3's rowcount is unreliable with RETURNING; total_changes is exact once fetched.
                    st.pending = (key, st.pending[1] if st.pending else st.sq.total_changes, cursor)
                else:
                    top.rows[key] += max(cursor.rowcount, 0)
        if st.sqlite3 and st.pending is not None and st.pending[0] == ("", ""):
            st.pending = None
        if not asked and st.marker is not None and any(one.opaque for one in parsed):
            # What the parser cannot read (DO, EXECUTE, CALL, …): is
            # the transaction still the sandbox's? One round trip.
            self._identity(st, f"after `{short_sql(statement)}`")
        if st.autocommit and not self.frozen:  # the app asked for AUTOCOMMIT: each statement counts as committed
            self.commit(st)

    def _savepoint(self, st: ConnState, one: Statement) -> bool:
        """The program's own savepoints, in the accounting; True where the database was asked (PostgreSQL)."""
        if one.savepoint is None:
            return False
        action, name = one.savepoint
        names = [f.name for f in st.frames]
        where = f"after `{short_sql(one.text)}`"
        if action == "begin":
            frame = Frame(name)
            if st.discarded is not None:
                counts = self._identity(st, where)
                frame.db = None if counts is None else (counts, Counter(st.discarded))
            st.frames.append(frame)
            return st.discarded is not None
        if name in names:
            at = len(names) - 1 - names[::-1].index(name)
            if action == "release" and at > 0:
                for frame in st.frames[at:]:
                    st.frames[at - 1].add(frame)
                del st.frames[at:]
            elif action == "rollback":
                self._settle(st)
                old = st.frames[at]
                if st.discarded is not None:
                    counts = self._identity(st, where)
                    if counts is not None:
                        self._rewound(st, old, counts)
                del st.frames[at + 1 :]
                st.frames[at] = Frame(name, db=old.db)
                return True
        return False

    def _settle(self, st: ConnState) -> None:
        if st.pending is not None and st.frames:
            key, before, cursor = st.pending
            st.pending = None
            if key == ("", ""):
                return
            changes = st.sq.total_changes - before
            # rowcount is the statement's own rows (sqlite3_changes); total_changes adds what its cascades and
            # triggers changed in other tables — which SQLite does not name: counted apart, as "other tables".
            own = getattr(cursor, "rowcount", -1)
            own = own if isinstance(own, int) and 0 <= own <= changes else changes
            st.frames[-1].rows[key] += own
            if changes > own:
                st.frames[-1].rows[(OTHER_TABLES, key[1])] += changes - own
                self.sources.setdefault(OTHER_TABLES, set()).add("total_changes()")
