"""One line for a refused statement, in every shell and mode (docs/usage.md, "When appshell refuses").

A refusal reaches the shell in many shapes: appshell's own :class:`~appshell.errors.Refused`
raised from an SQLAlchemy event (bare, or wrapped by SQLAlchemy: ``StatementError.orig``,
``__cause__``, ``__context__``), or the database's own refusal of a write in a read-only
session (a driver error: PostgreSQL's SQLSTATE 25006, MySQL's 1792, SQLite's
``SQLITE_READONLY``; with a read-only role, "permission denied"). :meth:`Refusals.line`
finds either anywhere in the chain and says it in one line, naming what fixes it; the
full traceback only with ``--traceback`` (IPython: ``%tb`` too). Imported on the error
path only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from appshell.errors import AppshellError, Refused

__all__ = ["Refusals", "chain", "find_refused"]

_PG_READ_ONLY, _PG_DENIED = "25006", "42501"  # read_only_sql_transaction, insufficient_privilege
_MYSQL_READ_ONLY = 1792  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
_MYSQL_DENIED = frozenset({1142, 1143, 1044, 1227})  # table/column/database command denied, needs a privilege
_SQLITE_READONLY = 8  # SQLITE_READONLY; extended codes keep it in the low byte
# Modules whose exceptions only carry another one (the user's own exceptions come from elsewhere).
_WRAPPERS = ("sqlalchemy.", "greenlet", "appshell.", "asyncio.", "concurrent.")


def chain(exc: BaseException) -> Iterator[BaseException]:
    """*exc*, then what it wraps: SQLAlchemy's ``orig``, ``__cause__``, ``__context__`` — nearest first, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        one = todo.pop(0)
        if one is None or id(one) in seen:
            continue
        seen.add(id(one))
        yield one
        orig = getattr(one, "orig", None)
        context = None if one.__suppress_context__ else one.__context__
        todo += [orig if isinstance(orig, BaseException) else None, one.__cause__, context]


def find_refused(exc: BaseException) -> Refused | AppshellError | None:
    """appshell's own refusal (or audit failure) anywhere in *exc*'s chain."""
    return next((one for one in chain(exc) if isinstance(one, (Refused, AppshellError))), None)


def _statement_of(exc: BaseException) -> str | None:
    for one in chain(exc):
        statement = getattr(one, "statement", None)
        if isinstance(statement, str) and statement.strip():
            return statement
    return None


def _short(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 80 else text[:77] + "…"


def _writes(sql: str | None, dialect: str) -> bool:
    """Whether the parser reads *sql* as a write (rows or schema): a privilege refused on a read (a protected
    column's grant) is not read-only's doing."""
    if sql is None:
        return False
    from appshell.safety.statements import classify

    try:
        return any(one.writes or one.ddl for one in classify(sql, dialect))
    except Exception:
        return False


def _database_says(exc: BaseException) -> tuple[str, str, str, BaseException] | None:
    """(how, driver's message, dialect, the driver's error) where the database refused a write as read-only
    ("read-only") or for want of a privilege ("denied"); None for any other error."""
    for one in chain(exc):
        code = getattr(one, "sqlstate", None) or getattr(one, "pgcode", None)
        message = (str(one).strip().splitlines() or [type(one).__name__])[0]
        args: tuple[Any, ...] = tuple(getattr(one, "args", ()) or ())
        number = args[0] if args and isinstance(args[0], int) else None
        # MySQL's drivers carry an SQLSTATE too (pymysql: 25006 for 1792): the error number first
        if number == _MYSQL_READ_ONLY:
            return "read-only", str(args[1]) if len(args) > 1 else message, "mysql", one
        if number in _MYSQL_DENIED:
            return "denied", str(args[1]) if len(args) > 1 else message, "mysql", one
        if code == _PG_READ_ONLY:
            return "read-only", message, "postgresql", one
        if code == _PG_DENIED:
            return "denied", message, "postgresql", one
        sqlite_code = getattr(one, "sqlite_errorcode", None)
        wrapper = isinstance(getattr(one, "orig", None), BaseException)  # SQLAlchemy's: the driver's error comes next
        if (isinstance(sqlite_code, int) and sqlite_code & 0xFF == _SQLITE_READONLY) or (
            not wrapper and "attempt to write a readonly database" in message
        ):
            return "read-only", message, "sqlite", one
    return None


def _is_wrapper(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(_WRAPPERS) or isinstance(exc, (Refused, AppshellError))


class Refusals:
    """What a session's refusals are about, and how they are shown (built from the settings in session.py).

    A plain class, not a dataclass: this is imported on every session's start, and a dataclass costs ~1 ms to make."""

    __slots__ = ("read_only", "profile", "enforced", "allow_write", "traceback")

    def __init__(
        self,
        read_only: bool = False,
        profile: str = "",
        enforced: bool = False,
        allow_write: bool = True,
        traceback: bool = False,
    ) -> None:
        self.read_only = read_only
        self.profile = profile
        self.enforced = enforced  # read-only by a role: the database answers "permission denied"
        self.allow_write = allow_write
        self.traceback = traceback  # --traceback: every exception with its traceback, refusals included

    def line(self, exc: BaseException) -> str | None:
        """The one line that stands for *exc*, if it is a refusal (appshell's, or the database's in a read-only
        session) or an audit failure; None for the user's own errors, whose traceback the shell shows."""
        if self.traceback and not isinstance(exc, AppshellError):
            return None
        found = find_refused(exc)
        text = found.format() if found is not None else self._database_refusal(exc)
        if text is None:
            return None
        if found is not exc and not _is_wrapper(exc):  # the user's own exception, raised while handling the refusal
            return f"{type(exc).__name__}: {exc} — after {text}"
        return text

    def _database_refusal(self, exc: BaseException) -> str | None:
        if not self.read_only:
            return None
        said = _database_says(exc)
        if said is None:
            return None
        how, message, dialect, error = said
        sql = _statement_of(exc)
        if how == "denied" and not (self.enforced and _writes(sql, dialect)):
            return None  # a privilege the app's own user lacks, or a read refused (a protected column): not read-only's
        level = "a read-only role" if self.enforced else "a session setting"
        what = f"`{_short(sql)}`" if sql else "the statement"
        fix = (
            "reopen appshell with --write"
            if self.allow_write
            else f"profile '{self.profile}' does not allow --write: use another profile"
        )
        if dialect == "postgresql":
            fix = f"its transaction is aborted: rollback() to go on; to write, {fix}"
        return (
            f"{type(error).__name__}: this session is read-only (profile {self.profile}, {level}): "
            f"the database refused {what} ({message}) — {fix}"
        )

    @classmethod
    def of(cls, settings: Any, traceback: bool = False) -> Refusals:
        """The session's refusals, from its resolved settings."""
        enforced = False
        if settings.read_only:
            from appshell.safety.readonly_role import read_only_level

            enforced = read_only_level(settings) == "enforced"
        return cls(
            read_only=bool(settings.read_only),
            profile=settings.profile.name,
            enforced=enforced,
            allow_write=bool(settings.profile.access.allow_write),
            traceback=traceback,
        )
