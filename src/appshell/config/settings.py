"""Resolved settings and the one place that knows their precedence (docs/configuration.md).

Highest first: command-line flag, real environment variable, the ``.env``
file, the selected profile, ``[tool.appshell]`` in pyproject.toml, built-in
defaults.
"""
# Over 350 lines: the one table of options (OPTIONS) and the
# precedence that reads it; split, the order would live twice.

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appshell.config.policy import audit_problems
from appshell.config.profiles import Profile, load_profile
from appshell.errors import ConfigError

if TYPE_CHECKING:
    from appshell.config.redact import Redactor

__all__ = [
    "Settings",
    "Option",
    "OPTIONS",
    "LAYERS",
    "resolve",
    "find_project_root",
    "export_environment",
    "redaction_sources",
    "session_redactor",
    "expand_url_password",
]

# The precedence order, highest first. Written once; --help and docs/ repeat it.
LAYERS = ("flag", "env", ".env", "profile", "pyproject", "default")
# The layers an operator sets at will for one run; where the profile sets audit.locked,
# they cannot change an audit option (docs/audit.md, "Audit settings belong to the profile").
OPERATOR_LAYERS = ("flag", "env", ".env")


@dataclass(frozen=True)
class Option:
    name: str
    env: str | None = None
    profile: str | None = None
    pyproject: str | None = None
    kind: str = "str"  # str | bool | list
    default: Any = None
    flag: str | None = None  # the command-line flag, where there is one (a bool flag takes no value)
    audit: bool = False  # an audit path, sink or redaction setting: the profile's alone where locked
    metavar: str | None = None  # the flag's value in --help
    help: str = ""  # the flag's line in --help (the variable is added to it)


# Every option, written once: the CLI's flags, the environment's names, the profile's and
# pyproject's keys and the docs table (tests/test_settings.py compares it) come from here.
OPTIONS: tuple[Option, ...] = (
    Option(
        "app",
        env="APPSHELL_APP",
        pyproject="app",
        flag="--app",
        metavar="MODULE[:ATTR]",
        help="the app's context provider",
    ),
    Option(
        "models",
        env="APPSHELL_MODELS",
        pyproject="models",
        kind="list",
        default=(),
        flag="--models",
        metavar="MODULE",
        help="module with mapped classes; repeatable",
    ),
    Option(
        "database_url",
        env="DATABASE_URL",
        pyproject="database_url",
        flag="--database-url",
        metavar="URL",
        help="the database",
    ),
    Option(
        "env_file",
        env="APPSHELL_ENV_FILE",
        pyproject="env_file",
        default=".env",
        flag="--env-file",
        metavar="PATH",
        help="the .env file (default: .env in the project root)",
    ),
    Option(
        "profile",
        env="APPSHELL_PROFILE",
        pyproject="profile",
        default="development",
        flag="--profile",
        metavar="NAME",
        help="profile (default: development)",
    ),
    Option(
        "shell",
        env="APPSHELL_SHELL",
        profile="shell.default",
        pyproject="shell",
        default="auto",
        flag="--shell",
        metavar="NAME",
        help="auto|ipython|ptpython|python",
    ),
    Option(
        "sandbox",
        env="APPSHELL_SANDBOX",
        profile="database.sandbox",
        kind="bool",
        default=False,
        flag="--sandbox",
        help="roll back every database change at exit",
    ),
    # A pair of flags: --read-only, and --write (only where the profile allows it); see cli.build_parser.
    Option(
        "read_only",
        profile="database.read_only",
        kind="bool",
        default=False,
        flag="--read-only",
        help="the database refuses writes",
    ),
    Option("reason", env="APPSHELL_REASON", flag="--reason", metavar="TEXT", help="why this session is opened"),
    Option(
        "echo_sql",
        profile="database.echo_sql",
        kind="bool",
        default=False,
        flag="--echo-sql",
        help="print each SQL statement as it runs",
    ),
    Option(
        "audit_log",
        env="APPSHELL_AUDIT_LOG",
        profile="audit.path",
        pyproject="audit_log",
        flag="--audit-log",
        audit=True,
        metavar="PATH",
        help="the audit file sink",
    ),
    Option("audit_url", env="APPSHELL_AUDIT_URL", profile="audit.url", audit=True),
    Option("audit_syslog", env="APPSHELL_SYSLOG_ADDRESS", profile="audit.syslog_address", audit=True),
)
_BY_NAME = {o.name: o for o in OPTIONS}
_PYPROJECT_KEYS = {o.pyproject: o for o in OPTIONS if o.pyproject}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """What appshell runs with; ``sources`` says which layer gave each value."""

    app: str | None
    models: tuple[str, ...]
    database_url: str | None
    env_file: str
    profile: Profile  # the option "profile" is its name
    shell: str
    sandbox: bool
    read_only: bool
    reason: str | None
    echo_sql: bool
    audit_log: str | None
    audit_url: str | None
    audit_syslog: str | None
    project_root: Path | None
    sources: dict[str, str] = field(default_factory=dict)
    dotenv: dict[str, str] = field(default_factory=dict)
    # What breaks the profile's audit policy: raised by resolve(), listed by doctor.
    audit_problems: tuple[ConfigError, ...] = ()

    def public(self) -> dict[str, Any]:
        """The option values, for display (not masked: callers mask)."""
        values = {o.name: getattr(self, o.name) for o in OPTIONS}
        values["profile"] = self.profile.name
        return values


