"""Profiles: named bundles of settings in ``profiles/NAME.toml`` (docs/configuration.md).

A project's ``profiles/NAME.toml`` is merged key by key over the profile of the
same name shipped with appshell, which is merged over the built-in defaults.
"""
# Over 350 lines: the profile schema (every key, its type, its default) is one table, checked as it loads.

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import FrozenInstanceError, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast, dataclass_transform

from appshell.errors import ConfigError, did_you_mean

__all__ = [
    "Profile",
    "Section",
    "Shell",
    "Database",
    "Access",
    "Audit",
    "Release",
    "Namespace",
    "Protect",
    "load_profile",
    "build_profile",
    "profile_names",
    "shipped_profiles_dir",
    "schema",
]

COLORS = ("none", "red", "yellow", "green", "blue", "magenta", "cyan")
SHELLS = ("auto", "ipython", "ptpython", "python")
SINKS = ("file", "sql", "syslog")


def _choice(*allowed: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in allowed), "one of " + ", ".join(f'"{a}"' for a in allowed)


def _list_of(*allowed: str) -> tuple[Callable[[Any], bool], str]:
    return (
        lambda v: isinstance(v, list) and all(x in allowed for x in v),
        "a list of " + ", ".join(f'"{a}"' for a in allowed),
    )


def _regexes(value: Any) -> bool:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        return False
    try:
        for pattern in value:
            re.compile(pattern)
    except re.error:
        return False
    return True


def _url_without_password(value: Any) -> bool:
    """A profile is a file people commit: a URL in it may name its password's variable only."""
    if not isinstance(value, str):
        return False
    if not value:
        return True
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        return False
    from appshell.config.redact import is_secret_name

    if any(is_secret_name(name) or name.lower() in ("pwd", "pass") for name in url.query):
        return False  # a password in the query string: not expanded, and it would sit in the file
    return not url.password or bool(re.fullmatch(r"\$\{\w+\}", str(url.password)))


Rule = tuple[Callable[[Any], bool], str]  # a value's check, and the allowed values in words (for the error)

_BOOL: Rule = (lambda v: isinstance(v, bool)), "true or false"
_STR: Rule = (lambda v: isinstance(v, str)), "a string"
_STRS: Rule = (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)), "a list of strings"
_MS: Rule = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0), "a whole number of milliseconds ≥ 0"
_T = TypeVar("_T")
_S = TypeVar("_S", bound="Section")


class _Key:
    __slots__ = ("default", "rule")

    def __init__(self, default: Any, rule: Rule) -> None:
        self.default, self.rule = default, rule


def _key(*, default: _T, rule: Rule) -> _T:
    """A profile key: its type is the attribute's annotation; its default and its rule are here, once."""
    return cast(_T, _Key(default, rule))


@dataclass_transform(frozen_default=True, field_specifiers=(_key,))
class Section:
    """A section of a profile (``[database]``): frozen, typed, built only from checked values.

    What ``@dataclass(frozen=True)`` would give, without its cost: it writes and compiles
    source for each class at import, ~0.8 ms a section (docs/design.md §1: start-up
    matters). mypy sees a frozen dataclass (``dataclass_transform``).
    """

    __slots__ = ()
    _keys: ClassVar[dict[str, _Key]]

    def __init_subclass__(cls) -> None:
        cls._keys = {name: vars(cls)[name] for name in cls.__dict__.get("__annotations__", {})}
        for name in cls._keys:
            delattr(cls, name)  # the instance's value, never the class's _Key, is what is read

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self._keys)
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keys {sorted(unknown)}")
        for name, key in self._keys.items():
            object.__setattr__(self, name, values.get(name, key.default))

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field '{name}'")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field '{name}'")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._keys)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Section) and type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._keys)})"


# One section per table of a profile file; a list in the file is a tuple here.


class Shell(Section):
    default: str = _key(default="auto", rule=_choice(*SHELLS))
    prompt: str = _key(default="", rule=_STR)
    color: str = _key(default="none", rule=_choice(*COLORS))
    history: bool = _key(default=True, rule=_BOOL)
    history_path: str = _key(default="", rule=_STR)


