"""Booting the application's context: its models, engine and session (docs/usage.md).

Sources, in order: ``--app`` (a module, or ``module:callable`` returning a
mapping, a generator yielding one, or a Flask app), ``--models`` modules, and
``[tool.appshell]`` (already folded into the settings).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from appshell.errors import AppNotFound, ConfigError, DatabaseUnavailable, connect_reason
from appshell.config.redact import mask_url

if TYPE_CHECKING:
    from sqlalchemy import Engine, MetaData
    from sqlalchemy.orm import Session

    from appshell.config.settings import Settings

__all__ = ["AppContext", "boot", "import_user_module", "AppCrashed", "check_session", "own_engine_note"]

_FACTORY_NAMES = ("create_app", "make_app")
_MAPPING_KEYS = ("engine", "session", "metadata")


class AppCrashed(Exception):
    """The app's own code raised while booting: its traceback is shown (exit 1)."""

    def __init__(self, what: str, exc: BaseException) -> None:
        super().__init__(what)
        self.what = what
        self.exc = exc


@dataclass
class AppContext:
    """What the shell's namespace is built from."""

    engine: Engine
    session: Session
    metadata: MetaData | None
    models: dict[str, type]
    extra: dict[str, Any] = field(default_factory=dict)
    app: Any = None
    label: str = ""
    warnings: list[str] = field(default_factory=list)
    sqlmodel: bool = False  # the models are SQLModel tables: `session` is a sqlmodel.Session
    teardown: list[Callable[[], object]] = field(default_factory=list)
    # An async app's own objects (docs/design.md §8): the shell's `session` and `engine`. `engine`
    # and `session` above are then their sync cores, which every safety listener watches.
    async_engine: Any = None
    async_session: Any = None
    # Where the URL of the engine appshell made came from ("" where the engine is the app's own),
    # and the app's modules: own_engine_note() reads them on demand (banner, doctor), never on -c.
    made_engine: str = ""
    app_modules: list[ModuleType] = field(default_factory=list)

    def close(self) -> None:
        """Roll back what was not committed and run the app's teardown, newest first."""
        from appshell.hooks import aio

        try:
            aio.sync_io(self._close_session)
            if self.async_engine is not None:
                aio.run(self.async_engine.dispose())  # the async pool's connections close on the loop
            else:
                # Close the pooled connections now: a sandbox's outer transaction ends here.
                self.engine.dispose()
        finally:
            while self.teardown:
                aio.sync_io(self.teardown.pop())

    def _close_session(self) -> None:
        self.session.rollback()
        self.session.close()