def find_project_root(start: Path, explicit: str | None = None) -> Path | None:
    """The nearest folder upward with ``[tool.appshell]`` in pyproject.toml or a profiles/ folder."""
    if explicit:
        root = Path(explicit).resolve()
        if not root.is_dir():
            raise ConfigError(f"project folder {explicit} does not exist", "fix --project")
        return root
    for folder in (start, *start.parents):
        if (folder / "profiles").is_dir():
            return folder
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.appshell]" in pyproject.read_text(encoding="utf-8", errors="replace"):
            return folder
    return None


def _read_pyproject(root: Path | None) -> dict[str, Any]:
    if root is None or not (root / "pyproject.toml").is_file():
        return {}
    import tomllib

    path = root / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})", "fix the file's syntax") from None
    table = data.get("tool", {}).get("appshell", {})
    values: dict[str, Any] = {}
    for key, value in table.items():
        option = _PYPROJECT_KEYS.get(key)
        if option is None:
            raise ConfigError(
                f"{path}: unknown key '{key}' in [tool.appshell]",
                "use one of: " + ", ".join(sorted(_PYPROJECT_KEYS)),
            )
        values[option.name] = value
    return values


def _from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    return {o.name: environ[o.env] for o in OPTIONS if o.env and o.env in environ}


def _from_profile(profile: Profile) -> dict[str, Any]:
    return {o.name: profile.value(o.profile) for o in OPTIONS if o.profile and o.profile in profile.explicit}


def _convert(option: Option, value: Any, where: str) -> Any:
    if option.kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"bad value {value!r} for {option.name} in {where}", "use 1/0, true/false, yes/no or on/off")
    if option.kind == "list":
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"bad value {value!r} for {option.name} in {where}", "use a list of module names")
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"bad value {value!r} for {option.name} in {where}", "use a string")
    return value


def _lookup(option: Option, layers: Mapping[str, Mapping[str, Any]]) -> tuple[Any, str]:
    """The value of *option* from the highest layer that sets it, and that layer's name."""
    for layer in LAYERS:
        values = layers.get(layer, {})
        if option.name in values and values[option.name] is not None:
            where = {"env": f"${option.env}", ".env": f".env ({option.env})"}.get(layer, layer)
            return _convert(option, values[option.name], where), layer
    return option.default, "default"


def _locked_lookup(
    option: Option, layers: Mapping[str, Mapping[str, Any]], profile: Profile, env_path: Path
) -> tuple[Any, str, list[ConfigError]]:
    """An audit option under audit.locked: the profile's value (else pyproject, default), and
    one error for every operator layer that tries to set another."""
    problems = []
    for layer in OPERATOR_LAYERS:
        if not layers.get(layer, {}).get(option.name):  # unset or empty: nothing to override
            continue
        where, undo = {
            "flag": (option.flag or option.name, f"drop {option.flag}"),
            "env": (f"{option.env}", f"unset {option.env}"),
            ".env": (f"{option.env} in {env_path}", f"remove {option.env} from {env_path}"),
        }[layer]
        problems.append(
            ConfigError(
                f"{where} cannot change the audit settings: profile '{profile.name}' locks them (audit.locked = true)",
                f"{undo}, or change {option.profile} in profiles/{profile.name}.toml",
            )
        )
    trusted = {k: v for k, v in layers.items() if k not in OPERATOR_LAYERS}
    value, source = _lookup(option, trusted)
    return value, source, problems


