"""Typed profiles: building, defaults, merging and the errors for bad files; table-driven, in-process."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import pytest

from appshell.config.profiles import (
    Access,
    Audit,
    Database,
    Namespace,
    Profile,
    Release,
    Shell,
    build_profile,
    load_profile,
    schema,
)
from appshell.config.settings import OPTIONS
from appshell.errors import ConfigError

ALL_KEYS = (
    "access.allow_write, access.confirm_destructive, access.require_reason, audit.locked, audit.output_cap, "
    "audit.path, audit.record_output, audit.redact, audit.required, audit.sinks, audit.syslog_address, audit.url, "
    "database.echo_sql, database.idle_in_transaction_timeout_ms, database.read_only, database.read_only_url_env, "
    "database.sandbox, database.statement_timeout_ms, description, namespace.helpers, namespace.imports, "
    "namespace.vocabulary, protect.column_grants, protect.columns, protect.default_names, protect.enabled, "
    "protect.exclude, protect.hosts, protect.unlock_url_env, release.expected_file, release.expected_url, "
    "release.on_mismatch, shell.color, shell.default, shell.history, shell.history_path, shell.prompt"
)


def project(tmp_path: Path, **files: str) -> Path:
    (tmp_path / "profiles").mkdir()
    for name, text in files.items():
        (tmp_path / "profiles" / f"{name}.toml").write_text(text)
    return tmp_path


def error_of(tmp_path: Path, text: str) -> str:
    root = project(tmp_path, custom=text)
    with pytest.raises(ConfigError) as info:
        load_profile("custom", root)
    return info.value.format().replace(str(root / "profiles" / "custom.toml"), "FILE")


# (file text, the error exactly as the operator reads it)
BAD_FILES = [
    (
        '[shell]\ncolour = "red"\n',
        f"appshell: error: FILE: unknown key 'shell.colour' (did you mean 'shell.color'?) — use one of: {ALL_KEYS}",
    ),
    (
        'descripton = "x"\n',
        f"appshell: error: FILE: unknown key 'descripton' (did you mean 'description'?) — use one of: {ALL_KEYS}",
    ),
    ("[bogus]\nx = 1\n", f"appshell: error: FILE: unknown key 'bogus.x' — use one of: {ALL_KEYS}"),
    (
        'shell = "ipython"\n',
        f"appshell: error: FILE: unknown key 'shell' (did you mean 'shell.color'?) — use one of: {ALL_KEYS}",
    ),
    (
        '[shell]\ncolor = "pink"\n',
        "appshell: error: FILE: bad value 'pink' for 'shell.color' — use "
        'one of "none", "red", "yellow", "green", "blue", "magenta", "cyan"',
    ),
    (
        '[shell]\ndefault = "bash"\n',
        "appshell: error: FILE: bad value 'bash' for 'shell.default' "
        '— use one of "auto", "ipython", "ptpython", "python"',
    ),
    ("[database]\nread_only = 1\n", "appshell: error: FILE: bad value 1 for 'database.read_only' — use true or false"),
    (
        "[database]\nstatement_timeout_ms = -5\n",
        "appshell: error: FILE: bad value -5 for 'database.statement_timeout_ms' "
        "— use a whole number of milliseconds ≥ 0",
    ),
    (
        "[database]\nstatement_timeout_ms = true\n",
        "appshell: error: FILE: bad value True for "
        "'database.statement_timeout_ms' — use a whole number of milliseconds ≥ 0",
    ),
    (
        '[audit]\nsinks = ["file", "kafka"]\n',
        "appshell: error: FILE: bad value ['file', 'kafka'] for "
        '\'audit.sinks\' — use a list of "file", "sql", "syslog"',
    ),
    (
        '[audit]\nsinks = "file"\n',
        'appshell: error: FILE: bad value \'file\' for \'audit.sinks\' — use a list of "file", "sql", "syslog"',
    ),
    (
        '[audit]\nredact = ["(unclosed"]\n',
        "appshell: error: FILE: bad value ['(unclosed'] for 'audit.redact' — use a list of valid regular expressions",
    ),
    (
        '[audit]\nurl = "postgresql://u:secret@h/db"\n',
        "appshell: error: FILE: bad value 'postgresql://u:***@h/db' "
        "for 'audit.url' — use a database URL whose password, "
        'if any, is written "${NAME}" (read from the variable NAME)',
    ),
    (
        '[namespace]\nhelpers = ["nocolon"]\n',
        "appshell: error: FILE: bad value ['nocolon'] for "
        "'namespace.helpers' — use a list of \"module:attribute\" strings",
    ),
    (
        "[namespace]\nimports = [1]\n",
        "appshell: error: FILE: bad value [1] for 'namespace.imports' — use a list of strings",
    ),
    (
        '[release]\non_mismatch = "panic"\n',
        "appshell: error: FILE: bad value 'panic' for 'release.on_mismatch' — use one of \"warn\", \"error\"",
    ),
    (
        "[shell\n",
        "appshell: error: FILE: invalid TOML (Expected ']' at the end of a "
        "table declaration (at line 1, column 7)) — fix the file's syntax",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_a_bad_profile_file_is_one_error_naming_file_key_and_allowed_values(
    tmp_path: Path, text: str, message: str
) -> None:
    assert error_of(tmp_path, text) == message


# (file text, section, attribute, value): what a file sets arrives typed; lists become tuples
GOOD_FILES: list[tuple[str, str, str, Any]] = [
    ('description = "mine"\n', "", "description", "mine"),
    ('[shell]\ndefault = "ptpython"\n', "shell", "default", "ptpython"),
    ("[shell]\nhistory = false\n", "shell", "history", False),
    ("[database]\nstatement_timeout_ms = 2500\n", "database", "statement_timeout_ms", 2500),
    ("[database]\nidle_in_transaction_timeout_ms = 0\n", "database", "idle_in_transaction_timeout_ms", 0),
    ('[database]\nread_only_url_env = "RO_URL"\n', "database", "read_only_url_env", "RO_URL"),
    ("[access]\nallow_write = false\n", "access", "allow_write", False),
    ('[audit]\nsinks = ["sql", "syslog"]\n', "audit", "sinks", ("sql", "syslog")),
    ("[audit]\nsinks = []\n", "audit", "sinks", ()),
    ('[audit]\nredact = ["INC-\\\\d+"]\n', "audit", "redact", ("INC-\\d+",)),
    (
        '[audit]\nurl = "postgresql://audit:${AUDIT_PW}@db/audit"\n',
        "audit",
        "url",
        "postgresql://audit:${AUDIT_PW}@db/audit",
    ),
    ('[release]\non_mismatch = "error"\n', "release", "on_mismatch", "error"),
    ('[namespace]\nimports = ["import json"]\n', "namespace", "imports", ("import json",)),
    ('[namespace]\nhelpers = ["shop.tools:refund"]\n', "namespace", "helpers", ("shop.tools:refund",)),
]


@pytest.mark.parametrize(("text", "section", "attribute", "value"), GOOD_FILES)
def test_a_file_sets_a_typed_value_and_defaults_fill_the_rest(
    tmp_path: Path, text: str, section: str, attribute: str, value: Any
) -> None:
    profile = load_profile("custom", project(tmp_path, custom=text))
    holder = getattr(profile, section) if section else profile
    assert getattr(holder, attribute) == value
    key = f"{section}.{attribute}" if section else attribute
    assert profile.value(key) == value and profile.explicit == {key}
    # every other key keeps its default
    defaults = Profile("custom")
    assert [k for k, v in profile.items() if v != defaults.value(k)] == ([] if value == defaults.value(key) else [key])


# (key, default): the built-in defaults, written once in profiles.py
DEFAULTS = [
    ("description", ""),
    ("shell.default", "auto"),
    ("shell.prompt", ""),
    ("shell.color", "none"),
    ("shell.history", True),
    ("shell.history_path", ""),
    ("database.read_only", False),
    ("database.sandbox", False),
    ("database.statement_timeout_ms", 0),
    ("database.idle_in_transaction_timeout_ms", 15 * 60 * 1000),
    ("database.read_only_url_env", ""),
    ("database.echo_sql", False),
    ("access.require_reason", False),
    ("access.allow_write", True),
    ("access.confirm_destructive", False),
    ("audit.sinks", ("file",)),
    ("audit.path", ""),
    ("audit.required", False),
    ("audit.redact", ()),
    ("audit.locked", False),
    ("audit.url", ""),
    ("audit.syslog_address", ""),
    ("audit.record_output", False),
    ("audit.output_cap", 1 << 20),
    ("release.expected_file", ""),
    ("release.expected_url", ""),
    ("release.on_mismatch", "warn"),
    ("namespace.imports", ()),
    ("namespace.vocabulary", True),
    ("namespace.helpers", ()),
    ("protect.enabled", False),
    ("protect.columns", ()),
    ("protect.default_names", True),
    ("protect.exclude", ()),
    ("protect.column_grants", False),
    ("protect.unlock_url_env", ""),
    ("protect.hosts", ()),
]


def test_defaults_and_the_key_list() -> None:
    assert dict(Profile("x").items()) == dict(DEFAULTS)
    assert ", ".join(sorted(schema())) == ALL_KEYS
    assert Profile("x").database == Database() and Profile("x").audit == Audit()


def test_a_project_file_merges_key_by_key_over_the_shipped_one(tmp_path: Path) -> None:
    root = project(tmp_path, production='[shell]\nprompt = "shop-prod"\n[audit]\nsinks = ["file", "sql"]\n')
    profile = load_profile("production", root)
    shipped = load_profile("production", None)
    assert profile.shell == Shell(prompt="shop-prod", color="red")
    assert profile.audit == Audit(sinks=("file", "sql"), required=True, locked=True)
    assert profile.database == shipped.database and profile.access == shipped.access
    assert profile.sources == (*shipped.sources, root / "profiles" / "production.toml")
    assert {"shell.prompt", "audit.sinks", "database.read_only", "access.require_reason"} <= profile.explicit


def test_sections_are_frozen_and_compare_by_value() -> None:
    built = build_profile("p", {"access.allow_write": False, "namespace.imports": ["import os"]})
    assert built.access == Access(allow_write=False) != Access()
    assert built.namespace == Namespace(imports=("import os",)) and hash(built.namespace) == hash(
        Namespace(imports=("import os",))
    )
    assert repr(Release()) == "Release(expected_file='', expected_url='', on_mismatch='warn')"
    with pytest.raises(FrozenInstanceError):
        built.access.allow_write = True  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        built.access = Access()  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keys"):
        Database(statement_timeout=1)  # type: ignore[call-arg]
    assert str(built) == "p"


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.profile], ids=lambda o: o.name)
def test_every_option_a_profile_sets_names_a_key_of_the_right_type(option: Any) -> None:
    default = Profile("x").value(option.profile)
    assert option.profile in schema()
    assert isinstance(default, bool) if option.kind == "bool" else isinstance(default, str)


def test_the_docs_table_lists_every_profile_key() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    table = doc.split("## Profiles", 1)[1].split("| key | values |", 1)[1].split("\n\n", 1)[0]
    # a row may name two keys: | `release.expected_file` / `release.expected_url` | ... |
    listed = {
        key.strip(" `") for row in table.splitlines() if row.startswith("| `") for key in row.split("|")[1].split("/")
    }
    assert listed == set(schema())