def import_user_module(name: str, option: str) -> ModuleType:
    """Import *name*; "not found" is a one-line error, a crash inside it is not."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Only the named module (or one of its parents) missing counts as "not
        # found"; a missing import *inside* the app is the app's own bug.
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise AppNotFound(
                f"cannot import {option} module '{name}' (no module named '{exc.name}')",
                f"check {option} and that the project root or its package is on the path",
            ) from None
        raise AppCrashed(f"importing '{name}' failed", exc) from exc
    except Exception as exc:  # the app's own code raised while importing
        raise AppCrashed(f"importing '{name}' failed", exc) from exc


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
            call = [ast.literal_eval(a) for a in expr.args], {k.arg: ast.literal_eval(k.value) for k in expr.keywords if k.arg}
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
            needed = [p.name for p in signature.parameters.values() if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            example = ", ".join(f"'{n}'" if i == 0 else f"{n}=…" for i, n in enumerate(needed)) or "…"
            raise ConfigError(
                f"{label}() cannot be called with {_call_text(args, kwargs)} ({exc})",
                f"pass its arguments in --app, as Flask does: --app \"{label}({example})\"",
            ) from None
    return _call_app_code(lambda: func(*args, **kwargs), f"{label}() failed")


def _call_text(args: list[Any], kwargs: dict[str, Any]) -> str:
    if not args and not kwargs:
        return "no arguments"
    return "(" + ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]) + ")"


def _is_flask_app(obj: Any) -> bool:
    # Duck-typed so that Flask is never imported by appshell itself.
    return hasattr(obj, "app_context") and hasattr(obj, "extensions") and hasattr(obj, "wsgi_app")


def _call_app_code(func: Callable[[], Any], what: str) -> Any:
    try:
        return func()
    except Exception as exc:
        raise AppCrashed(what, exc) from exc


class _Collector:
    """Gathers what the app exposes while its provider and modules are scanned."""

    def __init__(self) -> None:
        self.engine: Any = None  # named `engine` by the app (or Flask-SQLAlchemy's): used as is
        self.engines: dict[int, tuple[str, Any]] = {}  # every other engine seen, by identity: where it was found
        self.session: Any = None
        self.sessionmaker: Any = None
        self.metadata: Any = None
        self.registries: list[Any] = []
        self.classes: list[type] = []
        self.extra: dict[str, Any] = {}
        self.app: Any = None
        self.warnings: list[str] = []

    def take_flask(self, app: Any, teardown: list[Callable[[], object]]) -> None:
        app_ctx = app.app_context()
        app_ctx.push()
        teardown.append(lambda: app_ctx.pop())
        self.app = app
        self.extra["app"] = app
        db = app.extensions.get("sqlalchemy")
        if db is not None:
            self.extra["db"] = db
            self.engine = self.engine or db.engine
            self.session = self.session or db.session
            self.metadata = self.metadata or db.metadata
            self.registries.append(db.Model.registry)
        make_shell_context = getattr(app, "make_shell_context", None)
        if make_shell_context is not None:  # @app.shell_context_processor names, as `flask shell` loads them
            shell_names = _call_app_code(make_shell_context, "the app's shell_context_processor failed")
            self.take_mapping(shell_names, "the shell context")

    def take_object(self, value: Any, name: str) -> bool:
        """An Engine, Session or sessionmaker (sync or async) the provider returned: used, not spilled into the namespace."""
        from sqlalchemy import Engine
        from sqlalchemy.orm import Session, scoped_session, sessionmaker

        if isinstance(value, (Engine, Session, scoped_session, sessionmaker, *_async_kinds().all)):
            self._classify(value, name, explicit=True)
            return True
        return False

    def take_mapping(self, values: Mapping[str, Any], where: str = "the provider") -> None:
        for key in _MAPPING_KEYS:
            if values.get(key) is not None and getattr(self, key) is None:
                setattr(self, key, values[key])
        for name, value in values.items():
            if name not in _MAPPING_KEYS:
                self.extra[name] = value
            self._classify(value, f"{where}'s '{name}'")

    def take_attributes(self, obj: Any, what: str) -> None:
        """An object the provider gave that is none of the known kinds — an app's "database interface"
        holding its engine and session factory as (often private) attributes: those are used, its
        public attributes go into the namespace; one that holds none of them is a one-line error."""
        from sqlalchemy import Engine, MetaData
        from sqlalchemy.orm import Session, registry, scoped_session, sessionmaker

        attributes: dict[str, Any]
        try:
            attributes = dict(vars(obj))
        except TypeError:  # None, a str, a number: no attributes at all
            attributes = {}
        kinds = _async_kinds()
        engines: dict[str, Any] = {n: v for n, v in attributes.items() if isinstance(v, (Engine, *kinds.engines))}
        makers = {n: v for n, v in attributes.items() if isinstance(v, (Session, scoped_session, sessionmaker, *kinds.sessions, *kinds.makers))}
        # A scoped session and the sessionmaker it wraps are one factory, not two.
        wrapped = {id(getattr(v, "session_factory", None)) for v in makers.values()}
        makers = {n: v for n, v in makers.items() if id(v) not in wrapped}
        held = {n: v for n, v in attributes.items() if isinstance(v, (MetaData, registry)) or _is_model_or_base(v)}
        if not (engines or makers or held):
            raise ConfigError(
                f"{what} {_a_type(obj)}, in which appshell finds no engine, session, session factory, metadata or models",
                "make it give a mapping ({'engine': …, 'session': …}), an Engine or AsyncEngine, a Session, scoped_session "
                "or sessionmaker (sync or async), a Flask app, or an object whose attributes hold an engine or session factory",
            )
        named = [n for n in engines if n.lstrip("_") == "engine"]
        if len({id(v) for v in engines.values()}) > 1 and len(named) != 1:
            shown = ", ".join(f"'{n}' ({mask_url(v.url.render_as_string(hide_password=True))})" for n, v in engines.items())
            raise ConfigError(
                f"{what} {_a_type(obj)} holding {len(engines)} engines: {shown}",
                "return a mapping from --app that names the one the shell should use: {'engine': …, 'session': …}",
            )
        if len(makers) > 1:
            shown = ", ".join(f"'{n}' ({type(v).__name__})" for n, v in makers.items())
            raise ConfigError(
                f"{what} {_a_type(obj)} holding {len(makers)} session factories: {shown}",
                "return a mapping from --app that names the one the shell should use: {'engine': …, 'session': …}",
            )
        for name, value in attributes.items():
            if not name.startswith("_"):
                self.extra[name] = value  # as a mapping's other keys: the app's own names in the shell
            self._classify(value, f"{what}'s attribute '{name}'", explicit=name in named)

    def take_module(self, module: ModuleType, everything: bool = True) -> None:
        """Classify a module's globals; only its models where *everything* is False (an app module found by the scan)."""
        for name, value in list(vars(module).items()):
            if everything:
                self._classify(value, f"{module.__name__}.{name}", explicit=name == "engine")
            elif isinstance(value, type):
                self._classify(value, name)

    def take_models_module(self, module: ModuleType) -> None:
        """A --models module: its globals, and the names its ``__all__`` exports lazily (a module ``__getattr__``)."""
        self.take_module(module)
        names = getattr(module, "__all__", None)
        if not isinstance(names, (list, tuple)):
            return
        defined = vars(module)
        missing: list[str] = []
        for name in names:
            if not isinstance(name, str) or name in defined:
                continue  # the common case, an eager module: nothing to resolve
            what = f"importing '{module.__name__}.{name}' (listed in its __all__) failed"
            try:
                value = getattr(module, name)
            except AttributeError as exc:
                if not _raised_by_getattr(exc, module):  # an AttributeError inside the module it imports: the app's bug
                    raise AppCrashed(what, exc) from exc
                value = _submodule(module, name, what)  # as `from package import *` does: __all__ may name submodules
                if value is None:
                    missing.append(name)
                    continue
            except Exception as exc:  # the app's own lazy import raised
                raise AppCrashed(what, exc) from exc
            self._classify(value, f"{module.__name__}.{name}", explicit=name == "engine")
        if missing:
            self.warnings.append(
                f"{module.__name__}.__all__ lists {len(missing)} name{'s' if len(missing) > 1 else ''} that it does not define: "
                f"{', '.join(missing)} — fix its __all__ or its __getattr__"
            )

    def _classify(self, value: Any, where: str, explicit: bool = False) -> None:
        from sqlalchemy import Engine, MetaData
        from sqlalchemy import inspect as sa_inspect
        from sqlalchemy.orm import Session, registry, scoped_session, sessionmaker

        kinds = _async_kinds()
        if isinstance(value, type):
            if getattr(value, "__module__", "").startswith("sqlalchemy."):
                return
            mapper: Any = sa_inspect(value, raiseerr=False)
            if mapper is not None and hasattr(mapper, "registry"):
                self.classes.append(value)
                self.registries.append(mapper.registry)
            elif isinstance(getattr(value, "registry", None), registry):
                self.registries.append(getattr(value, "registry"))  # a DeclarativeBase
        elif isinstance(value, (Engine, *kinds.engines)):
            if explicit:
                self.engine = self.engine or value
            elif value is not self.engine:
                self.engines.setdefault(id(value), (where, value))
        elif isinstance(value, (Session, scoped_session, *kinds.sessions)):
            self.session = self.session or value
        elif isinstance(value, (sessionmaker, *kinds.makers)):
            self.sessionmaker = self.sessionmaker or value
        elif isinstance(value, registry):
            self.registries.append(value)
        elif isinstance(value, MetaData):
            self.metadata = self.metadata or value

    def pick_engine(self) -> Any:
        """The app's engine: the one named `engine`, the only one, or the bind of its session; two is an error."""
        if self.engine is not None:
            return self.engine
        others = [(w, e) for w, e in self.engines.values() if e is not self.engine]
        if len(others) > 1:
            shown = ", ".join(f"{w} ({mask_url(e.url.render_as_string(hide_password=True))})" for w, e in others)
            raise ConfigError(
                f"the app has {len(others)} engines: {shown}",
                "name the one the shell should use `engine` in the --app provider (or return {'engine': …} from it)",
            )
        if others:
            return others[0][1]
        for source in (self.session, self.sessionmaker):
            bind = _bind_of(source) if source is not None else None
            if bind is not None:
                return bind
        return None