def _read_dotenv(path: Path, explicit: bool) -> dict[str, str]:
    if not path.is_file():
        if explicit:
            raise ConfigError(f"env file {path} not found", "fix --env-file/APPSHELL_ENV_FILE or create the file")
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def resolve(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    project: str | None = None,
    strict: bool = True,
) -> Settings:
    """Resolve every option through LAYERS; pure: reads files, changes nothing.

    Where the profile locks its audit settings, flags, environment and .env cannot change
    them; with *strict* (the default) that, and a required audit without sinks, is a
    ConfigError. ``strict=False`` (doctor) keeps the profile's values and lists the
    problems in ``audit_problems``.
    """
    environ = os.environ if environ is None else environ
    root = find_project_root((cwd or Path.cwd()).resolve(), project)
    layers: dict[str, Mapping[str, Any]] = {
        "flag": {k: v for k, v in flags.items() if v is not None},
        "env": _from_environ(environ),
        "pyproject": _read_pyproject(root),
    }
    env_file, env_file_source = _lookup(_BY_NAME["env_file"], layers)
    env_path = Path(env_file)
    if not env_path.is_absolute():
        env_path = (root or cwd or Path.cwd()) / env_path
    dotenv = _read_dotenv(env_path, explicit=env_file_source != "default")
    layers[".env"] = _from_environ(dotenv)
    profile_name, _ = _lookup(_BY_NAME["profile"], layers)
    profile = load_profile(profile_name, root)
    layers["profile"] = _from_profile(profile)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems = audit_problems(profile)
    for option in OPTIONS:
        if option.audit and profile.audit.locked:
            values[option.name], sources[option.name], found = _locked_lookup(option, layers, profile, env_path)
            problems += found
        else:
            values[option.name], sources[option.name] = _lookup(option, layers)
    if strict and problems:
        raise problems[0]
    values["profile"] = profile
    return Settings(**values, project_root=root, sources=sources, dotenv=dotenv, audit_problems=tuple(problems))


def export_environment(settings: Settings, environ: MutableMapping[str, str] | None = None) -> None:
    """Make the app's own config see what appshell resolved (factor III).

    ``.env`` never overrides a real variable; an explicit --database-url does,
    so that the app and appshell agree on the database.
    """
    target: MutableMapping[str, str] = os.environ if environ is None else environ
    for key, value in settings.dotenv.items():
        target.setdefault(key, value)
    if settings.database_url and settings.sources.get("database_url") == "flag":
        target["DATABASE_URL"] = settings.database_url
    # The sinks take their addresses from the settings (appshell.audit.auditor), not from these variables;
    # a ${NAME} password that is not set is said now, before anything boots.
    if settings.audit_url:
        expand_url_password(settings.audit_url, target)


def expand_url_password(url: str, environ: Mapping[str, str]) -> str:
    """A URL whose password is written ``${NAME}`` gets it from the variable NAME.

    So a profile can fix the audit database's host, database and user (audit.url) while the
    password stays out of the file: a wrong or overridden password can only make the
    connection fail — and a required audit then fails closed — never point it elsewhere.
    """
    from sqlalchemy.engine import make_url

    match = re.search(r":\$\{(\w+)\}@", url)
    if match is None:
        return url
    name = match[1]
    if not environ.get(name):
        raise ConfigError(
            f"audit.url takes its password from ${{{name}}}, which is not set", f"set {name} in the environment or .env"
        )
    return make_url(url.replace(match[0], ":@", 1)).set(password=environ[name]).render_as_string(hide_password=False)


def session_redactor(settings: Settings, environ: Mapping[str, str]) -> Redactor:
    """The redactor of a session: the app's .env, the environment unless the profile is
    locked (then the operator's environment cannot change redaction), the profile's regexes."""
    from appshell.config.redact import Redactor

    return Redactor.from_environment(redaction_sources(settings, environ), settings.profile.audit.redact)


def redaction_sources(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables whose secret-named values the audit masks.

    The app's .env file, and the environment — except where the profile locks its audit
    settings: there the operator's environment (and an env file the operator picked with
    --env-file/APPSHELL_ENV_FILE) cannot change what is masked, so `B_KEY=order_lines` cannot
    blank out a table name in the record.
    """
    if not settings.profile.audit.locked:
        return {**settings.dotenv, **environ}
    if settings.sources.get("env_file") in OPERATOR_LAYERS:
        return {}
    return dict(settings.dotenv)
