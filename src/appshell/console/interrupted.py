"""After Ctrl-C stops a database statement: its transaction rolled back for the operator, recorded, said in one line.

Without this, the session is left needing ``rollback()`` (psycopg and asyncpg: SQLAlchemy closed the
interrupted connection) and says so only through SQLAlchemy's ``PendingRollbackError`` at the next
statement — or, on SQLite, the database may have rolled back an interrupted write's whole transaction
while the ORM session still holds its changes. Each shell asks :meth:`Interrupted.recover` where it
would show a ``KeyboardInterrupt``: where a database statement was running when it came, the
session's ``rollback()`` runs as a statement of its own in the journal (kind ``rollback``), so the
audit log shows it and its outcome. In a sandbox that ``rollback()`` returns to the sandbox's
savepoint, as the operator's own does (appshell.safety.sandbox).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appshell.record.journal import Journal

__all__ = ["Interrupted", "ROLLBACK_SOURCE", "ctrl_c"]

ROLLBACK_SOURCE = "rollback()  # by appshell: Ctrl-C interrupted a database statement"


def ctrl_c(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C that *exc* stands for: a KeyboardInterrupt, or the CancelledError it caused in an async app's
    statement (IPython catches that one inside the cancelled task, the Ctrl-C as its context); else None."""
    if isinstance(exc, KeyboardInterrupt):
        return exc
    if type(exc).__name__ == "CancelledError" and isinstance(exc.__context__, KeyboardInterrupt):
        return exc.__context__
    return None


class Interrupted:
    """Whether a database statement is running now (on the session's thread), and what Ctrl-C leaves to undo."""

    def __init__(self, journal: Journal, rollback: Callable[[], Any], sandbox: bool = False) -> None:
        self.journal = journal
        self.rollback = rollback  # the session's rollback() helper, as it was before the operator's code ran
        self.sandbox = sandbox
        self.running = False  # a statement was sent and has not come back
        self.conn: Any = None  # the SQLAlchemy Connection it was sent on
        self.closed = False  # SQLAlchemy closed the statement's connection: the database ended its transaction
        self._thread = threading.get_ident()

    def install(self) -> None:
        from appshell.safety.engines import on_every_engine

        on_every_engine("before_cursor_execute", self._before)
        on_every_engine("after_cursor_execute", self._after)
        on_every_engine("handle_error", self._keep_a_drained_connection)
        on_every_engine("invalidate", self._closed, pool=True)

    def _here(self) -> bool:
        return threading.get_ident() == self._thread  # a thread the operator started is not the statement at the prompt

    def _before(self, conn: Any, *args: Any) -> None:
        if self._here():
            self.running, self.conn = True, conn

    def _after(self, *args: Any) -> None:
        if self._here():
            self.running, self.conn = False, None

    def _closed(self, *args: Any) -> None:
        if self._here() and self.running:
            self.closed = True

    def _keep_a_drained_connection(self, context: Any) -> None:
        """SQLAlchemy closes a connection whose statement a KeyboardInterrupt stopped: it cannot know the
        connection's state. psycopg 3 can: on Ctrl-C it cancels the query and reads the server's answer
        before it re-raises, so a connection it reports idle (in a failed transaction) is whole — kept,
        a sandbox's outer transaction and savepoint with it, for the rollback that follows."""
        if not (context.is_disconnect and isinstance(context.original_exception, KeyboardInterrupt) and self._here()):
            return
        conn = context.connection
        raw: Any = getattr(getattr(conn, "connection", None), "dbapi_connection", None) if conn is not None else None
        if type(raw).__module__.partition(".")[0] != "psycopg":
            return
        try:
            from psycopg.pq import TransactionStatus

            # Not ACTIVE (a result still coming) nor UNKNOWN (the connection is broken).
            idle = (TransactionStatus.INERROR, TransactionStatus.INTRANS, TransactionStatus.IDLE)
            whole = raw.info.transaction_status in idle
        except Exception:
            return
        if whole:
            context.is_disconnect = False

    def start(self) -> None:
        """A new input: whatever an earlier one left unfinished (a failed statement) is not this one's."""
        self.running, self.closed, self.conn = False, False, None

    def recover(self, exc: BaseException) -> str | None:
        """After *exc*: where it is a Ctrl-C that stopped a database statement, roll the session back
        (recorded) and return the line to show; None where there is nothing to undo."""
        if ctrl_c(exc) is None or not self.running:
            return None
        closed, conn = self.closed, self.conn
        self.running, self.closed, self.conn = False, False, None
        from appshell.record.journal import outcome_of

        try:
            with self.journal.statement(ROLLBACK_SOURCE, kind="rollback"):
                self.rollback()
        except KeyboardInterrupt:
            return (
                "KeyboardInterrupt: the database statement was interrupted; so was appshell's rollback() of its "
                "transaction — call rollback()"
            )
        except Exception as error:
            return (
                f"KeyboardInterrupt: the database statement was interrupted; appshell's rollback() of its "
                f"transaction failed ({outcome_of(error)[1]}) — call rollback()"
            )
        if conn is not None and _still_open(conn):  # not the session's: the operator's own Session or connection ran it
            return (
                "KeyboardInterrupt: the database statement was interrupted; it ran on a connection of your own, "
                "not the session's (rolled back): roll that one back"
            )
        if closed:  # the database ended the transaction with the connection: the sandbox's too
            lost = "the sandbox's changes so far too" if self.sandbox else "uncommitted changes are gone"
            return (
                f"KeyboardInterrupt: the database statement was interrupted; its transaction was rolled back "
                f"(SQLAlchemy closed its connection: {lost})"
            )
        kept = "to the sandbox's last commit()" if self.sandbox else "(uncommitted changes are gone)"
        return f"KeyboardInterrupt: the database statement was interrupted; its transaction was rolled back {kept}"


def _still_open(conn: Any) -> bool:
    """Whether the interrupted statement's Connection still holds its transaction after the session's rollback
    (the session's own are closed by it)."""
    try:
        return not conn.closed and bool(conn.in_transaction())
    except Exception:
        return False