def _submodule(package: ModuleType, name: str, what: str) -> ModuleType | None:
    """The submodule *name* of *package*, imported; None where there is none (or *package* is a plain module)."""
    if not hasattr(package, "__path__"):
        return None
    full = f"{package.__name__}.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as exc:
        if exc.name == full:
            return None
        raise AppCrashed(what, exc) from exc
    except Exception as exc:
        raise AppCrashed(what, exc) from exc


def _raised_by_getattr(exc: AttributeError, module: ModuleType) -> bool:
    """Was *exc* "no such name" — raised by the module's own ``__getattr__`` (or by ``getattr`` itself,
    where it has none) — rather than by code that ``__getattr__`` imported? (Flask tells a missing
    app from a crashing one the same way: by where the traceback ends.)"""
    tb = exc.__traceback__
    frames = 0
    while tb is not None and tb.tb_next is not None:
        tb, frames = tb.tb_next, frames + 1
    if frames == 0:
        return True  # raised by getattr() in our own frame: the module has no __getattr__
    hook = vars(module).get("__getattr__")
    return tb is not None and tb.tb_frame.f_code is getattr(hook, "__code__", None)


def _a_type(obj: Any) -> str:
    """How an error names what a provider gave: ``None``, ``a str``, ``a shop.db.Database``."""
    if obj is None:
        return "None"
    cls = type(obj)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _is_model_or_base(value: Any) -> bool:
    """A mapped class, or a declarative base (its registry holds the models)."""
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy.orm import registry

    if not isinstance(value, type) or value.__module__.startswith("sqlalchemy."):
        return False
    return sa_inspect(value, raiseerr=False) is not None or isinstance(getattr(value, "registry", None), registry)


