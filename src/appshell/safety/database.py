"""Per-connection setup of every engine in the process, enforced by the database itself (docs/safety.md).

:class:`Coverage` sets up each DBAPI connection of every SQLAlchemy engine
once, the first time appshell sees it — when the pool hands it out, or when a
connection checked out before appshell took over runs its next statement: a
transaction it holds from before is rolled back first (read-only and sandbox
sessions), then come tagging (``application_name``), timeouts, read-only, and
last the sandbox's outer transaction. The listeners are class-level
(:mod:`appshell.safety.engines`), so engines made later are covered too.

Read-only by a session setting is *guarded*: after every statement the parser
cannot prove harmless, the setting is read back from the database
(:func:`read_only_now`), and a session that finds it switched off stops
(:class:`~appshell.errors.ReadOnlyLifted`, exit 6). A read-only role is
*enforced* by the database, and not re-checked.
"""
# Over 350 lines: Coverage: one set of listeners whose events share one table of ConnState.

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appshell.errors import ReadOnlyLifted, SandboxRefused
from appshell.process import PROCESS
from appshell.safety.connection import (
    LEXING_NOW,
    ConnState,
    ReadOnlyError,
    backend,
    classify_cached,
    dialect_kind,
    in_transaction,
    lexing_mismatch,
    read_only_now,
    run_statements,
    set_autocommit,
    short_sql,
)
from appshell.safety.raw_connect import watch_raw_connects

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from appshell.safety.sandbox import Sandbox

__all__ = ["ConnectionPlan", "Coverage", "refuse_orm_writes", "configure_connections"]

# SQLite authorizer action codes (sqlite3.h): what the sandbox and read-only deny below the parser.
_SQLITE_PRAGMA, _SQLITE_TRANSACTION, _SQLITE_SAVEPOINT = 19, 22, 32
_SQLITE_OK, _SQLITE_DENY = 0, 1


@dataclass(frozen=True)
class ConnectionPlan:
    read_only: bool = False
    statement_timeout_ms: int = 0
    idle_in_transaction_timeout_ms: int = 0
    application_name: str | None = None
    fresh_connections: bool = False  # close the pooled connections made before (they logged in as another role)


def _session_statements(kind: str, plan: ConnectionPlan) -> list[str]:
    out: list[str] = []
    if kind == "postgresql":
        if plan.application_name:
            out.append(f"SET application_name = '{plan.application_name}'")
        if plan.statement_timeout_ms:
            out.append(f"SET statement_timeout = {int(plan.statement_timeout_ms)}")
        if plan.idle_in_transaction_timeout_ms:
            out.append(f"SET idle_in_transaction_session_timeout = {int(plan.idle_in_transaction_timeout_ms)}")
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


