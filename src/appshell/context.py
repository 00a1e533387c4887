"""Booting the application's context: its models, engine and session (SPEC §2).

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
from typing import TYPE_CHECKING, Any

from appshell.errors import AppNotFound, ConfigError, DatabaseUnavailable
from appshell.redact import mask_url

if TYPE_CHECKING:
    from sqlalchemy import Engine, MetaData
    from sqlalchemy.orm import Session

    from appshell.settings import Settings

__all__ = ["AppContext", "boot", "import_user_module", "AppCrashed"]

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
    teardown: list[Callable[[], object]] = field(default_factory=list)

    def close(self) -> None:
        """Roll back what was not committed and run the app's teardown, newest first."""
        try:
            self.session.rollback()
            self.session.close()
            # Close the pooled connections now: a sandbox's outer transaction ends here.
            self.engine.dispose()
        finally:
            while self.teardown:
                self.teardown.pop()()


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


def _load_provider(spec: str) -> tuple[Any, str]:
    module_name, _, attr = spec.partition(":")
    module = import_user_module(module_name, "--app")
    if not attr:
        return module, module_name
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppNotFound(
                f"module '{module_name}' has no attribute '{attr}'",
                "fix --app (use 'module:callable')",
            ) from None
    return target, spec


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
        self.engine: Any = None
        self.session: Any = None
        self.sessionmaker: Any = None
        self.metadata: Any = None
        self.registries: list[Any] = []
        self.classes: list[type] = []
        self.extra: dict[str, Any] = {}
        self.app: Any = None

    def take_flask(self, app: Any, teardown: list[Callable[[], object]]) -> None:
        app_ctx = app.app_context()
        app_ctx.push()
        teardown.append(lambda: app_ctx.pop())
        self.app = app
        self.extra["app"] = app
        db = app.extensions.get("sqlalchemy")
        if db is None:
            return
        self.extra["db"] = db
        self.engine = self.engine or db.engine
        self.session = self.session or db.session
        self.metadata = self.metadata or db.metadata
        self.registries.append(db.Model.registry)

    def take_mapping(self, values: Mapping[str, Any]) -> None:
        for key in _MAPPING_KEYS:
            if values.get(key) is not None and getattr(self, key) is None:
                setattr(self, key, values[key])
        for name, value in values.items():
            if name not in _MAPPING_KEYS:
                self.extra[name] = value
            self._classify(value)

    def take_module(self, module: ModuleType) -> None:
        for value in vars(module).values():
            self._classify(value)

    def _classify(self, value: Any) -> None:
        from sqlalchemy import Engine, MetaData
        from sqlalchemy import inspect as sa_inspect
        from sqlalchemy.orm import Session, registry, scoped_session, sessionmaker

        if isinstance(value, type):
            if getattr(value, "__module__", "").startswith("sqlalchemy."):
                return
            mapper: Any = sa_inspect(value, raiseerr=False)
            if mapper is not None and hasattr(mapper, "registry"):
                self.classes.append(value)
                self.registries.append(mapper.registry)
            elif isinstance(getattr(value, "registry", None), registry):
                self.registries.append(getattr(value, "registry"))  # a DeclarativeBase
        elif isinstance(value, Engine):
            self.engine = self.engine or value
        elif isinstance(value, (Session, scoped_session)):
            self.session = self.session or value
        elif isinstance(value, sessionmaker):
            self.sessionmaker = self.sessionmaker or value
        elif isinstance(value, registry):
            self.registries.append(value)
        elif isinstance(value, MetaData):
            self.metadata = self.metadata or value


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


def _make_engine(url: str | None) -> Engine:
    if not url:
        raise ConfigError(
            "no database configured",
            "set DATABASE_URL (in the environment or .env) or pass --database-url",
        )
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        return create_engine(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(f"bad database URL {mask_url(url)} ({exc})", "fix DATABASE_URL/--database-url") from None
    except ModuleNotFoundError as exc:
        raise DatabaseUnavailable(
            f"the database driver '{exc.name}' is not installed",
            "install it (pip install 'appshell[postgres]' for PostgreSQL, 'appshell[mysql]' for MySQL)",
        ) from None


def check_connection(engine: Engine) -> None:
    """Connect once, so an unreachable database is a clear error before the shell opens."""
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect():
            pass  # the connection goes back to the pool for the session to reuse
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(
            f"cannot connect to {mask_url(engine.url.render_as_string(hide_password=True))} ({reason})",
            "check DATABASE_URL/--database-url and that the server is running",
        ) from None


def boot(settings: Settings) -> AppContext:
    """Import the app and its models and open a database session."""
    root = settings.project_root
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))  # like `python -m`, the project's packages import
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
            collector.take_module(import_user_module(name, "--models"))
        engine = collector.engine or _make_engine(settings.database_url)
        if collector.session is not None:
            session = collector.session
        elif collector.sessionmaker is not None:
            session = collector.sessionmaker(bind=engine)
        else:
            from sqlalchemy.orm import Session

            session = Session(engine)
        check_connection(engine)
    except BaseException:
        for undo in reversed(teardown):
            undo()
        raise
    classes = _all_mapped(collector)
    metadata = collector.metadata or (classes[0].metadata if classes and hasattr(classes[0], "metadata") else None)
    models, warnings = _name_models(classes)
    return AppContext(
        engine=engine,
        session=session,
        metadata=metadata,
        models=models,
        extra=collector.extra,
        app=collector.app,
        label=label,
        warnings=warnings,
        teardown=teardown,
    )


def _boot_provider(spec: str, collector: _Collector, teardown: list[Callable[[], object]]) -> None:
    target, label = _load_provider(spec)
    if isinstance(target, ModuleType):
        app = getattr(target, "app", None)
        if not _is_flask_app(app):
            factory = next((getattr(target, n) for n in _FACTORY_NAMES if callable(getattr(target, n, None))), None)
            if factory is not None and "flask" in sys.modules:
                app = _call_app_code(factory, f"{label}.{factory.__name__}() failed")
        if _is_flask_app(app):
            collector.take_flask(app, teardown)
        collector.take_module(target)
        return
    if callable(target) and not _is_flask_app(target) and not isinstance(target, type):
        target = _call_app_code(target, f"{label}() failed")
    if inspect.isgenerator(target):
        gen = target  # a setup hook (like pshell's): its code after `yield` is the teardown
        target = _call_app_code(lambda: next(gen), f"{label}() failed")
        teardown.append(lambda: next(gen, None))
    if _is_flask_app(target):
        collector.take_flask(target, teardown)
    elif isinstance(target, Mapping):
        collector.take_mapping(target)
    else:
        collector.take_mapping({k: v for k, v in vars(target).items() if not k.startswith("_")})


def format_crash(crash: AppCrashed) -> str:
    """The traceback of the app's own exception, without appshell's frames."""
    exc = crash.exc
    tb = exc.__traceback__
    # Drop the leading frames of appshell and importlib: the story starts in the app.
    ours = str(Path(__file__).resolve().parent)
    while tb is not None and (
        tb.tb_frame.f_code.co_filename.startswith(ours) or "importlib" in tb.tb_frame.f_code.co_filename
    ):
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    return "".join(lines) + f"appshell: error: {crash.what} (the traceback above is from the app's own code)\n"
