"""Every SQLAlchemy engine in the process, not only the one appshell found (docs/design.md §5).

SQLAlchemy's events, listened for on the :class:`~sqlalchemy.engine.Engine`
and :class:`~sqlalchemy.pool.Pool` *classes*, reach every engine and pool:
those made before appshell took over (Flask-SQLAlchemy's binds, an engine an
app module made at import time) and those made later (a library's own
``create_engine``, Alembic's ``engine_from_config``, the sync engine under an
``AsyncEngine``). :func:`on_every_engine` registers such a listener.

Class-level listeners cannot be removed one session at a time without races
against threads still running SQL, so each registration belongs to a
*generation*: when a new session takes over (:func:`take_over`, once per
session — several run in one process only in tests), the listeners of the
sessions before it go quiet.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from appshell.process import PROCESS

__all__ = ["on_every_engine", "take_over", "session_over", "retire_ended", "existing", "exempt", "is_exempt"]

_state = PROCESS.listeners  # the generations and every listener registered: (generation, class, identifier, listener)


def take_over() -> int:
    """A new session owns the process's engines from now on; earlier sessions' listeners go quiet."""
    return _state.take_over()


def session_over() -> None:
    """The session has ended: its listeners stay on for threads it left behind and forked children
    (the journal refuses their SQL), but the main thread of this process is no longer watched
    (several sessions run in one process in the in-process test harness, with the tests' own SQL between)."""
    _state.over()


def _quiet() -> bool:
    return _state.over_in == os.getpid() and threading.current_thread() is threading.main_thread()


def exempt(engine: Any) -> None:
    """appshell's own engine (the audit's SQL sink): no sandbox, read-only, guard or SQL capture on it."""
    engine.dialect.appshell_exempt = True


def is_exempt(dialect: Any) -> bool:
    return getattr(dialect, "appshell_exempt", False) is True


def on_every_engine(identifier: str, fn: Callable[..., Any], *, pool: bool = False, target: Any = None) -> None:
    """Listen for *identifier* on every Engine (or, with *pool*, every Pool) in the process, now and later.

    *target* names another class instead (the ORM's ``Session``, for every session the app makes).
    Engine-level identifiers include the ``ConnectionEvents`` (``before_cursor_execute``, ``engine_connect``…)
    and the ``DialectEvents`` (``do_connect``, ``handle_error``), which SQLAlchemy routes to every dialect.
    """
    from sqlalchemy import Engine, event
    from sqlalchemy.pool import Pool

    mine = _state.generation

    def listener(*args: Any, **kw: Any) -> Any:
        if mine != _state.generation or (_state.over_in is not None and _quiet()):
            return None
        if (
            target is None and not pool and is_exempt(getattr(args[0], "dialect", None))
        ):  # a Connection, or an error's context
            return None
        return fn(*args, **kw)

    cls = target if target is not None else Pool if pool else Engine
    event.listen(cls, identifier, listener)
    _state.registered.append((mine, cls, identifier, listener))


def retire_ended() -> int:
    """Remove the listeners of every session that has ended in this process; how many were removed.

    Only for several sessions in one process (the in-process test harness, after a session that left
    no thread running): there each session's listeners would pile up on SQLAlchemy's classes, all
    quiet yet all called on every statement. A real session never calls this — its listeners stay on
    for the threads it leaves behind."""
    from sqlalchemy import event

    live = _state.generation if _state.over_in is None else _state.generation + 1
    ended = [r for r in _state.registered if r[0] < live]
    for _, cls, identifier, listener in ended:
        event.remove(cls, identifier, listener)
    _state.registered[:] = [r for r in _state.registered if r[0] >= live]
    return len(ended)


def existing() -> tuple[list[Any], list[Any]]:
    """The Engines alive in the process, and the pooled connections checked out right now
    (e.g. by an app module that queried at import time): one pass over the heap."""
    import gc

    from sqlalchemy import Engine
    from sqlalchemy.pool.base import _ConnectionFairy

    engines, fairies = [], []
    for obj in gc.get_objects():
        if isinstance(obj, Engine):
            engines.append(obj)
        elif isinstance(obj, _ConnectionFairy) and obj.dbapi_connection is not None:
            fairies.append(obj)
    return engines, fairies