class _AsyncKinds(NamedTuple):
    engines: tuple[type, ...] = ()
    sessions: tuple[type, ...] = ()
    makers: tuple[type, ...] = ()

    @property
    def all(self) -> tuple[type, ...]:
        return (*self.engines, *self.sessions, *self.makers)


def _async_kinds() -> _AsyncKinds:
    """SQLAlchemy's async classes, where the app has imported them (a sync app never pays for the import)."""
    if "sqlalchemy.ext.asyncio" not in sys.modules:
        return _AsyncKinds()
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_scoped_session, async_sessionmaker

    return _AsyncKinds((AsyncEngine,), (AsyncSession, async_scoped_session), (async_sessionmaker,))


def _is_async(obj: Any) -> bool:
    return isinstance(obj, _async_kinds().all)


def _bind_of(source: Any) -> Any:
    """The engine a session, scoped session or sessionmaker is bound to, without opening a session."""
    factory = getattr(source, "session_factory", None)  # a scoped session: its registry would make one (in a task, for async)
    if factory is not None:
        source = factory
    kw = getattr(source, "kw", None)  # a sessionmaker keeps it in .kw
    if isinstance(kw, dict):
        return kw.get("bind")
    return getattr(source, "bind", None)


def _name_models(classes: Iterable[type]) -> tuple[dict[str, type], list[str]]:
    """Every class under its name; clashing names qualified by module (like shell_plus)."""
    by_name: dict[str, list[type]] = {}
    for cls in classes:
        group = by_name.setdefault(cls.__name__, [])
        if cls not in group:
            group.append(cls)
    names: dict[str, type] = {}
    warnings: list[str] = []
    for name, group in sorted(by_name.items()):
        if len(group) == 1:
            names[name] = group[0]
            continue
        qualified = {f"{cls.__module__.replace('.', '_')}_{name}": cls for cls in group}
        names.update(qualified)
        shown = ", ".join(f"{cls.__module__}.{name} as {q}" for q, cls in qualified.items())
        warnings.append(f"{len(group)} models are named {name}: {shown}")
    return names, warnings


