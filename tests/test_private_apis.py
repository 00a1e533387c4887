"""Every private API appshell leans on, pinned (issue 20 item 5; docs/design.md "Private APIs").

Where a library offers no public way, appshell uses its private one — and says so here: each row names
the private name, where appshell uses it, and the versions known to have it. When an upstream release
moves one, this test fails first, with that message, instead of a session failing in an operator's
hands (the canary, scripts/canary, runs it on the newest releases the day they are out).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import version

import pytest


def _fairy() -> object:
    """A real checked-out connection of a real engine (SQLite in memory)."""
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    return engine.pool.connect()


def _aiosqlite_connection() -> object:
    """aiosqlite's Connection as connect() makes it (its thread starts only when awaited)."""
    import aiosqlite

    return aiosqlite.connect(":memory:")


def _has(obj: object, name: str) -> bool:
    return hasattr(obj, name)


# (distribution, private name, where appshell uses it, versions known to have it, a probe on real objects)
PRIVATE = [
    (
        "SQLAlchemy",
        "sqlalchemy.pool.base._ConnectionFairy",
        "engines.existing(): connections checked out before appshell took over",
        "2.0.38–2.1.x",
        lambda: _has(importlib.import_module("sqlalchemy.pool.base"), "_ConnectionFairy"),
    ),
    (
        "SQLAlchemy",
        "_ConnectionFairy._pool._dialect",
        "database.Coverage.install(): the dialect of such a connection's pool",
        "2.0.38–2.1.x",
        lambda: _has(getattr(_fairy(), "_pool", None), "_dialect"),
    ),
    (
        "SQLAlchemy",
        "DefaultDialect._on_connect_isolation_level",
        "database.Coverage.ensure(): the isolation level an engine was made with",
        "2.0.38–2.1.x",
        lambda: _has(
            __import__("sqlalchemy").create_engine("sqlite://", isolation_level="AUTOCOMMIT").dialect,
            "_on_connect_isolation_level",
        ),
    ),
    (
        "aiosqlite",
        "Connection._connection",
        "connection.sqlite_of(): the sqlite3 connection aiosqlite drives in its thread",
        "0.22.x",
        lambda: _has(_aiosqlite_connection(), "_connection"),
    ),
    (
        "aiosqlite",
        "Connection._connector",
        "raw_connect._wrapped_connect(): aiosqlite's connect vouched for",
        "0.22.x",
        lambda: callable(getattr(_aiosqlite_connection(), "_connector", None)),
    ),
    (
        "ipython",
        "IPython.core.completer._get_jedi",
        "runtime/shells/ipython.py: completion never evaluates calls",
        "9.16–9.18",
        lambda: _has(importlib.import_module("IPython.core.completer"), "_get_jedi"),
    ),
    (
        "ipython",
        "IPython.core.guarded_eval.EvaluationContext.replace",
        "runtime/shells/ipython.py: guarded_eval held to a safe level",
        "9.8–9.18",
        lambda: _has(importlib.import_module("IPython.core.guarded_eval").EvaluationContext, "replace"),
    ),
    (
        "traitlets",
        "PyFileConfigLoader._read_file_as_dict",
        "runtime/shells/ipython.py: an ipython_config.py is recorded before it runs",
        "5.x",
        lambda: _has(importlib.import_module("traitlets.config.loader").PyFileConfigLoader, "_read_file_as_dict"),
    ),
    (
        "traitlets",
        "JSONFileConfigLoader._read_file_as_dict",
        "runtime/shells/ipython.py: an ipython_config.json is recorded before it is read",
        "5.x",
        lambda: _has(importlib.import_module("traitlets.config.loader").JSONFileConfigLoader, "_read_file_as_dict"),
    ),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # aiosqlite's unawaited connect
@pytest.mark.parametrize("dist,name,where,known,probe", PRIVATE, ids=[row[1] for row in PRIVATE])
def test_private_api_is_where_appshell_expects_it(
    dist: str, name: str, where: str, known: str, probe: Callable[[], bool]
) -> None:
    assert probe(), (
        f"{dist} {version(dist)} has no private {name}, which appshell uses in {where} "
        f"(known in {dist} {known}): find its replacement, or cap {dist} in pyproject.toml"
    )


def test_asyncio_tracks_async_generators_where_appshell_closes_them() -> None:
    """aio._close_asyncgens(): asyncio's own loops keep their async generators in ``_asyncgens``
    (CPython 3.11–3.13); another loop has its shutdown_asyncgens() close every one (a documented fallback)."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        assert isinstance(getattr(loop, "_asyncgens", None), (set, __import__("weakref").WeakSet)), (
            "asyncio's loop has no _asyncgens (used by aio._close_asyncgens, known in CPython 3.11–3.13): "
            "the app's provider generators would be closed with the operator's"
        )
    finally:
        loop.close()


def test_atexit_can_run_the_handlers_now() -> None:
    """session._finish_operator_code(): the operator's atexit handlers run while the journal records,
    through ``atexit._run_exitfuncs`` (CPython 3.11–3.13; no public way to run them early)."""
    import atexit

    assert callable(getattr(atexit, "_run_exitfuncs", None)), (
        "atexit._run_exitfuncs is gone (used by session._finish_operator_code, known in CPython 3.11–3.13): "
        "the operator's atexit handlers would run unrecorded after the session's end"
    )
