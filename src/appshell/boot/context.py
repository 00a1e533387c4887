"""Booting the application's context: its models, engine and session (docs/usage.md).

Sources, in order: ``--app`` (a module, or ``module:callable`` returning a
mapping, a generator yielding one, or a Flask app), ``--models`` modules, and
``[tool.appshell]`` (already folded into the settings).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from appshell.boot.crash import import_user_module
from appshell.boot.discovery import (
    Collector,
    all_mapped,
    async_kinds,
    bind_of,
    is_async,
    name_models,
    one_metadata,
    uses_sqlmodel,
)
from appshell.boot.engine import check_connection, make_engine
from appshell.boot.provider import boot_provider
from appshell.config.redact import mask_url
from appshell.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine, MetaData
    from sqlalchemy.orm import Session

    from appshell.config.settings import Settings

__all__ = ["AppContext", "boot", "check_session"]


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


def _search_path(root: Path | None, cwd: Path) -> list[Path]:
    """Where the app's packages import from: the working directory
    (as `python` has it), the project root, their src/."""
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


def _open_session(collector: Collector, engine: Any, sqlmodel: bool, classes: list[type]) -> Any:
    """The app's session, else one from its sessionmaker, else a new one (SQLModel's for SQLModel tables).
    For an async engine: the app's AsyncSession, or one from its async_sessionmaker, or a new one."""
    if isinstance(engine, async_kinds().engines):
        return _open_async_session(collector, engine, sqlmodel)
    if collector.session is not None and not is_async(collector.session):
        return _bind_if_unbound(collector.session, engine, classes)
    if collector.sessionmaker is not None and not is_async(collector.sessionmaker):
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
        if bind_of(source) is not None:
            return source  # the factory is bound: nothing to make or check
        current = source()  # this thread's session, as the registry would make it at first use
    else:
        current = source
    if not _has_bind(current, classes):
        current.bind = engine
    return source


def _has_bind(session: Any, classes: list[type]) -> bool:
    """Can *session* find an engine — its own bind, a bind per base or
    table (``binds=``), or its class's get_bind (Flask-SQLAlchemy's)?"""
    from sqlalchemy.exc import UnboundExecutionError

    for mapper in (None, *classes):
        try:
            session.get_bind(mapper=mapper)
            return True
        except UnboundExecutionError:
            continue
    return False


def check_session(ctx: AppContext) -> str | None:
    """Run ``SELECT 1`` through the session the shell hands out:
    None if it answers, else the error in one line (for doctor)."""
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
    except Exception as exc:
        message = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {mask_url(message[0]) if message else ''}".rstrip(": ")
    return None


def _open_async_session(collector: Collector, engine: Any, sqlmodel: bool) -> Any:
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
            "pass --app MODULE[:CALLABLE] or --models MODULE, set "
            "APPSHELL_APP, or add [tool.appshell] to pyproject.toml",
        )

    collector = Collector()
    teardown: list[Callable[[], object]] = []
    label = settings.app or ",".join(settings.models)
    try:
        if settings.app:
            boot_provider(settings.app, collector, teardown)
        for name in settings.models:
            collector.take_models_module(import_user_module(name, "--models"))
        app_modules = _app_modules(folders)
        for module in app_modules:  # models on another base that the app imports (Flask-AppBuilder's Model)
            collector.take_module(module, everything=False)
        engine = collector.pick_engine()
        made_engine = "" if engine is not None else _url_source(settings)
        engine = engine or make_engine(settings.database_url)
        async_engine = engine if is_async(engine) else None
        if async_engine is not None:
            from appshell.hooks import aio

            aio.use_greenlets()  # from here on the app's sync cores do their IO on the session's loop
            engine = async_engine.sync_engine
        classes = all_mapped(collector)
        sqlmodel = uses_sqlmodel(classes)
        session = _open_session(collector, async_engine or engine, sqlmodel, classes)
        async_session = session if is_async(session) else None
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
    models, warnings = name_models(classes)
    warnings[:0] = collector.warnings
    if not models:
        where = f"--app {settings.app}" if settings.app else "the --models modules"
        warnings.append(f"no mapped classes found in {where} — pass --models MODULE for the module that defines them")
    return AppContext(
        engine=engine,
        session=session,
        metadata=one_metadata(collector, classes),
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
        "flag": "--database-url",
        ".env": "DATABASE_URL in .env",
        "pyproject": "database_url in pyproject.toml",
        "profile": f"the profile '{settings.profile.name}'",
    }.get(settings.sources.get("database_url", ""), "DATABASE_URL")
