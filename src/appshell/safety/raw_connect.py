"""A DBAPI ``connect()`` outside SQLAlchemy, in a sandbox or read-only session, refused (docs/safety.md).

Python's audit hook sees every driver's connect, wherever it is called from; a connect that no
SQLAlchemy engine asked for could not be covered by the per-connection setup
(appshell.safety.database.Coverage), so it is refused. The hook is installed once per process.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appshell.errors import RawConnectionRefused
from appshell.process import PROCESS

if TYPE_CHECKING:
    from appshell.safety.database import Coverage

__all__ = ["RawConnectionRefused"]


# IPython keeps its history in SQLite.
_ALLOWED_CALLERS = ("sqlalchemy.", "IPython.", "appshell.")
# Where the drivers' own connects are: the public name and the function it is (asyncpg's pool calls
# asyncpg.connection.connect, aiosqlite.connect is aiosqlite.core.connect). Each is wrapped under every name.
_CONNECTS = (
    ("psycopg", "connect"),
    ("psycopg2", "connect"),
    ("pymysql", "connect"),
    ("aiomysql", "connect"),
    ("asyncpg", "connect"),
    ("asyncpg.connection", "connect"),
    ("aiosqlite", "connect"),
    ("aiosqlite.core", "connect"),
)
# A driver's own frames between its connect and the code that asked for it (asyncpg's pool, aiosqlite's thread).
_DRIVERS = frozenset({"asyncpg", "aiosqlite"})
_wrappers: dict[Any, Any] = {}  # a driver's connect -> appshell's wrapper of it (one wrapper, under each of its names)


def _from_allowed_caller() -> bool:
    """Is the code that asked for the connection SQLAlchemy, IPython or appshell itself (not the user's code)?

    Who called connect(), past the driver's own frames: a pool of asyncpg's connects from its own code, so
    the code that awaited the pool decides. A connect with only a driver's and asyncio's frames below it
    (a pool filled by tasks of its own) has nobody vouching for it: refused."""
    frame: Any = sys._getframe(3)  # 0: here, 1: _refuse_raw, 2: the audit hook or the wrapper, 3: who called connect()
    while frame is not None and str(frame.f_globals.get("__name__", "")).partition(".")[0] in _DRIVERS:
        frame = frame.f_back
    return frame is not None and str(frame.f_globals.get("__name__", "")).startswith(_ALLOWED_CALLERS)


def _refuse_raw(what: str) -> None:
    coverage: Coverage | None = PROCESS.coverage  # the session whose rules raw connects are checked against
    if coverage is None or not coverage.reads_sql or _from_allowed_caller():
        return
    mode = "sandbox" if coverage.sandbox is not None else "read-only session"
    raise RawConnectionRefused(
        f"{what} outside SQLAlchemy: appshell cannot cover that connection in this {mode} — refused; "
        "use an SQLAlchemy engine (appshell covers every one), or run without --sandbox/--read-only"
    )


def _vouched(connector: Callable[[], Any]) -> Callable[[], Any]:
    """aiosqlite opens sqlite3 in its own thread, where the audit hook sees only aiosqlite's frames: a connection
    appshell let through opens from this frame, which the hook finds below aiosqlite's."""

    def appshell_vouched_connector() -> Any:
        return connector()

    return appshell_vouched_connector


def _wrapped_connect(original: Any, driver: str) -> Any:
    def connect(*args: Any, **kwargs: Any) -> Any:
        _refuse_raw(f"{driver}.connect()")
        made = original(*args, **kwargs)
        if driver == "aiosqlite" and callable(getattr(made, "_connector", None)):
            made._connector = _vouched(made._connector)
        return made

    connect.appshell_watched = True  # type: ignore[attr-defined]
    return connect


def _hook(event: str, args: tuple[Any, ...]) -> None:
    # An in-memory database is refused too (issue 25, F6): ATTACH 'var/shop.db' on it writes the app's
    # database outside the sandbox and read-only (an authorizer set on it could be taken off by its owner).
    if event == "sqlite3.connect":
        _refuse_raw(f"sqlite3.connect({str(args[0])!r})")


def watch_raw_connects() -> None:
    """sqlite3.connect() is seen by an audit hook (it raises an audit event); other drivers' connect()
    is wrapped where the driver is imported already — SQLAlchemy's own calls go through."""
    PROCESS.audit_hook("raw_connect", _hook)  # once per process; drivers imported since the last session below
    for name, attr in _CONNECTS:
        module = sys.modules.get(name)
        original = getattr(module, attr, None)
        if original is None or getattr(original, "appshell_watched", False):
            continue
        if original not in _wrappers:
            _wrappers[original] = _wrapped_connect(original, name.partition(".")[0])
        setattr(module, attr, _wrappers[original])