def _all_mapped(collector: _Collector) -> list[type]:
    classes = list(collector.classes)
    seen_registries: list[Any] = []
    for reg in collector.registries:
        if any(reg is r for r in seen_registries):
            continue
        seen_registries.append(reg)
        classes.extend(m.class_ for m in reg.mappers)
    return classes


_INSTALL_HINT = "install it (pip install 'appshell[postgres]' for PostgreSQL, 'appshell[mysql]' for MySQL, 'appshell[async]' for asyncpg/aiosqlite)"


def _make_engine(url: str | None) -> Any:
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
        raise DatabaseUnavailable("async database URLs need the greenlet library, which is not installed", "pip install 'appshell[async]'") from None


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


def _search_path(root: Path | None, cwd: Path) -> list[Path]:
    """Where the app's packages import from: the working directory (as `python` has it), the project root, their src/."""
    found: list[Path] = []
    for base in (cwd, root):
        if base is None:
            continue
        for folder in (base, base / "src"):
            if folder.is_dir() and folder not in found:
                found.append(folder)
    return found


def _extend_sys_path(folders: list[Path]) -> None:
    for folder in reversed(folders):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def _app_modules(folders: list[Path]) -> list[ModuleType]:
    """The modules imported so far whose files are the app's own (not a virtual environment's, not appshell's)."""
    # Module paths are compared as strings, against each folder as given and as resolved:
    # resolving every module's path costs a syscall per path component (~25 ms for a big app).
    prefixes = tuple({str(f) + "/" for f in folders} | {str(f.resolve()) + "/" for f in folders})
    environment = (sys.prefix + "/", sys.base_prefix + "/")
    found = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or not file.startswith(prefixes) or file.startswith(environment) or "site-packages" in file:
            continue
        if name != "appshell" and not name.startswith("appshell."):
            found.append(module)
    return found


def uses_sqlmodel(classes: Iterable[type]) -> bool:
    if "sqlmodel" not in sys.modules:  # never imported by appshell itself
        return False
    base = sys.modules["sqlmodel"].SQLModel
    return any(issubclass(cls, base) for cls in classes)


def _one_metadata(collector: _Collector, classes: list[type]) -> MetaData | None:
    """The app's metadata if it holds every model's table; else one MetaData with all of them (e.g. two declarative bases)."""
    from sqlalchemy import MetaData

    found: list[MetaData] = [collector.metadata] if collector.metadata is not None else []
    for cls in classes:
        md = getattr(cls, "metadata", None)
        if isinstance(md, MetaData) and not any(md is m for m in found):
            found.append(md)
    tables = {id(t) for cls in classes for t in _tables_of(cls)}
    for md in found:
        if tables <= {id(t) for t in md.tables.values()}:
            return md
    if not found:
        return None
    combined = MetaData()
    for md in found:
        for tbl in md.tables.values():
            if tbl.key not in combined.tables:
                tbl.to_metadata(combined)
    return combined


def _tables_of(cls: type) -> list[Any]:
    from sqlalchemy import inspect as sa_inspect

    mapper: Any = sa_inspect(cls, raiseerr=False)
    return list(getattr(mapper, "tables", []) or [])


def _open_session(collector: _Collector, engine: Any, sqlmodel: bool, classes: list[type]) -> Any:
    """The app's session, else one from its sessionmaker, else a new one (SQLModel's for SQLModel tables).
    For an async engine: the app's AsyncSession, or one from its async_sessionmaker, or a new one."""
    if isinstance(engine, _async_kinds().engines):
        return _open_async_session(collector, engine, sqlmodel)
    if collector.session is not None and not _is_async(collector.session):
        return _bind_if_unbound(collector.session, engine, classes)
    if collector.sessionmaker is not None and not _is_async(collector.sessionmaker):
        return collector.sessionmaker(bind=engine)
    if sqlmodel:
        from sqlmodel import Session as SQLModelSession  # session.exec(select(Hero)), as SQLModel's tutorial has it

        return SQLModelSession(engine)
    from sqlalchemy.orm import Session

    return Session(engine)


