"""The sandbox: everything the session does is rolled back at exit (docs/safety.md).

Each connection of every engine opens one outer transaction and a savepoint
(:class:`appshell.database.Coverage` calls :meth:`Sandbox.begin`). Each
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
session stops: :class:`~appshell.errors.SandboxBroken`, exit 3.

Statements that would end or change the transaction (``COMMIT``, ``END``,
outer ``ROLLBACK``, ``RELEASE`` of the sandbox's savepoint, autocommit and
isolation changes, MySQL's implicitly committing statements — in
multi-statement strings too) are refused before they run.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appshell.database import AIOSQLITE_ADAPTER, ASYNCPG_ADAPTER, ConnState, in_transaction, run_statements, short_sql
from appshell.errors import Refused, SandboxBroken
from appshell.render import table
from appshell.statements import SANDBOX_SAVEPOINT

if TYPE_CHECKING:
    from appshell.statements import Statement

__all__ = ["Sandbox", "SandboxRefused"]

SAVEPOINT = SANDBOX_SAVEPOINT
_OPS = ("inserted", "updated", "deleted")
# What tells the sandbox's own transaction from one opened in its place (constant within a transaction; no
# transaction id is assigned, so it works on a read-only connection and on a hot standby too).
MARKER_SQL = "SELECT transaction_timestamp()"


class SandboxRefused(Refused):
    """A statement that would end or change the sandbox's transaction; raised in the user's code, not run."""


@dataclass
class Frame:
    """Changes since a savepoint: dropped when the program rolls back to it, kept when it commits."""

    name: str = SAVEPOINT
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    unknown: set[tuple[str, str]] = field(default_factory=set)  # a count the driver cannot give (a data-modifying CTE)
    ddl: list[str] = field(default_factory=list)

    def add(self, other: Frame) -> None:
        self.rows.update(other.rows)
        self.unknown |= other.unknown
        self.ddl.extend(d for d in other.ddl if d not in self.ddl)

    def empty(self) -> bool:
        return not any(self.rows.values()) and not self.unknown and not self.ddl


def _refuse_dbapi_commit(*args: Any, **kwargs: Any) -> None:
    raise SandboxRefused("commit() on the DBAPI connection would commit the sandbox's transaction: refused in the sandbox — run it without --sandbox")


_REFUSING: dict[type, type] = {}  # an async driver's adapter class -> its subclass that refuses commit()
_REFUSING_CLASSES: set[type] = set()


def _refusing(cls: type) -> type:
    sub = _REFUSING.get(cls)
    if sub is None:
        def commit(self: Any) -> None:
            _refuse_dbapi_commit()

        # Empty __slots__: the same layout, so an instance's __class__ may be switched to it and back.
        sub = type(cls.__name__, (cls,), {"__slots__": (), "__module__": cls.__module__, "__qualname__": cls.__qualname__, "commit": commit})
        _REFUSING[cls] = sub
        _REFUSING_CLASSES.add(sub)
    return sub


def _read_marker(raw: Any) -> Any:
    cursor = raw.cursor()
    try:
        cursor.execute(MARKER_SQL)
        row = cursor.fetchone()
        return row[0] if row else None
    finally:
        cursor.close()


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
        except Exception:  # noqa: BLE001 - see above
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
                run_statements(st.raw, "START TRANSACTION")  # a SAVEPOINT alone does not open one (the IN_TRANS flag stays off)
            run_statements(st.raw, f"SAVEPOINT {SAVEPOINT}")
            if st.kind == "postgresql":
                st.marker = _read_marker(st.raw)
        st.frames = [Frame()]
        st.sandboxed = True
        module = type(st.raw).__module__
        if module.startswith(("psycopg", "pymysql")):
            # The DBAPI connection's own commit() bypasses the dialect: these drivers' connections are
            # Python objects, so an instance attribute refuses it (sqlite3's: the authorizer does).
            st.raw.commit = _refuse_dbapi_commit
        elif module in (ASYNCPG_ADAPTER, AIOSQLITE_ADAPTER):
            # SQLAlchemy's adapter of an async driver has __slots__ (no instance attribute): it becomes,
            # for as long as it is sandboxed, a subclass whose commit() is refused. (aiosqlite's own
            # connection below it meets the authorizer too; asyncpg's is watched: in_transaction.)
            st.raw.__class__ = _refusing(type(st.raw))

    def _own(self, st: ConnState, *statements: str) -> None:
        with _owned(st):
            run_statements(st.raw, *statements)

    def _own_checked(self, st: ConnState, where: str, *statements: str) -> None:
        """appshell's own savepoint statements; the savepoint gone (released behind appshell's back) breaks the sandbox."""
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
        st.frames = [Frame()]

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
        st.frames = [Frame()]

    def end(self, st: ConnState) -> None:
        """The connection closes: its outer transaction is rolled back, and with it everything."""
        if not st.sandboxed:
            return
        st.sandboxed = False
        self._settle(st)
        if in_transaction(st.raw) is False:
            self._broke(st, "before the connection closed", raise_=False)
        else:
            self._verify(st, "before the connection closed", raise_=False)
        if not self.frozen:
            for frame in st.frames:
                self.left_open.add(frame)
        try:
            _quietly(st, st.raw.rollback)
        finally:
            if "commit" in getattr(st.raw, "__dict__", {}):
                del st.raw.commit
            elif type(st.raw) in _REFUSING_CLASSES:
                st.raw.__class__ = type(st.raw).__mro__[1]

    def freeze(self) -> None:
        """The program has ended: what it left uncommitted is counted now, before appshell rolls it back."""
        if any(st.sandboxed and st.marker is not None for st in self.conns.values()):
            from appshell import aio

            aio.sync_io(self._verify_all)  # an asyncpg connection's round trip runs inside SQLAlchemy's greenlet
        for st in list(self.conns.values()):
            if st.sandboxed:
                if in_transaction(st.raw) is False:
                    self._broke(st, "before the program's end (outside SQLAlchemy)", raise_=False)
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

    def _verify(self, st: ConnState, where: str, raise_: bool = True) -> None:
        """Is the open transaction still the sandbox's own? (PostgreSQL: one round trip.) A COMMIT then
        BEGIN sent through the driver's own execute() leaves a transaction open, but a new one."""
        if st.marker is None or self.broken is not None or in_transaction(st.raw) is False:
            return
        try:
            now = self._marker_of(st)
        except Exception:  # noqa: BLE001 - a dead connection, or a transaction in error: see below
            if raise_:
                raise
            try:  # an aborted transaction answers nothing until it returns to the savepoint — if it is the sandbox's
                self._own_checked(st, where, f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                now = self._marker_of(st)
            except SandboxBroken:
                return
            except Exception:  # noqa: BLE001 - a dead connection: the server drops its transaction; nothing to say
                return
        if now != st.marker:
            self._broke(st, f"{where}: another transaction was open in its place (COMMIT then BEGIN outside SQLAlchemy?)", raise_=raise_)

    def _marker_of(self, st: ConnState) -> Any:
        with _owned(st):
            return _read_marker(st.raw)

    def _verify_all(self) -> None:
        for st in list(self.conns.values()):
            if st.sandboxed:
                self._verify(st, "before the program's end (outside SQLAlchemy)", raise_=False)

    def _broke(self, st: ConnState, where: str, raise_: bool = True) -> None:
        error = SandboxBroken(
            f"the sandbox's transaction on {st.kind} ended {where} — changes may have been committed",
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
        self._check(st, f"before `{short_sql(statement)}` (a DBAPI commit() outside SQLAlchemy?)")
        for one in parsed:
            if one.escapes:
                raise SandboxRefused(f"{one.escapes}: `{short_sql(one.text)}` refused in the sandbox — run it without --sandbox")
        if st.sqlite3:
            self._settle(st)
            st.pending = (("", ""), st.sq.total_changes)

    def after(self, st: ConnState, cursor: Any, statement: str, parsed: Sequence[Statement]) -> None:
        if not st.sandboxed:
            return
        if in_transaction(st.raw) is False:
            self._broke(st, f"after `{short_sql(statement)}`")
        for other in list(self.conns.values()):  # every connection: one may have been committed from below meanwhile
            if other is not st and other.sandboxed and in_transaction(other.raw) is False:
                self._broke(other, f"outside SQLAlchemy, noticed after `{short_sql(statement)}` on another connection")
        top = st.frames[-1]
        several = sum(1 for one in parsed if one.writes) > 1
        for one in parsed:
            self._savepoint(st, one)
            top = st.frames[-1]
            if one.ddl:
                top.ddl.append(one.ddl)
            for table_name, op, main in one.writes:
                key = (table_name, op)
                if not main or several:
                    top.unknown.add(key)
                elif st.sqlite3:
                    # sqlite3's rowcount is unreliable with RETURNING; total_changes is exact once fetched.
                    st.pending = (key, st.pending[1] if st.pending else st.sq.total_changes)
                else:
                    top.rows[key] += max(cursor.rowcount, 0)
        if st.sqlite3 and st.pending is not None and st.pending[0] == ("", ""):
            st.pending = None
        if st.autocommit and not self.frozen:  # the app asked for AUTOCOMMIT: each statement counts as committed
            self.commit(st)

    def _savepoint(self, st: ConnState, one: Statement) -> None:
        if one.savepoint is None:
            return
        action, name = one.savepoint
        names = [f.name for f in st.frames]
        if action == "begin":
            st.frames.append(Frame(name))
        elif name in names:
            at = len(names) - 1 - names[::-1].index(name)
            if action == "release" and at > 0:
                for frame in st.frames[at:]:
                    st.frames[at - 1].add(frame)
                del st.frames[at:]
            elif action == "rollback":
                self._settle(st)
                del st.frames[at + 1:]
                st.frames[at] = Frame(name)

    def _settle(self, st: ConnState) -> None:
        if st.pending is not None and st.frames:
            key, before = st.pending
            st.pending = None
            if key != ("", ""):
                st.frames[-1].rows[key] += st.sq.total_changes - before

    # -- the summary --------------------------------------------------------------

    def summary(self) -> str:
        """What the dry run saw, honestly: through which engines, and what it cannot see."""
        engines = self.engines
        total = Frame()
        total.add(self.committed)
        total.add(self.left_open)
        covered = ", ".join(f"{url} ({kind})" for url, kind in engines.items()) or "none"
        lines: list[str] = []
        if total.empty():
            # Broken: what reached the database outside SQLAlchemy may be committed; the error itself comes last (cli).
            rolled = "those were rolled back, but the sandbox broke" if self.broken is not None else "all rolled back"
            lines.append(f"appshell: sandbox — no changes seen through the engines appshell covered; {rolled} ({covered})")
            return "\n".join(lines)
        tables = sorted({t for t, _ in total.rows} | {t for t, _ in total.unknown})
        rows = [[t, *(("?" if (t, op) in total.unknown else total.rows[(t, op)]) for op in _OPS)] for t in tables]
        lines.append("appshell: sandbox dry run — these changes were made, then rolled back:")
        if rows:
            lines.append(table(["table", *_OPS], rows))
        if total.ddl:
            lines.append("schema changes (rolled back): " + "; ".join(total.ddl))
        if total.unknown:
            lines.append("?: rows changed by a statement whose count the database does not report (a data-modifying CTE, several statements in one string)")
        if not self.left_open.empty():
            lines.append("some of these were never committed by the program: a run without --sandbox would not keep those either")
        if self.broken is not None:
            lines.append("but the sandbox broke: what reached the database outside SQLAlchemy may have been committed")
        lines.append(f"engines covered: {covered}")
        return "\n".join(lines)
