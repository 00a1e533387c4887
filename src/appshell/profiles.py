"""Profiles: named bundles of settings in ``profiles/NAME.toml`` (docs/configuration.md).

A project's ``profiles/NAME.toml`` is merged key by key over the profile of the
same name shipped with appshell, which is merged over the built-in defaults.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appshell.errors import ConfigError, did_you_mean

__all__ = ["Profile", "load_profile", "profile_names", "shipped_profiles_dir", "SCHEMA", "DEFAULTS"]

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
    from appshell.redact import is_secret_name

    if any(is_secret_name(name) or name.lower() in ("pwd", "pass") for name in url.query):
        return False  # a password in the query string: not expanded, and it would sit in the file
    return not url.password or bool(re.fullmatch(r"\$\{\w+\}", str(url.password)))


_BOOL = (lambda v: isinstance(v, bool)), "true or false"
_STR = (lambda v: isinstance(v, str)), "a string"
_STRS = (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)), "a list of strings"
_MS = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0), "a whole number of milliseconds ≥ 0"

# Every key a profile may set, with its check and a description of allowed values.
SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "description": _STR,
    "shell.default": _choice(*SHELLS),
    "shell.prompt": _STR,
    "shell.color": _choice(*COLORS),
    "shell.history": _BOOL,
    "shell.history_path": _STR,
    "database.read_only": _BOOL,
    "database.sandbox": _BOOL,
    "database.statement_timeout_ms": _MS,
    "database.idle_in_transaction_timeout_ms": _MS,
    "database.read_only_url_env": _STR,
    "database.echo_sql": _BOOL,
    "access.require_reason": _BOOL,
    "access.allow_write": _BOOL,
    "access.confirm_destructive": _BOOL,
    "audit.sinks": _list_of(*SINKS),
    "audit.path": _STR,
    "audit.required": _BOOL,
    "audit.redact": (_regexes, "a list of valid regular expressions"),
    "audit.locked": _BOOL,
    "audit.url": (_url_without_password, 'a database URL whose password, if any, is written "${NAME}" (read from the variable NAME)'),
    "audit.syslog_address": _STR,
    "release.expected_file": _STR,
    "release.expected_url": _STR,
    "release.on_mismatch": _choice("warn", "error"),
    "namespace.imports": _STRS,
    "namespace.vocabulary": _BOOL,
    "namespace.helpers": (
        lambda v: isinstance(v, list) and all(isinstance(x, str) and ":" in x for x in v),
        'a list of "module:attribute" strings',
    ),
}

DEFAULTS: dict[str, Any] = {
    "description": "",
    "shell.default": "auto",
    "shell.prompt": "",
    "shell.color": "none",
    "shell.history": True,
    "shell.history_path": "",
    "database.read_only": False,
    "database.sandbox": False,
    "database.statement_timeout_ms": 0,
    "database.idle_in_transaction_timeout_ms": 15 * 60 * 1000,
    "database.read_only_url_env": "",
    "database.echo_sql": False,
    "access.require_reason": False,
    "access.allow_write": True,
    "access.confirm_destructive": False,
    "audit.sinks": ["file"],
    "audit.path": "",
    "audit.required": False,
    "audit.redact": [],
    "audit.locked": False,
    "audit.url": "",
    "audit.syslog_address": "",
    "release.expected_file": "",
    "release.expected_url": "",
    "release.on_mismatch": "warn",
    "namespace.imports": [],
    "namespace.vocabulary": True,
    "namespace.helpers": [],
}


@dataclass(frozen=True)
class Profile:
    name: str
    values: dict[str, Any]
    sources: tuple[Path, ...] = field(default=())
    explicit: frozenset[str] = field(default=frozenset())  # keys a file sets

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def shipped_profiles_dir() -> Path:
    """Where the profiles shipped with appshell live."""
    inside = Path(__file__).with_name("profiles")
    if inside.is_dir():  # an installed wheel carries them inside the package
        return inside
    # A source checkout or editable install: the repository's top-level profiles/.
    return Path(__file__).resolve().parents[2] / "profiles"


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
    for key, value in _flatten(data):
        if key not in SCHEMA:
            raise ConfigError(
                f"{path}: unknown key '{key}'{did_you_mean(key, SCHEMA)}",
                "use one of: " + ", ".join(sorted(SCHEMA)),
            )
        check, allowed = SCHEMA[key]
        if not check(value):
            from appshell.redact import mask_url

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
    values = dict(DEFAULTS)
    explicit: set[str] = set()
    for path in found:
        data = _read(path)
        values.update(data)
        explicit.update(data)
    return Profile(name, values, found, frozenset(explicit))