def _bind_if_unbound(source: Any, engine: Any, classes: list[type]) -> Any:
    """The app's Session or scoped_session, bound to *engine* where the app binds it only at run time.

    Pyramid's and many Flask-era apps keep one ``scoped_session(sessionmaker())`` and call
    ``Session.configure(bind=engine)`` at startup; imported by appshell, it has no bind and the
    first query would fail with UnboundExecutionError. What is bound is the *session handed out*
    (a scoped session's session for this thread, which its registry makes now), not the app's
    factory: app code that the operator calls uses ``Session``/``Session()`` in this thread and so
    gets this same session and engine, while the factory stays as the app wrote it — whatever else
    makes a session from it (a thread the app starts) still fails loudly rather than silently
    writing through an engine the app did not choose.
    """
    from sqlalchemy.orm import scoped_session

    if isinstance(source, scoped_session):
        if _bind_of(source) is not None:
            return source  # the factory is bound: nothing to make or check
        current = source()  # this thread's session, as the registry would make it at first use
    else:
        current = source
    if not _has_bind(current, classes):
        current.bind = engine
    return source


def _has_bind(session: Any, classes: list[type]) -> bool:
    """Can *session* find an engine — its own bind, a bind per base or table (``binds=``), or its class's get_bind (Flask-SQLAlchemy's)?"""
    from sqlalchemy.exc import UnboundExecutionError

    for mapper in (None, *classes):
        try:
            session.get_bind(mapper=mapper)
            return True
        except UnboundExecutionError:
            continue
    return False


def check_session(ctx: AppContext) -> str | None:
    """Run ``SELECT 1`` through the session the shell hands out: None if it answers, else the error in one line (for doctor)."""
    from sqlalchemy import text

    from appshell.hooks import aio

    def probe() -> None:
        try:
            ctx.session.execute(text("SELECT 1"))
        finally:
            ctx.session.rollback()  # leave no transaction open for what runs next

    async def probe_async() -> None:
        try:
            await ctx.async_session.execute(text("SELECT 1"))
        finally:
            await ctx.async_session.rollback()

    try:
        if ctx.async_session is not None:
            aio.run(probe_async())
        else:
            aio.sync_io(probe)
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        message = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {mask_url(message[0]) if message else ''}".rstrip(": ")
    return None


def _open_async_session(collector: _Collector, engine: Any, sqlmodel: bool) -> Any:
    from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session, async_sessionmaker

    if isinstance(collector.session, AsyncSession):
        return collector.session
    if isinstance(collector.session, async_scoped_session):
        # Its registry is keyed by the current task: the shell keeps one session of that factory's.
        return collector.session.session_factory(bind=engine)
    if isinstance(collector.sessionmaker, async_sessionmaker):
        return collector.sessionmaker(bind=engine)
    if sqlmodel:
        from sqlmodel.ext.asyncio.session import AsyncSession as SQLModelAsyncSession

        return SQLModelAsyncSession(engine)
    return AsyncSession(engine)