class Database(Section):
    read_only: bool = _key(default=False, rule=_BOOL)
    sandbox: bool = _key(default=False, rule=_BOOL)
    statement_timeout_ms: int = _key(default=0, rule=_MS)
    idle_in_transaction_timeout_ms: int = _key(default=15 * 60 * 1000, rule=_MS)
    read_only_url_env: str = _key(default="", rule=_STR)
    echo_sql: bool = _key(default=False, rule=_BOOL)


class Access(Section):
    require_reason: bool = _key(default=False, rule=_BOOL)
    allow_write: bool = _key(default=True, rule=_BOOL)
    confirm_destructive: bool = _key(default=False, rule=_BOOL)


class Audit(Section):
    sinks: tuple[str, ...] = _key(default=("file",), rule=_list_of(*SINKS))
    path: str = _key(default="", rule=_STR)
    required: bool = _key(default=False, rule=_BOOL)
    redact: tuple[str, ...] = _key(default=(), rule=(_regexes, "a list of valid regular expressions"))
    locked: bool = _key(default=False, rule=_BOOL)
    url: str = _key(
        default="",
        rule=(
            _url_without_password,
            'a database URL whose password, if any, is written "${NAME}" (read from the variable NAME)',
        ),
    )
    syslog_address: str = _key(default="", rule=_STR)
    # What the operator saw at a terminal, kept by the recorder (sudo's log_output): opt-in, capped per session.
    record_output: bool = _key(default=False, rule=_BOOL)
    output_cap: int = _key(
        default=1 << 20,
        rule=((lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0), "a number of bytes above 0"),
    )


class Release(Section):
    expected_file: str = _key(default="", rule=_STR)
    expected_url: str = _key(default="", rule=_STR)
    on_mismatch: str = _key(default="warn", rule=_choice("warn", "error"))


class Namespace(Section):
    imports: tuple[str, ...] = _key(default=(), rule=_STRS)
    vocabulary: bool = _key(default=True, rule=_BOOL)
    helpers: tuple[str, ...] = _key(
        default=(),
        rule=(
            lambda v: isinstance(v, list) and all(isinstance(x, str) and ":" in x for x in v),
            'a list of "module:attribute" strings',
        ),
    )


def _column_patterns(value: Any) -> bool:
    """Glob patterns on "table.column" (a schema may stand before the table: "billing.invoices.iban")."""
    return isinstance(value, list) and all(
        isinstance(x, str) and "." in x.strip(".") and not x.startswith(".") and not x.endswith(".") and " " not in x
        for x in value
    )


_COLUMNS: Rule = (
    _column_patterns,
    'a list of "table.column" glob patterns, such as ["customers.email", "*.password_hash"]',
)


def _host_patterns(value: Any) -> bool:
    """Glob patterns on "host[:port]", or URLs ("https://api.stripe.com"):
    their host and port are what a socket sees."""
    if not isinstance(value, list):
        return False
    for entry in value:
        if not isinstance(entry, str) or not entry.strip() or any(c.isspace() for c in entry):
            return False
        rest = entry.split("://", 1)[1] if "://" in entry else entry
        if not rest or rest[0] in "/:" or "@" in rest:
            return False
    return True


_HOSTS: Rule = (
    _host_patterns,
    'a list of hosts: glob patterns on "host[:port]" or URLs, such as ["search.internal:9200", "api.stripe.com"]',
)


class Protect(Section):
    """Protected data (docs/usage.md "Protected data"): masked in every output until unlock(reason)."""

    enabled: bool = _key(default=False, rule=_BOOL)
    columns: tuple[str, ...] = _key(default=(), rule=_COLUMNS)
    default_names: bool = _key(default=True, rule=_BOOL)
    exclude: tuple[str, ...] = _key(default=(), rule=_COLUMNS)
    column_grants: bool = _key(
        default=False, rule=_BOOL
    )  # the session's role has no SELECT on them: ORM queries leave them out
    unlock_url_env: str = _key(
        default="", rule=_STR
    )  # the variable holding the URL of a role that can read them: unlock() logs in as it
    hosts: tuple[str, ...] = _key(default=(), rule=_HOSTS)  # sockets to them are refused until unlock(reason)


def _section(cls: type[_S]) -> _S:
    return field(default=cls(), metadata={"section": cls})


