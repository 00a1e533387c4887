"""Discovery: what the app exposes (engines, sessions, sessionmakers, metadata, mapped classes), classified while
its provider and modules are scanned; async kinds told apart from their sync siblings; models named."""
# Over 350 lines: one Collector classifies every kind of object an app may expose; its checks share its state.

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from appshell.boot.crash import call_app_code
from appshell.config.redact import mask_url
from appshell.errors import AppCrashed, ConfigError

if TYPE_CHECKING:
    from sqlalchemy import MetaData


__all__ = ["uses_sqlmodel"]


_MAPPING_KEYS = ("engine", "session", "metadata")


def is_flask_app(obj: Any) -> bool:
    # Duck-typed so that Flask is never imported by appshell itself.
    return hasattr(obj, "app_context") and hasattr(obj, "extensions") and hasattr(obj, "wsgi_app")


class Collector:
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
            shell_names = call_app_code(make_shell_context, "the app's shell_context_processor failed")
            self.take_mapping(shell_names, "the shell context")

    def take_object(self, value: Any, name: str) -> bool:
        """An Engine, Session or sessionmaker (sync or async) the
        provider returned: used, not spilled into the namespace."""
        from sqlalchemy import Engine
        from sqlalchemy.orm import Session, scoped_session, sessionmaker

        if isinstance(value, (Engine, Session, scoped_session, sessionmaker, *async_kinds().all)):
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
        kinds = async_kinds()
        engines: dict[str, Any] = {n: v for n, v in attributes.items() if isinstance(v, (Engine, *kinds.engines))}
        makers = {
            n: v
            for n, v in attributes.items()
            if isinstance(v, (Session, scoped_session, sessionmaker, *kinds.sessions, *kinds.makers))
        }
        # A scoped session and the sessionmaker it wraps are one factory, not two.
        wrapped = {id(getattr(v, "session_factory", None)) for v in makers.values()}
        makers = {n: v for n, v in makers.items() if id(v) not in wrapped}
        held = {n: v for n, v in attributes.items() if isinstance(v, (MetaData, registry)) or _is_model_or_base(v)}
        if not (engines or makers or held):
            raise ConfigError(
                f"{what} {_a_type(obj)}, in which appshell finds no "
                "engine, session, session factory, metadata or models",
                "make it give a mapping ({'engine': …, 'session': …}), "
                "an Engine or AsyncEngine, a Session, scoped_session "
                "or sessionmaker (sync or async), a Flask app, or an "
                "object whose attributes hold an engine or session factory",
            )
        named = [n for n in engines if n.lstrip("_") == "engine"]
        if len({id(v) for v in engines.values()}) > 1 and len(named) != 1:
            shown = ", ".join(
                f"'{n}' ({mask_url(v.url.render_as_string(hide_password=True))})" for n, v in engines.items()
            )
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
        """Classify a module's globals; only its models where
        *everything* is False (an app module found by the scan)."""
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
                f"{module.__name__}.__all__ lists {len(missing)} "
                f"name{'s' if len(missing) > 1 else ''} that it does not define: "
                f"{', '.join(missing)} — fix its __all__ or its __getattr__"
            )

    def _classify(self, value: Any, where: str, explicit: bool = False) -> None:
        from sqlalchemy import Engine, MetaData
        from sqlalchemy import inspect as sa_inspect
        from sqlalchemy.orm import Session, registry, scoped_session, sessionmaker

        kinds = async_kinds()
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
            bind = bind_of(source) if source is not None else None
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


def async_kinds() -> _AsyncKinds:
    """SQLAlchemy's async classes, where the app has imported them (a sync app never pays for the import)."""
    if "sqlalchemy.ext.asyncio" not in sys.modules:
        return _AsyncKinds()
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_scoped_session, async_sessionmaker

    return _AsyncKinds((AsyncEngine,), (AsyncSession, async_scoped_session), (async_sessionmaker,))


def is_async(obj: Any) -> bool:
    return isinstance(obj, async_kinds().all)


def bind_of(source: Any) -> Any:
    """The engine a session, scoped session or sessionmaker is bound to, without opening a session."""
    factory = getattr(
        source, "session_factory", None
    )  # a scoped session: its registry would make one (in a task, for async)
    if factory is not None:
        source = factory
    kw = getattr(source, "kw", None)  # a sessionmaker keeps it in .kw
    if isinstance(kw, dict):
        return kw.get("bind")
    return getattr(source, "bind", None)


def name_models(classes: Iterable[type]) -> tuple[dict[str, type], list[str]]:
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


def all_mapped(collector: Collector) -> list[type]:
    classes = list(collector.classes)
    seen_registries: list[Any] = []
    for reg in collector.registries:
        if any(reg is r for r in seen_registries):
            continue
        seen_registries.append(reg)
        classes.extend(m.class_ for m in reg.mappers)
    return classes


def uses_sqlmodel(classes: Iterable[type]) -> bool:
    if "sqlmodel" not in sys.modules:  # never imported by appshell itself
        return False
    base = sys.modules["sqlmodel"].SQLModel
    return any(issubclass(cls, base) for cls in classes)


def one_metadata(collector: Collector, classes: list[type]) -> MetaData | None:
    """The app's metadata if it holds every model's table; else
    one MetaData with all of them (e.g. two declarative bases)."""
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
