"""Usage and config errors: one line, `appshell: error: WHAT — HOW TO FIX`, exit 2.

Errors found before the app is imported run in-process (`invoke`); the rest in a real subprocess.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.harness import Result, run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


def one_line_error(result, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("appshell: error: ") and " — " in lines[0]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_missing_database_url(app_dir: Callable[[str], Path]) -> None:
    one_line_error(
        run(["-c", "1"], cwd=app_dir("plainapp")), "no database configured", "DATABASE_URL", "--database-url"
    )


def test_unknown_models_module(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    result = run(["--models", "nosuch.models", "-c", "1"], cwd=app_dir("plainapp"), env={"DATABASE_URL": sqlite_url})
    one_line_error(result, "nosuch.models", "--models")


def test_unknown_app_attribute(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    result = run(["--app", "provider:nope", "-c", "1"], cwd=app_dir("provider"), env={"DATABASE_URL": sqlite_url})
    one_line_error(result, "has no attribute 'nope'", "--app")


def test_unknown_profile(invoke: Callable[..., Result], app_dir: Callable[[str], Path]) -> None:
    one_line_error(
        invoke(["--profile", "nope", "-c", "1"], cwd=app_dir("plainapp")),
        "unknown profile 'nope'",
        "development, production, staging",
    )


def test_bad_profile_toml(invoke: Callable[..., Result], app_dir: Callable[[str], Path]) -> None:
    root = app_dir("plainapp")
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text("[shell\n")
    one_line_error(invoke(["-c", "1"], cwd=root), "development.toml: invalid TOML", "fix the file's syntax")


def test_bad_pyproject_toml(invoke: Callable[..., Result], app_dir: Callable[[str], Path]) -> None:
    root = app_dir("plainapp")
    (root / "pyproject.toml").write_text("[tool.appshell]\nmodels = [\n")
    one_line_error(invoke(["-c", "1"], cwd=root), "pyproject.toml: invalid TOML")


def test_unknown_pyproject_key(invoke: Callable[..., Result], app_dir: Callable[[str], Path]) -> None:
    root = app_dir("plainapp")
    (root / "pyproject.toml").write_text('[tool.appshell]\nmodles = ["x"]\n')
    one_line_error(invoke(["-c", "1"], cwd=root), "unknown key 'modles'", "models")


def test_unreachable_database(app_dir: Callable[[str], Path]) -> None:
    url = "postgresql+psycopg://postgres:hunter22@127.0.0.1:1/nope"
    result = run(["-c", "1"], cwd=app_dir("plainapp"), env={"DATABASE_URL": url})
    one_line_error(result, "cannot connect", "127.0.0.1:1", "check DATABASE_URL")
    assert "hunter22" not in result.stderr


def test_bad_database_url(app_dir: Callable[[str], Path]) -> None:
    result = run(["-c", "1"], cwd=app_dir("plainapp"), env={"DATABASE_URL": "nosuchdb://x"})
    one_line_error(result, "bad database URL", "DATABASE_URL")


def test_unknown_shell(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    result = run(["--shell", "bpython"], cwd=app_dir("plainapp"), env={"DATABASE_URL": sqlite_url})
    one_line_error(result, "unknown shell 'bpython'", "auto, ipython, ptpython, python")


def test_unknown_option(invoke: Callable[..., Result], app_dir: Callable[[str], Path]) -> None:
    one_line_error(invoke(["--frobnicate", "-c", "1"], cwd=app_dir("plainapp")), "--frobnicate", "appshell --help")


def test_nothing_configured(tmp_path: Path, sqlite_url: str) -> None:
    one_line_error(
        run(["-c", "1"], cwd=tmp_path, env={"DATABASE_URL": sqlite_url}),
        "no app or models configured",
        "[tool.appshell]",
    )


def test_missing_env_file_named_explicitly(invoke: Callable[..., Result], app_dir: Callable[[str], Path]) -> None:
    one_line_error(
        invoke(["--env-file", "nope.env", "-c", "1"], cwd=app_dir("plainapp")), "nope.env not found", "--env-file"
    )


def test_bad_boolean_in_environment(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    result = run(["-c", "1"], cwd=app_dir("plainapp"), env={"DATABASE_URL": sqlite_url, "APPSHELL_SANDBOX": "maybe"})
    one_line_error(result, "APPSHELL_SANDBOX", "true/false")


def test_production_without_reason_and_tty(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    result = run(["--profile", "production", "-c", "1"], cwd=app_dir("plainapp"), env={"DATABASE_URL": sqlite_url})
    one_line_error(result, "requires a reason", "--reason", "APPSHELL_REASON")


def test_help_works_where_the_app_cannot_boot(invoke: Callable[..., Result], app_dir: Callable[[str], Path]) -> None:
    result = invoke(["--help"], cwd=app_dir("broken"))
    assert result.exit_code == 0
    assert "flag > env > .env > profile > pyproject > default" in result.stdout


@pytest.mark.parametrize("module", ["broken.crashes"])
def test_crash_inside_app_shows_its_traceback(app_dir: Callable[[str], Path], sqlite_url: str, module: str) -> None:
    result = run(["--models", module, "-c", "1"], cwd=app_dir("broken"), env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "crashes.py" in result.stderr and "_load_settings" in result.stderr
    assert "RuntimeError: the app's own config is broken" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("appshell: error: importing 'broken.crashes' failed")


def test_missing_import_inside_app_is_a_crash_not_not_found(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    result = run(["--models", "broken.missing_dep", "-c", "1"], cwd=app_dir("broken"), env={"DATABASE_URL": sqlite_url})
    assert result.exit_code == 1
    assert "ModuleNotFoundError: No module named 'a_dependency_that_is_not_installed'" in result.stderr
    assert "missing_dep.py" in result.stderr


class _Wrapped(Exception):
    """SQLAlchemy's DBAPIError shape: the driver's exception in .orig."""

    def __init__(self, orig: BaseException | None) -> None:
        super().__init__("(wrapper) long SQLAlchemy text")
        self.orig = orig


@pytest.mark.parametrize(
    "exc, reason",
    [
        (_Wrapped(OSError("connection refused\nDETAIL: more")), "connection refused"),  # the driver's first line
        (
            ConnectionRefusedError("[Errno 111] Connect call failed"),
            "[Errno 111] Connect call failed",
        ),  # asyncpg: not wrapped
        (_Wrapped(TimeoutError()), "TimeoutError"),  # no message: its type
        (_Wrapped(None), "(wrapper) long SQLAlchemy text"),  # nothing underneath: the wrapper's own
    ],
)
def test_connect_reason(exc: BaseException, reason: str) -> None:
    from appshell.errors import connect_reason

    assert connect_reason(exc) == reason
