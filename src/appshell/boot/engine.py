"""The engine appshell makes where the app has none, its connection check, and the note that says when the app
makes an engine of its own that appshell did not see (banner, doctor)."""

from __future__ import annotations

import inspect
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from appshell.boot.discovery import async_kinds
from appshell.config.redact import mask_url
from appshell.errors import ConfigError, DatabaseUnavailable, connect_reason

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from appshell.boot.context import AppContext

__all__ = ["check_connection", "own_engine_note"]


_INSTALL_HINT = (
    "install it (pip install 'appshell[postgres]' for PostgreSQL, "
    "'appshell[mysql]' for MySQL, 'appshell[async]' for asyncpg/aiosqlite)"
)


def make_engine(url: str | None) -> Any:
    """An engine for DATABASE_URL/--database-url: an AsyncEngine where the URL names an async driver."""
    if not url:
        raise ConfigError(
            "no database configured",
            "set DATABASE_URL (in the environment or .env) or pass --database-url",
        )
    from sqlalchemy import create_engine, make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        if getattr(make_url(url).get_dialect(), "is_async", False):
            from sqlalchemy.ext.asyncio import create_async_engine

            return create_async_engine(url)
        return create_engine(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(f"bad database URL {mask_url(url)} ({exc})", "fix DATABASE_URL/--database-url") from None
    except ModuleNotFoundError as exc:
        raise DatabaseUnavailable(f"the database driver '{exc.name}' is not installed", _INSTALL_HINT) from None
    except ValueError as exc:
        if "greenlet" not in str(exc):
            raise
        raise DatabaseUnavailable(
            "async database URLs need the greenlet library, which is not installed", "pip install 'appshell[async]'"
        ) from None


def check_connection(engine: Engine) -> None:
    """Connect once, so an unreachable database is a clear error before the shell opens (an async
    engine's sync core connects inside SQLAlchemy's greenlet, on the session's loop)."""
    from sqlalchemy.exc import DBAPIError

    from appshell.hooks import aio

    def connect() -> None:
        with engine.connect():
            pass  # the connection goes back to the pool for the session to reuse

    try:
        aio.sync_io(connect)
    except (DBAPIError, OSError, TimeoutError) as exc:  # asyncpg's refusals are OSErrors, not wrapped by SQLAlchemy
        raise DatabaseUnavailable(
            f"cannot connect to {mask_url(engine.url.render_as_string(hide_password=True))} ({connect_reason(exc)})",
            "check DATABASE_URL/--database-url and that the server is running",
        ) from None
    except ModuleNotFoundError as exc:  # a driver imported at first connect
        raise DatabaseUnavailable(f"the database driver '{exc.name}' is not installed", _INSTALL_HINT) from None


# What makes an engine, by the names a function's code calls it by (``create_engine(…)``, ``sa.create_engine(…)``).
_ENGINE_MAKERS = frozenset({"create_engine", "create_async_engine", "engine_from_config", "async_engine_from_config"})


def own_engine_note(ctx: AppContext) -> str | None:
    """Where appshell made its own engine while the app makes its own (a module-level engine, an
    engine factory, an object holding one): one line saying so and naming the --app that uses the
    app's — its connect listeners (SQLite's ``PRAGMA foreign_keys=ON``, say), pool and options are
    not on appshell's (for the banner and doctor; None where there is nothing to say)."""
    if not ctx.made_engine:
        return None
    found = _apps_engines(ctx.app_modules)
    if not found:
        return None
    shown = "; ".join(what for what, _ in found[:3]) + (f"; {len(found) - 3} more" if len(found) > 3 else "")
    return (
        f"made by appshell from {ctx.made_engine}, but the app makes its own ({shown}): the shell's connections may "
        f"differ from the web process's — {found[0][1]}"
    )


def _apps_engines(modules: list[ModuleType]) -> list[tuple[str, str]]:
    """(what, the --app that uses it) for each engine the app's modules hold or make, best --app first."""
    from sqlalchemy import Engine

    kinds = (Engine, *async_kinds().engines)
    own = {m.__name__ for m in modules}
    makers = _engine_maker_objects()
    engines: list[tuple[str, str]] = []
    holders: list[tuple[str, str]] = []
    factories: list[tuple[str, str]] = []
    seen: set[int] = set()  # an engine or factory re-exported by another module is named once, where first found
    for module in modules:
        name = module.__name__
        values = list(vars(module).items())
        # Only a module that imports create_engine (or sqlalchemy itself) can call it: the others' code is not read.
        calls = any(any(v is m for m in makers) for _, v in values)
        for attr, value in values:
            if id(value) in seen:
                continue
            if isinstance(value, kinds):
                seen.add(id(value))
                engines.append((f"{name}.{attr}{_listeners_note(value, own)}", f"pass --app {name} to use it"))
            elif inspect.isfunction(value) or isinstance(value, type):
                if calls and value.__module__ == name and _makes_engine(value):
                    seen.add(id(value))
                    if isinstance(value, type):
                        factories.append((f"{name}.{attr}", f"pass --app MODULE:CALLABLE that returns a {name}.{attr}"))
                    else:
                        factories.append(
                            (f"{name}:{attr}(){_static_listener_note(value)}", f"pass --app {name}:{attr} to use it")
                        )
            elif type(value).__module__ in own:
                for key, engine in _instance_attributes(value):
                    if isinstance(engine, kinds) and id(engine) not in seen:
                        seen.update((id(value), id(engine)))
                        holders.append(
                            (
                                f"{name}.{attr}.{key}{_listeners_note(engine, own)}",
                                f"pass --app {name}:{attr} to use it",
                            )
                        )
    return engines + holders + factories


def _engine_maker_objects() -> tuple[Any, ...]:
    """SQLAlchemy's engine-making functions and the modules they are reached through (``sa.create_engine``)."""
    import sqlalchemy
    from sqlalchemy import create_engine, engine_from_config

    found: list[Any] = [sqlalchemy, sys.modules.get("sqlalchemy.engine"), create_engine, engine_from_config]
    asyncio_ext = sys.modules.get("sqlalchemy.ext.asyncio")
    if asyncio_ext is not None:
        found += [
            asyncio_ext,
            getattr(asyncio_ext, "create_async_engine", None),
            getattr(asyncio_ext, "async_engine_from_config", None),
        ]
    return tuple(f for f in found if f is not None)


def _makes_engine(obj: Any) -> bool:
    """Does a function's code (nested functions included), or a class's methods', call create_engine and its kin?"""
    if isinstance(obj, type):
        return any(_makes_engine(v) for v in vars(obj).values() if inspect.isfunction(v))
    code = getattr(obj, "__code__", None)
    return code is not None and _code_calls(code, _ENGINE_MAKERS)


def _code_calls(code: Any, names: frozenset[str]) -> bool:
    if not names.isdisjoint(code.co_names):
        return True
    return any(_code_calls(c, names) for c in code.co_consts if hasattr(c, "co_names"))


def _static_listener_note(func: Any) -> str:
    """A factory whose code adds a 'connect' listener (``@event.listens_for(engine, "connect")``): say so."""
    code = getattr(func, "__code__", None)
    if (
        code is not None
        and _code_calls(code, frozenset({"listens_for", "listen"}))
        and _code_has_const(code, "connect")
    ):
        return ", which adds a 'connect' listener"
    return ""


def _code_has_const(code: Any, value: str) -> bool:
    return any(c == value or (hasattr(c, "co_consts") and _code_has_const(c, value)) for c in code.co_consts)


def _listeners_note(engine: Any, own: set[str]) -> str:
    """The app's own 'connect' listeners on *engine*'s pool (not SQLAlchemy's, not appshell's)."""
    pool = getattr(getattr(engine, "sync_engine", engine), "pool", None)
    try:
        listeners = list(pool.dispatch.connect) if pool is not None else []
    except Exception:
        listeners = []
    names = [f"{fn.__module__}.{fn.__name__}" for fn in listeners if getattr(fn, "__module__", None) in own]
    return f", with connect listener{'s' if len(names) > 1 else ''} {', '.join(names)}" if names else ""


def _instance_attributes(obj: Any) -> list[tuple[str, Any]]:
    try:
        return list(vars(obj).items())
    except TypeError:
        return []
