"""The shell's namespace, built in layers (docs/usage.md), and the settings view."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from appshell.boot.crash import import_user_module
from appshell.config.redact import mask_mapping
from appshell.console.helpers import make_helpers
from appshell.console.render import table
from appshell.console.reprs import install_reprs
from appshell.errors import ConfigError

if TYPE_CHECKING:
    from appshell.boot.context import AppContext
    from appshell.config.settings import Settings
    from appshell.record.journal import Journal

__all__ = ["build_namespace", "SettingsView", "ENTRY_POINT_GROUP", "SETTINGS_NAME"]

ENTRY_POINT_GROUP = "appshell.helpers"
SETTINGS_NAME = "appshell_settings"  # appshell's own config view: a name no app uses


class SettingsView(Mapping[str, Any]):
    """The resolved configuration, secrets masked, read-only; shows itself as a table with each value's source."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        from appshell.config.settings import OPTIONS

        by_env = {o.env: o.name for o in OPTIONS if o.env}
        public = settings.public()
        for key, from_file in settings.dotenv.items():
            # .env never overrides a real variable: where the environment differs, it won
            # (or, for appshell's own variables, the flag that was exported over it).
            real = environ.get(key, from_file)
            values[key], sources[key] = real, (".env" if real == from_file else "env")
            option = by_env.get(key)
            if option is not None and public.get(option) == real:
                sources[key] = settings.sources.get(option, sources[key])
        values.update(public)
        sources.update(settings.sources)
        values["project_root"] = str(settings.project_root) if settings.project_root else None
        sources["project_root"] = "found" if settings.project_root else "default"
        self._values = mask_mapping(values)
        self._sources = sources

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def source(self, key: str) -> str:
        """Where the value of *key* came from: flag, env, .env, profile, pyproject, default (or found)."""
        return self._sources.get(key, "default")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __repr__(self) -> str:
        rows = [[k, v, self.source(k)] for k, v in self._values.items()]
        return table(["setting", "value", "from"], rows, max_cell=200)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def _profile_imports(lines: Sequence[str], namespace: dict[str, Any], profile: str) -> None:
    for line in lines:
        try:
            exec(compile(line, f"<profile {profile}: namespace.imports>", "exec"), namespace)
        except ImportError as exc:
            raise ConfigError(
                f"profile '{profile}' namespace.imports: {line!r} failed ({exc})",
                "fix the import in the profile or install the package",
            ) from None


def _profile_helpers(specs: Sequence[str], namespace: dict[str, Any]) -> None:
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        module = import_user_module(module_name, "namespace.helpers")
        try:
            namespace[attr.rsplit(".", 1)[-1]] = getattr(module, attr)
        except AttributeError:
            raise ConfigError(
                f"namespace.helpers: '{module_name}' has no '{attr}'", "fix the profile's namespace.helpers"
            ) from None


def _entry_point_helpers(namespace: dict[str, Any], helpers: dict[str, Any]) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plug-in must not keep the operator out
            print(f"appshell: warning: helper '{ep.name}' from {ep.value} failed to load ({exc})", file=sys.stderr)
            continue
        namespace[ep.name] = obj
        helpers[ep.name] = obj


def _protect(ctx: AppContext, settings: Settings) -> bool:
    """The session's protected data (appshell.console.protect), on until the context's teardown; what each
    table protects is worked out when a table or repr is first drawn, not here (start-up)."""
    if not settings.profile.protect.enabled:  # appshell.console.protect is not even imported (start-up)
        loaded = sys.modules.get("appshell.console.protect")
        if loaded is not None:
            loaded.deactivate()
        return False
    from appshell.console import protect

    rules = protect.Rules.of(settings.profile)
    models, metadata = list(ctx.models.values()), ctx.metadata
    protection = protect.Protection(rules, lambda: protect.tables_of(models, metadata))
    protect.activate(protection)
    ctx.teardown.append(protect.deactivate)
    if rules.column_grants:  # the role cannot read them: ORM queries leave them out
        protect.leave_out(protection)
    return True


def _unlock_helpers(journal: Journal, ctx: AppContext, settings: Settings, protected: bool) -> dict[str, Any]:
    profile = settings.profile.name
    if protected:
        from appshell.console.unlock import make_unlock, role_switch

        return make_unlock(journal, profile, role_switch(settings, ctx), sandbox=settings.sandbox)

    def unlock(reason: str | None = None, *columns: Any) -> None:
        """Show protected values until lock(), with a reason that is recorded: unlock("INC-42: why")."""
        print(
            f"appshell: nothing is masked in this session (profile {profile}: protect.enabled is off)", file=sys.stderr
        )

    def lock() -> None:
        """Mask protected values again."""

    return {"unlock": unlock, "lock": lock}


def build_namespace(
    ctx: AppContext, settings: Settings, journal: Journal, more_helpers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Models, then the app's extras, then the core objects and helpers, then profile and plug-ins."""
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    profile = settings.profile
    if profile.namespace.vocabulary:
        from appshell.console.vocabulary import add_vocabulary

        kept = add_vocabulary(namespace, {**ctx.models, **ctx.extra}, sqlmodel=ctx.sqlmodel)
        if kept:
            print(
                f"appshell: warning: the app's own {', '.join(kept)} "
                "keep their names (the query vocabulary's are left out)",
                file=sys.stderr,
            )
    protected = _protect(ctx, settings)
    install_reprs(ctx.models.values(), protect=protected)
    namespace.update(ctx.models)
    namespace.update(ctx.extra)
    view = SettingsView(settings)
    # The app's own `settings` (pydantic-settings, a Flask shell context) keeps its name.
    # An async app's `session` is its AsyncSession (what its functions take); helpers need no await.
    session = ctx.async_session if ctx.async_session is not None else ctx.session
    engine = ctx.async_engine if ctx.async_engine is not None else ctx.engine
    namespace.update(session=session, engine=engine, metadata=ctx.metadata, **{SETTINGS_NAME: view})
    namespace.setdefault("settings", view)
    helpers = make_helpers(ctx, journal)
    helpers.update(_unlock_helpers(journal, ctx, settings, protected))
    helpers.update(more_helpers or {})  # listed by helpers() too: it reads this same dict
    namespace.update(helpers)
    _profile_imports(profile.namespace.imports, namespace, profile.name)
    _profile_helpers(profile.namespace.helpers, namespace)
    _entry_point_helpers(namespace, helpers)
    return namespace