@dataclass(frozen=True)
class Profile:
    """A resolved profile: ``profile.database.statement_timeout_ms``; each section's defaults fill what no file sets."""

    name: str
    description: str = field(default="", metadata={"rule": _STR})
    shell: Shell = _section(Shell)
    database: Database = _section(Database)
    access: Access = _section(Access)
    audit: Audit = _section(Audit)
    release: Release = _section(Release)
    namespace: Namespace = _section(Namespace)
    protect: Protect = _section(Protect)
    sources: tuple[Path, ...] = ()  # the files merged, shipped first
    explicit: frozenset[str] = frozenset()  # the keys ("audit.path") a file sets

    def __str__(self) -> str:
        return self.name  # "profile {settings.profile}" in a message names it

    def value(self, key: str) -> Any:
        """The value of a dotted key ("database.sandbox"), for the option table's generic layer."""
        section, _, name = key.rpartition(".")
        return getattr(getattr(self, section), name) if section else getattr(self, name)

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every key, dotted, with its value, in schema order."""
        for key in schema():
            yield key, self.value(key)


@functools.cache
def schema() -> dict[str, Rule]:
    """Every key a profile may set ("shell.color"), with its rule: read off Profile and its sections."""
    keys: dict[str, Rule] = {}
    for f in fields(Profile):
        if "rule" in f.metadata:
            keys[f.name] = f.metadata["rule"]
        elif "section" in f.metadata:
            keys.update((f"{f.name}.{name}", key.rule) for name, key in f.metadata["section"]._keys.items())
    return keys


def shipped_profiles_dir() -> Path:
    """Where the profiles shipped with appshell live."""
    inside = Path(__file__).parents[1] / "profiles"  # appshell/profiles
    if inside.is_dir():  # an installed wheel carries them inside the package
        return inside
    # A source checkout or editable install: the repository's top-level profiles/.
    return Path(__file__).resolve().parents[3] / "profiles"


def _search_dirs(project_root: Path | None) -> list[Path]:
    dirs = [shipped_profiles_dir()]
    if project_root is not None:
        project = project_root / "profiles"
        if project.resolve() != dirs[0].resolve():
            dirs.append(project)
    return dirs


def profile_names(project_root: Path | None) -> list[str]:
    names = {p.stem for d in _search_dirs(project_root) if d.is_dir() for p in d.glob("*.toml")}
    return sorted(names)


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, dotted + ".")
        else:
            yield dotted, value


def _read(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})", "fix the file's syntax") from None
    flat: dict[str, Any] = {}
    keys = schema()
    for key, value in _flatten(data):
        if key not in keys:
            raise ConfigError(
                f"{path}: unknown key '{key}'{did_you_mean(key, keys)}",
                "use one of: " + ", ".join(sorted(keys)),
            )
        check, allowed = keys[key]
        if not check(value):
            from appshell.config.redact import mask_url

            raise ConfigError(f"{path}: bad value {mask_url(repr(value))} for '{key}'", f"use {allowed}")
        flat[key] = value
    return flat


def load_profile(name: str, project_root: Path | None) -> Profile:
    files = [d / f"{name}.toml" for d in _search_dirs(project_root)]
    found = tuple(f for f in files if f.is_file())
    if not found:
        raise ConfigError(
            f"unknown profile '{name}'{did_you_mean(name, profile_names(project_root))}",
            "use --profile/APPSHELL_PROFILE with one of: "
            + ", ".join(profile_names(project_root))
            + f", or create profiles/{name}.toml",
        )
    values: dict[str, Any] = {}
    for path in found:
        values.update(_read(path))
    return build_profile(name, values, found)


def build_profile(name: str, values: Mapping[str, Any], sources: tuple[Path, ...] = ()) -> Profile:
    """The profile *values* (checked dotted keys, as read from files) set; defaults for the rest."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, _, attr = key.rpartition(".")
        if isinstance(value, list):
            value = tuple(value)  # a frozen profile holds no list to append to
        (sections.setdefault(section, {}) if section else top)[attr] = value
    built = {
        f.name: f.metadata["section"](**sections.get(f.name, {})) for f in fields(Profile) if "section" in f.metadata
    }
    return Profile(name, **top, **built, sources=sources, explicit=frozenset(values))
