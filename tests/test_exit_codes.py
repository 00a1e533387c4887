"""One error hierarchy, one module: every exit code distinct, and the docs table says what errors.py says."""

from __future__ import annotations

import re

from support.paths import ROOT

import appshell.errors as errors

_ROW = re.compile(r"^\| (\d+) \| `(EXIT_\w+)` \| (.+) \|$")


def _docs_table() -> list[tuple[int, str, str]]:
    """The rows of docs/usage.md's "Exit codes" table: (code, constant, meaning)."""
    text = (ROOT / "docs" / "usage.md").read_text()
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| code ")]
    parsed = [m.groups() for m in map(_ROW.match, rows)]
    assert all(parsed), rows  # every row in the form the test reads
    return [(int(code), name, meaning) for code, name, meaning in parsed]  # type: ignore[misc]


def _constants() -> dict[str, int]:
    return {name: value for name, value in vars(errors).items() if name.startswith("EXIT_") and isinstance(value, int)}


def test_every_exit_code_is_distinct_and_described() -> None:
    constants = _constants()
    assert len(set(constants.values())) == len(constants), constants  # no code means two things
    assert set(errors.EXIT_CODES) == set(constants.values())
    assert all(name in errors.__all__ for name in constants)


def test_the_docs_table_is_errors_py() -> None:
    table = _docs_table()
    assert [code for code, _, _ in table] == list(errors.EXIT_CODES)  # the same codes, in the same order
    for code, name, meaning in table:
        assert _constants()[name] == code, name
        assert meaning == errors.EXIT_CODES[code], code


def test_spec_codes_are_kept() -> None:
    """SPEC §7: 0 ok, 1 your code raised, 2 usage/config, 3 audit failure, 130 interrupted."""
    assert (errors.EXIT_OK, errors.EXIT_USER_ERROR, errors.EXIT_USAGE, errors.EXIT_AUDIT, errors.EXIT_INTERRUPTED) == (
        0,
        1,
        2,
        3,
        130,
    )


def test_each_error_carries_its_code() -> None:
    assert errors.UsageError("x", "y").exit_code == errors.EXIT_USAGE
    assert errors.ConfigError("x", "y").exit_code == errors.EXIT_USAGE
    assert errors.AuditFailure("x", "y").exit_code == errors.EXIT_AUDIT
    assert errors.SealRefused("x", "y").exit_code == errors.EXIT_AUDIT
    assert errors.SandboxBroken("x", "y").exit_code == errors.EXIT_SANDBOX_BROKEN
    assert errors.ReadOnlyLifted("x", "y").exit_code == errors.EXIT_SANDBOX_BROKEN
    assert errors.AppCrashed("x", ValueError()).exit_code == errors.EXIT_USER_ERROR


def _exceptions() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }


def test_the_docstring_tree_names_every_error() -> None:
    doc = errors.__doc__ or ""
    named = set(re.findall(r"[├└]── (\w+)", doc))
    assert named == set(_exceptions()) | {"RuntimeError"}, named ^ (set(_exceptions()) | {"RuntimeError"})
    assert all(name in errors.__all__ for name in _exceptions())


def test_the_modules_that_raise_an_error_import_it_from_errors() -> None:
    """The owning modules keep the old names: the very classes errors.py defines, not copies."""
    import importlib

    for path, name in [
        ("audit.seal", "SealRefused"),
        ("boot.crash", "AppCrashed"),
        ("console.protect_hosts", "HostRefused"),
        ("console.unlock", "UnlockRefused"),
        ("hooks.aio", "LoopMisuse"),
        ("record.journal", "SessionEnded"),
        ("record.nested", "BytecodeRefused"),
        ("safety.connection", "ReadOnlyError"),
        ("safety.guard", "DestructiveStatementRefused"),
        ("safety.raw_connect", "RawConnectionRefused"),
    ]:
        module = importlib.import_module(f"appshell.{path}")
        assert name in module.__all__ and getattr(module, name) is getattr(errors, name), (path, name)
        assert getattr(module, name).__module__ == "appshell.errors"