def boot(settings: Settings) -> AppContext:
    """Import the app and its models and open a database session."""
    folders = _search_path(settings.project_root, Path.cwd())
    _extend_sys_path(folders)  # like `python -c`, the working directory's packages import; and src/ layouts
    if not settings.app and not settings.models:
        raise ConfigError(
            "no app or models configured",
            "pass --app MODULE[:CALLABLE] or --models MODULE, set APPSHELL_APP, or add [tool.appshell] to pyproject.toml",
        )

    collector = _Collector()
    teardown: list[Callable[[], object]] = []
    label = settings.app or ",".join(settings.models)
    try:
        if settings.app:
            _boot_provider(settings.app, collector, teardown)
        for name in settings.models:
            collector.take_models_module(import_user_module(name, "--models"))
        app_modules = _app_modules(folders)
        for module in app_modules:  # models on another base that the app imports (Flask-AppBuilder's Model)
            collector.take_module(module, everything=False)
        engine = collector.pick_engine()
        made_engine = "" if engine is not None else _url_source(settings)
        engine = engine or _make_engine(settings.database_url)
        async_engine = engine if _is_async(engine) else None
        if async_engine is not None:
            from appshell.hooks import aio

            aio.use_greenlets()  # from here on the app's sync cores do their IO on the session's loop
            engine = async_engine.sync_engine
        classes = _all_mapped(collector)
        sqlmodel = uses_sqlmodel(classes)
        session = _open_session(collector, async_engine or engine, sqlmodel, classes)
        async_session = session if _is_async(session) else None
        if async_session is not None:
            session = async_session.sync_session
        check_connection(engine)
    except BaseException:
        from appshell.hooks import aio

        try:
            for undo in reversed(teardown):
                aio.sync_io(undo)
        finally:
            aio.close()  # the loop the app's boot may have made, and greenlet mode with it
        raise
    models, warnings = _name_models(classes)
    warnings[:0] = collector.warnings
    if not models:
        where = f"--app {settings.app}" if settings.app else "the --models modules"
        warnings.append(f"no mapped classes found in {where} — pass --models MODULE for the module that defines them")
    return AppContext(
        engine=engine,
        session=session,
        metadata=_one_metadata(collector, classes),
        models=models,
        extra=collector.extra,
        app=collector.app,
        label=label,
        warnings=warnings,
        teardown=teardown,
        sqlmodel=sqlmodel,
        async_engine=async_engine,
        async_session=async_session,
        made_engine=made_engine,
        app_modules=app_modules,
    )


def _url_source(settings: Settings) -> str:
    """Where the database URL came from, as the operator would name it."""
    return {
        "flag": "--database-url", ".env": "DATABASE_URL in .env", "pyproject": "database_url in pyproject.toml",
        "profile": f"the profile '{settings.profile.name}'",
    }.get(settings.sources.get("database_url", ""), "DATABASE_URL")


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
    return (f"made by appshell from {ctx.made_engine}, but the app makes its own ({shown}): the shell's connections may "
            f"differ from the web process's — {found[0][1]}")


def _apps_engines(modules: list[ModuleType]) -> list[tuple[str, str]]:
    """(what, the --app that uses it) for each engine the app's modules hold or make, best --app first."""
    from sqlalchemy import Engine

    kinds = (Engine, *_async_kinds().engines)
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
                        factories.append((f"{name}:{attr}(){_static_listener_note(value)}", f"pass --app {name}:{attr} to use it"))
            elif type(value).__module__ in own:
                for key, engine in _instance_attributes(value):
                    if isinstance(engine, kinds) and id(engine) not in seen:
                        seen.update((id(value), id(engine)))
                        holders.append((f"{name}.{attr}.{key}{_listeners_note(engine, own)}", f"pass --app {name}:{attr} to use it"))
    return engines + holders + factories


def _engine_maker_objects() -> tuple[Any, ...]:
    """SQLAlchemy's engine-making functions and the modules they are reached through (``sa.create_engine``)."""
    import sqlalchemy
    from sqlalchemy import create_engine, engine_from_config

    found: list[Any] = [sqlalchemy, sys.modules.get("sqlalchemy.engine"), create_engine, engine_from_config]
    asyncio_ext = sys.modules.get("sqlalchemy.ext.asyncio")
    if asyncio_ext is not None:
        found += [asyncio_ext, getattr(asyncio_ext, "create_async_engine", None), getattr(asyncio_ext, "async_engine_from_config", None)]
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
    if code is not None and _code_calls(code, frozenset({"listens_for", "listen"})) and _code_has_const(code, "connect"):
        return ", which adds a 'connect' listener"
    return ""


def _code_has_const(code: Any, value: str) -> bool:
    return any(c == value or (hasattr(c, "co_consts") and _code_has_const(c, value)) for c in code.co_consts)


def _listeners_note(engine: Any, own: set[str]) -> str:
    """The app's own 'connect' listeners on *engine*'s pool (not SQLAlchemy's, not appshell's)."""
    pool = getattr(getattr(engine, "sync_engine", engine), "pool", None)
    try:
        listeners = list(pool.dispatch.connect) if pool is not None else []
    except Exception:  # noqa: BLE001 - a pool without events: nothing to name
        listeners = []
    names = [f"{fn.__module__}.{fn.__name__}" for fn in listeners if getattr(fn, "__module__", None) in own]
    return f", with connect listener{'s' if len(names) > 1 else ''} {', '.join(names)}" if names else ""


