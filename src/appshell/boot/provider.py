"""The --app grammar (Flask's): ``module``, ``module:name``, ``module:factory('arg')``, and what a provider gives —
a mapping, a generator or context manager (its teardown after ``yield``), a coroutine, a Flask app — entered."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from appshell.boot.crash import call_app_code, import_user_module
from appshell.boot.discovery import Collector, is_async, is_flask_app
from appshell.errors import AppNotFound, ConfigError

__all__ = ["boot_provider"]


_FACTORY_NAMES = ("create_app", "make_app")


def _parse_attr(spec: str, attr: str) -> tuple[list[str], tuple[list[Any], dict[str, Any]] | None]:
    """``name``, ``a.b`` or ``factory('prod', debug=True)`` (literal arguments), as Flask's --app reads it."""
    import ast

    bad = ConfigError(
        f"--app '{spec}': cannot read '{attr}'",
        "use 'module:name', 'module:factory()' or 'module:factory(\"arg\")' with literal arguments",
    )
    try:
        expr = ast.parse(attr.strip(), mode="eval").body
    except SyntaxError:
        raise bad from None
    call = None
    if isinstance(expr, ast.Call):
        try:
            call = (
                [ast.literal_eval(a) for a in expr.args],
                {k.arg: ast.literal_eval(k.value) for k in expr.keywords if k.arg},
            )
        except ValueError:
            raise bad from None
        if len(call[1]) != len(expr.keywords):
            raise bad  # **kwargs
        expr = expr.func
    path: list[str] = []
    while isinstance(expr, ast.Attribute):
        path.insert(0, expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        raise bad
    return [expr.id, *path], call


def _load_provider(spec: str) -> tuple[Any, str, tuple[list[Any], dict[str, Any]] | None]:
    module_name, _, attr = spec.partition(":")
    module = import_user_module(module_name, "--app")
    if not attr:
        return module, module_name, None
    path, call = _parse_attr(spec, attr)
    target: Any = module
    for part in path:
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppNotFound(
                f"module '{module_name}' has no attribute '{'.'.join(path)}'",
                "fix --app (use 'module:callable')",
            ) from None
    return target, f"{module_name}:{'.'.join(path)}", call


def _call_factory(func: Callable[..., Any], label: str, call: tuple[list[Any], dict[str, Any]] | None) -> Any:
    """Call the app's factory with the --app arguments; one that needs others is a one-line error."""
    args, kwargs = call or ([], {})
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin or C callable: no signature to check
        signature = None
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            needed = [
                p.name
                for p in signature.parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            example = ", ".join(f"'{n}'" if i == 0 else f"{n}=…" for i, n in enumerate(needed)) or "…"
            raise ConfigError(
                f"{label}() cannot be called with {_call_text(args, kwargs)} ({exc})",
                f'pass its arguments in --app, as Flask does: --app "{label}({example})"',
            ) from None
    return call_app_code(lambda: func(*args, **kwargs), f"{label}() failed")


def _call_text(args: list[Any], kwargs: dict[str, Any]) -> str:
    if not args and not kwargs:
        return "no arguments"
    return "(" + ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]) + ")"


_SETTINGS_NAMES = ("settings", "config")  # the app's own config object keeps its name in the shell


def boot_provider(spec: str, collector: Collector, teardown: list[Callable[[], object]]) -> None:
    target, label, call = _load_provider(spec)
    if isinstance(target, ModuleType):
        app = getattr(target, "app", None)
        if not is_flask_app(app):
            factory = next((getattr(target, n) for n in _FACTORY_NAMES if callable(getattr(target, n, None))), None)
            if factory is not None and "flask" in sys.modules:
                app = _call_factory(factory, f"{label}:{factory.__name__}", None)
        if is_flask_app(app):
            collector.take_flask(app, teardown)
        collector.take_module(target)
        for name in _SETTINGS_NAMES:
            value = getattr(target, name, None)
            if value is not None and not isinstance(value, ModuleType) and not callable(value):
                collector.extra.setdefault(name, value)
        return
    called = callable(target) and not is_flask_app(target) and not isinstance(target, type)
    if called:
        target = _call_factory(target, label, call)
    elif call is not None:
        raise ConfigError(f"--app '{spec}': {label} is not callable", f"drop the parentheses: --app {label}")
    target = _enter_provider(target, label, teardown)
    if is_flask_app(target):
        collector.take_flask(target, teardown)
    elif isinstance(target, Mapping):
        collector.take_mapping(target)
    elif not collector.take_object(target, label):
        collector.take_attributes(target, f"--app {label} {'returned' if called else 'is'}")


def _enter_provider(target: Any, label: str, teardown: list[Callable[[], object]]) -> Any:
    """What a provider gave, entered: a generator or async generator (its code after `yield` is the
    teardown, like pshell's setup hook and FastAPI's dependencies), a context manager (sync or
    async), a coroutine (awaited). Async ones run on the session's loop, their teardown too."""
    from appshell.hooks import aio

    if inspect.isgenerator(target):
        gen = target
        teardown.append(lambda: next(gen, None))
        return call_app_code(lambda: next(gen), f"{label}() failed")
    if inspect.isasyncgen(target):
        agen = target
        aio.keep(agen)  # closed by this teardown, after the operator's async code has ended
        teardown.append(lambda: aio.run(_anext_or_none(agen)))
        return call_app_code(lambda: aio.run(agen.__anext__()), f"{label}() failed")
    if inspect.iscoroutine(target):
        return call_app_code(lambda: aio.run(target), f"{label}() failed")
    if hasattr(target, "__aenter__") and hasattr(target, "__aexit__") and not is_async(target):
        manager = target  # an AsyncSession is one too, but it is used as is
        aio.keep(getattr(manager, "gen", None))  # @asynccontextmanager's generator
        teardown.append(lambda: aio.run(manager.__aexit__(None, None, None)))
        return call_app_code(lambda: aio.run(manager.__aenter__()), f"{label}() failed")
    if hasattr(target, "__enter__") and hasattr(target, "__exit__") and type(target).__module__ == "contextlib":
        manager = target  # @contextmanager: entered like the generator it wraps
        teardown.append(lambda: manager.__exit__(None, None, None))
        return call_app_code(manager.__enter__, f"{label}() failed")
    return target


async def _anext_or_none(agen: Any) -> Any:
    return await anext(agen, None)