class Coverage:
    """Every connection of every engine, set up once each; the refusals that read SQL before it runs."""

    def __init__(self, plan: ConnectionPlan, sandbox: Sandbox | None = None, profile: str = "") -> None:
        self.plan = plan
        self.sandbox = sandbox
        self.profile = profile
        self.conns: dict[int, ConnState] = {}
        self.engines: dict[str, str] = {}  # masked URL -> backend, in the order seen
        self.reads_sql = plan.read_only or sandbox is not None
        self.closed = False  # the session is over: connections made from now on are not this session's
        # Read-only by a session setting is *guarded*: an operator's SQL could switch it off, so the setting is read
        # back after every statement the parser cannot prove harmless. A read-only role (fresh_connections: every
        # connection logs in as it) is *enforced* by the database: nothing to re-check.
        self.guarded = plan.read_only and not plan.fresh_connections
        self.lifted: ReadOnlyLifted | None = None  # the setting was found switched off: every statement is refused
        self._sigint = False  # the SIGINT handler that interrupts aiosqlite's statements is installed
        if sandbox is not None:
            sandbox.state, sandbox.conns, sandbox.engines = self.state, self.conns, self.engines

    # -- installing -------------------------------------------------------------

    def install(self) -> None:
        from appshell.safety.engines import existing, is_exempt, on_every_engine

        on_every_engine("checkout", self._on_checkout, pool=True)
        on_every_engine("close", self._forget, pool=True)
        on_every_engine("close_detached", self._forget_raw, pool=True)
        on_every_engine("engine_connect", self._on_engine_connect)
        on_every_engine("before_cursor_execute", self._before)
        on_every_engine("after_cursor_execute", self._after)
        on_every_engine("handle_error", self._on_error)
        on_every_engine("set_connection_execution_options", self._on_options)
        on_every_engine("set_engine_execution_options", self._on_options)
        PROCESS.coverage = self  # the rules raw connects are checked against: this session's, from now on
        if not self.reads_sql and not self.plan.fresh_connections:
            return  # connections made before are set up lazily, at their next statement: no heap walk at start-up
        watch_raw_connects()
        # A driver imported during the session (the first AsyncEngine on aiosqlite a statement makes) is
        # wrapped before SQLAlchemy's first connect through it, so that connect is still SQLAlchemy's own.
        on_every_engine("do_connect", lambda *args: watch_raw_connects())
        engines, fairies = existing()
        for engine in engines:
            if is_exempt(engine.dialect):
                continue
            self._note(engine)
            if self.plan.fresh_connections:
                engine.pool.dispose()
            if self.sandbox is not None:
                self.sandbox.take_over(engine.dialect)
        for fairy in fairies:  # checked out before appshell took over: set up now, not at their next use
            if not is_exempt(fairy._pool._dialect):
                self.ensure(fairy.dbapi_connection, fairy._pool._dialect)

    def _note(self, engine: Any) -> None:
        from appshell.config.redact import mask_url

        url = mask_url(engine.url.render_as_string(hide_password=True))
        if engine.url.get_backend_name() == "sqlite" and engine.url.database:
            from pathlib import Path

            path = Path(engine.url.database)
            if path.is_absolute() and path.is_relative_to(Path.cwd()):
                url = f"sqlite:///{path.relative_to(Path.cwd())}"  # short, and the same wherever the project lives
        if url not in self.engines:
            self.engines[url] = backend(engine)

    # -- one connection ---------------------------------------------------------

    def state(self, conn: Any) -> ConnState | None:
        """The state of a DBAPI connection, or of the pool's proxy for one."""
        raw = getattr(conn, "dbapi_connection", conn)
        st = self.conns.get(id(raw))
        return st if st is not None and st.raw is raw else None

    def ensure(self, raw: Any, dialect: Any) -> ConnState:
        st = self.conns.get(id(raw))
        if st is not None and st.raw is raw:
            return st
        st = ConnState(raw=raw, kind=dialect_kind(dialect), dialect=dialect)
        self.conns[id(raw)] = st
        if self.reads_sql and in_transaction(raw):
            raw.rollback()  # work left open from before appshell took over must not be committed under its rules
        statements = _session_statements(st.kind, self.plan)
        if statements:
            run_statements(raw, *statements)
            if st.kind != "sqlite":
                raw.commit()  # the SETs opened a transaction on drivers without autocommit
        if self.reads_sql and st.kind in LEXING_NOW:
            self._lexing_at_start(st)
        if st.sqlite3:
            self._sqlite(st)
            if st.raw is not st.sq:
                self._interrupt_aiosqlite()
        if self.sandbox is not None:
            self.sandbox.take_over(dialect)
            asked = getattr(dialect, "_on_connect_isolation_level", None) or getattr(dialect, "isolation_level", None)
            st.autocommit = str(asked or "").upper() == "AUTOCOMMIT" or getattr(raw, "autocommit", None) is True
            set_autocommit(raw, False)
            self.sandbox.begin(st)
        return st

    def _lexing_at_start(self, st: ConnState) -> None:
        """A connection whose server reads quotes differently from appshell's parser (PostgreSQL's
        standard_conforming_strings off; MySQL/MariaDB's sql_mode with NO_BACKSLASH_ESCAPES or ANSI_QUOTES): the
        sandbox and read-only refuse to start on it, in one line (issue 25, F2) — appshell does not read SQL
        that way."""
        what = lexing_mismatch(st.raw, st.kind)
        if what:
            from appshell.errors import LexingRefused

            if st.kind != "sqlite" and in_transaction(st.raw):
                st.raw.rollback()
            del self.conns[id(st.raw)]
            mode = "sandbox" if self.sandbox is not None else "read-only session"
            raise LexingRefused(
                f"this {mode} cannot start on a {st.kind} connection where {what}: appshell's parser reads "
                "SQL the default way and would misread statements — refused; connect with the default setting"
            )

    def _sqlite(self, st: ConnState) -> None:
        """SQLite has no server-side timeout and no interrupt from a signal: a progress handler does both;
        an authorizer refuses, below the parser, what would end the sandbox or lift read-only."""
        timeout = self.plan.statement_timeout_ms

        def progress() -> int:
            if st.deadline and time.monotonic() > st.deadline:
                st.timed_out = True
                return 1
            return 0  # Ctrl-C: Python's SIGINT handler raises inside this call, and SQLite stops the statement

        _on_sqlite_thread(st, "set_progress_handler", progress, 1000 if timeout else 10_000)
        if not self.reads_sql:
            return
        sandbox, read_only = self.sandbox is not None, self.plan.read_only

        def authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
            if st.own:
                return _SQLITE_OK
            if sandbox and action == _SQLITE_TRANSACTION:
                st.denied = f"{arg1} would end the sandbox's transaction"
                return _SQLITE_DENY
            if (
                sandbox
                and action == _SQLITE_SAVEPOINT
                and arg1 == "RELEASE"
                and (arg2 or "").lower() == "appshell_sandbox"
            ):
                st.denied = "RELEASE of the sandbox's savepoint"
                return _SQLITE_DENY
            if read_only and action == _SQLITE_PRAGMA and (arg1 or "").lower() == "query_only" and arg2 is not None:
                st.denied = "PRAGMA query_only would lift read-only"
                return _SQLITE_DENY
            return _SQLITE_OK

        _on_sqlite_thread(st, "set_authorizer", authorizer)

    def _interrupt_aiosqlite(self) -> None:
        """Ctrl-C stops an aiosqlite statement as it stops a sqlite3 one. The statement runs in aiosqlite's
        thread, where Python's SIGINT handler never runs: the KeyboardInterrupt would leave it running, and
        every later call on the connection (the rollback at exit too) queued behind it for ever. So while
        one runs, SIGINT interrupts it (sqlite3's interrupt() may be called from any thread), and it fails
        with "interrupted", which _on_error turns into the KeyboardInterrupt, raised where the statement was."""
        import signal
        import threading

        if self._sigint or threading.current_thread() is not threading.main_thread():
            return
        self._sigint = True
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: Any) -> None:
            running = [st for st in self.conns.values() if st.busy and st.sq is not None]
            if running:
                for st in running:
                    st.sq.interrupt()
                return
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_sigint)

    # -- the events ---------------------------------------------------------------

    def _on_checkout(self, raw: Any, record: Any, fairy: Any) -> None:
        from appshell.safety.engines import is_exempt

        if not self.closed and not is_exempt(fairy._pool._dialect):
            self.ensure(raw, fairy._pool._dialect)

    def _on_engine_connect(self, conn: Any) -> None:
        self._note(conn.engine)

    def _forget(self, raw: Any, record: Any) -> None:
        self._forget_raw(raw)

    def _forget_raw(self, raw: Any) -> None:
        st = self.state(raw)
        if st is None:
            return
        if self.sandbox is not None and st.sandboxed:
            self.sandbox.end(st)  # the pool's close event comes before the dialect's do_close
        del self.conns[id(raw)]

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        raw = conn.connection.dbapi_connection
        if self.closed:
            return
        st = self.ensure(raw, conn.dialect)
        st.denied = None
        if self.lifted is not None:
            raise ReadOnlyLifted(self.lifted.what, self.lifted.fix)
        if self.reads_sql:
            from appshell.safety.statements import classify

            parsed = classify(statement, st.kind)
            for one in parsed:
                if one.lexing:
                    from appshell.errors import LexingRefused
                    from appshell.safety.statements import LEXING_REASON

                    mode = "sandbox" if self.sandbox is not None else "read-only session"
                    raise LexingRefused(
                        f"{one.lexing}: {LEXING_REASON} — refused in this {mode}: {short_sql(one.text)}"
                    )
                if self.plan.read_only and one.read_write:
                    raise ReadOnlyError(
                        f"this session is read-only (profile {self.profile}): {one.read_write} — refused: "
                        f"{short_sql(one.text)} — reopen appshell with --write"
                    )
            if self.plan.read_only and st.kind in ("mysql", "mariadb"):
                dynamic = next((one for one in parsed if one.head in ("PREPARE", "EXECUTE", "CALL")), None)
                if dynamic is not None:  # issue 25, F10: PREPARE s FROM CONCAT('SET TRANSACTION READ WR', 'ITE')
                    raise ReadOnlyError(
                        f"this session is read-only (profile {self.profile}): {dynamic.head} runs SQL "
                        "appshell cannot read "
                        f"(dynamic SQL, a stored procedure: it may switch read-only off) — refused on {st.kind}: "
                        f"{short_sql(dynamic.text)} — reopen appshell with --write"
                    )
            if self.plan.read_only and len(parsed) > 1:
                self._one_at_a_time(parsed)
            if self.sandbox is not None:
                self.sandbox.before(st, statement, parsed)
        if st.sqlite3 and st.raw is not st.sq:
            st.busy = True
        if self.plan.statement_timeout_ms and st.sqlite3:
            st.deadline = time.monotonic() + self.plan.statement_timeout_ms / 1000
            st.timed_out = False

    def _one_at_a_time(self, parsed: tuple[Any, ...]) -> None:
        """Read-only, several statements in one string (issue 25, F3): the re-check runs after the string, so a
        statement the parser cannot prove harmless (opaque, transaction control, settings) among them could lift
        the setting, write and put it back before it — refused; sent one at a time, each is re-checked."""
        from appshell.safety.statements import proven_harmless

        for one in parsed:
            control = one.escapes or one.head in ("COMMIT", "BEGIN", "END", "START", "ROLLBACK", "ABORT")
            if control or (self.guarded and not proven_harmless(one.text, (one,))):
                raise ReadOnlyError(
                    f"this session is read-only (profile {self.profile}): `{short_sql(one.text)}` in a string of "
                    f"{len(parsed)} statements — appshell re-checks read-only after each string, "
                    "so send them one at a time"
                )

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        st = self.state(conn.connection)
        if st is None:
            return
        st.deadline = 0.0
        st.busy = False
        if self.sandbox is not None or self.guarded:
            from appshell.safety.statements import classify, proven_harmless

            parsed = classify(statement, st.kind)
            st.read_only_seen = None
            if self.sandbox is not None:
                self.sandbox.after(st, cursor, statement, parsed)
            if self.guarded and not proven_harmless(statement, parsed):
                self._recheck(st, statement)

    def _recheck(self, st: ConnState, statement: str) -> None:
        """Guarded read-only: is the connection still read-only, by its own word? (One round trip; SQLite: none.)"""
        failed = ""
        try:
            still = st.read_only_seen if st.read_only_seen is not None else read_only_now(st)  # one round trip, not two
        except Exception as exc:
            still, failed = False, (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if still is not False:
            return
        several = len(classify_cached(statement, st.kind)) > 1
        after = (
            "what ran after it in the same string ran too; what came after that was refused"
            if several
            else "what ran after it was refused"
        )
        misread = (
            " (or switched standard_conforming_strings off: SQL would be misread)" if st.kind == "postgresql" else ""
        )
        what = (
            f"appshell could not confirm this session is still read-only after `{short_sql(statement)}` on {st.kind} "
            f"(its check failed: {failed}) — the session stops; {after}"
            if failed
            else f"this session was read-only (profile {self.profile}, a session setting) "
            f"and `{short_sql(statement)}` switched it off on {st.kind}{misread}"
            f" — the session stops; {after}"
        )
        self.lifted = ReadOnlyLifted(
            what,
            "check the database by hand; the audit log names the statement; "
            "a read-only role (database.read_only_url_env) cannot be switched off",
        )
        print(f"\n{self.lifted.format()}\n", file=sys.stderr, flush=True)
        raise self.lifted

    def _on_error(self, context: Any) -> None:
        """Say why the database refused, in one line, instead of a driver error about 'not authorized'."""
        conn = context.connection
        st = self.state(conn.connection) if conn is not None and not conn.closed else None
        if st is None:
            return
        st.deadline = 0.0
        st.busy = False
        if st.denied:
            why, st.denied = st.denied, None
            if "read-only" in why:
                raise ReadOnlyError(f"this session is read-only (profile {self.profile}): {why} — refused")
            raise SandboxRefused(f"{why}: refused in the sandbox — run it without --sandbox")
        if st.sqlite3 and "interrupted" in str(context.original_exception) and not st.timed_out:
            # Ctrl-C stopped the statement (see _sqlite); the driver's "interrupted" is how, not news
            raise KeyboardInterrupt from None

    def _on_options(self, target: Any, options: Any) -> None:
        if self.sandbox is not None and "isolation_level" in options:
            raise SandboxRefused(
                f"isolation_level={options['isolation_level']!r} would take the connection "
                "out of the sandbox's transaction: "
                "refused in the sandbox — run it without --sandbox"
            )

    # -- the end ------------------------------------------------------------------

    def close_all(self) -> None:
        """Connections still open at the end (other engines', checked out or pooled): roll back and close them."""
        for st in list(self.conns.values()):
            if self.sandbox is not None and st.sandboxed:
                self.sandbox.end(st)
            if st.sqlite3 and self.reads_sql:
                try:
                    _on_sqlite_thread(st, "set_authorizer", None)
                except Exception:
                    pass
        self.conns.clear()
        self.closed = True


def _on_sqlite_thread(st: ConnState, name: str, *args: Any) -> None:
    """Call sqlite3's *name* where sqlite3 allows it: on the stdlib connection here, and on aiosqlite's
    in aiosqlite's own thread (its async method of that name; we are inside SQLAlchemy's greenlet)."""
    if st.raw is st.sq:
        getattr(st.sq, name)(*args)
        return
    from appshell.hooks.aio import await_

    await_(getattr(st.raw.driver_connection, name)(*args))


def configure_connections(engine: Engine, plan: ConnectionPlan) -> None:
    """The plan's setup on the connections of this one engine only (doctor's probe; sessions use Coverage)."""
    from sqlalchemy import event

    coverage = Coverage(plan)
    event.listen(engine, "engine_connect", lambda conn: coverage.ensure(conn.connection.dbapi_connection, conn.dialect))


def refuse_orm_writes(session: Session, profile: str) -> None:
    """The ORM refuses a flush before the database would: a clearer message, naming --write.

    Every ORM session in the process, not only *session*: the app's other sessionmakers, Flask's, a library's.
    """
    from sqlalchemy.orm import Session as SessionClass

    from appshell.safety.engines import on_every_engine

    def before_flush(sess: Any, flush_context: Any, instances: Any) -> None:
        changes = len(sess.new) + len(sess.dirty) + len(sess.deleted)
        if changes:
            raise ReadOnlyError(
                f"this session is read-only (profile {profile}): {changes} pending change(s) not written — "
                "roll back with rollback(), or reopen appshell with --write"
            )

    on_every_engine("before_flush", before_flush, target=SessionClass)