def _instance_attributes(obj: Any) -> list[tuple[str, Any]]:
    try:
        return list(vars(obj).items())
    except TypeError:
        return []


_SETTINGS_NAMES = ("settings", "config")  # the app's own config object keeps its name in the shell


def _boot_provider(spec: str, collector: _Collector, teardown: list[Callable[[], object]]) -> None:
    target, label, call = _load_provider(spec)
    if isinstance(target, ModuleType):
        app = getattr(target, "app", None)
        if not _is_flask_app(app):
            factory = next((getattr(target, n) for n in _FACTORY_NAMES if callable(getattr(target, n, None))), None)
            if factory is not None and "flask" in sys.modules:
                app = _call_factory(factory, f"{label}:{factory.__name__}", None)
        if _is_flask_app(app):
            collector.take_flask(app, teardown)
        collector.take_module(target)
        for name in _SETTINGS_NAMES:
            value = getattr(target, name, None)
            if value is not None and not isinstance(value, ModuleType) and not callable(value):
                collector.extra.setdefault(name, value)
        return
    called = callable(target) and not _is_flask_app(target) and not isinstance(target, type)
    if called:
        target = _call_factory(target, label, call)
    elif call is not None:
        raise ConfigError(f"--app '{spec}': {label} is not callable", f"drop the parentheses: --app {label}")
    target = _enter_provider(target, label, teardown)
    if _is_flask_app(target):
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
        return _call_app_code(lambda: next(gen), f"{label}() failed")
    if inspect.isasyncgen(target):
        agen = target
        aio.keep(agen)  # closed by this teardown, after the operator's async code has ended
        teardown.append(lambda: aio.run(_anext_or_none(agen)))
        return _call_app_code(lambda: aio.run(agen.__anext__()), f"{label}() failed")
    if inspect.iscoroutine(target):
        return _call_app_code(lambda: aio.run(target), f"{label}() failed")
    if hasattr(target, "__aenter__") and hasattr(target, "__aexit__") and not _is_async(target):
        manager = target  # an AsyncSession is one too, but it is used as is
        aio.keep(getattr(manager, "gen", None))  # @asynccontextmanager's generator
        teardown.append(lambda: aio.run(manager.__aexit__(None, None, None)))
        return _call_app_code(lambda: aio.run(manager.__aenter__()), f"{label}() failed")
    if hasattr(target, "__enter__") and hasattr(target, "__exit__") and type(target).__module__ == "contextlib":
        manager = target  # @contextmanager: entered like the generator it wraps
        teardown.append(lambda: manager.__exit__(None, None, None))
        return _call_app_code(manager.__enter__, f"{label}() failed")
    return target


async def _anext_or_none(agen: Any) -> Any:
    return await anext(agen, None)


def format_crash(crash: AppCrashed) -> str:
    """The traceback of the app's own exception, without appshell's frames."""
    exc = crash.exc
    tb = exc.__traceback__
    # Drop the leading frames of appshell and importlib: the story starts in the app.
    ours = str(Path(__file__).resolve().parents[1])  # the appshell package
    while tb is not None and (
        tb.tb_frame.f_code.co_filename.startswith(ours) or "importlib" in tb.tb_frame.f_code.co_filename
    ):
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    out = "".join(lines) + f"appshell: error: {crash.what} (the traceback above is from the app's own code)\n"
    if "greenlet library is required" in str(exc):  # SQLAlchemy 2.1 no longer installs greenlet for asyncio
        out += "appshell: hint: the app's async engine needs greenlet: pip install 'appshell[async]'\n"
    if "requires an async driver" in str(exc):  # create_async_engine() given a sync URL (e.g. by --database-url)
        out += ("appshell: hint: the app makes an async engine: give DATABASE_URL/--database-url an async driver, "
                "such as postgresql+asyncpg://, sqlite+aiosqlite:// or mysql+aiomysql:// (pip install 'appshell[async]')\n")
    return out
