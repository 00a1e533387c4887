"""Programs (-c, SCRIPT, stdin) and the CLI's parse(): argv → (Settings, Program | None, Options); in-process."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from appshell.cli.main import parse
from appshell.errors import EXIT_USAGE, AppshellError, UsageError
from appshell.runtime.program import Program


def test_from_command_and_from_stdin() -> None:
    assert Program.from_command("print(1)", ["a", "b"]) == Program("print(1)", "<string>", "command", ["-c", "a", "b"])
    assert Program.from_stdin(["x"], io.StringIO("print(2)\n")) == Program("print(2)\n", "<stdin>", "stdin", ["-", "x"])


# (bytes on disk, the source that runs): newlines as read_text() gives them
SCRIPTS = [
    (b"print(1)\n", "print(1)\n"),
    (b"a = 1\r\nprint(a)\r\n", "a = 1\nprint(a)\n"),
    (b"a = 1\rprint(a)\r", "a = 1\nprint(a)\n"),
    ("s = 'd\u00e9j\u00e0'\n".encode(), "s = 'd\u00e9j\u00e0'\n"),
]


@pytest.mark.parametrize(("data", "source"), SCRIPTS)
def test_from_script_hashes_the_bytes_that_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, source: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("fix.py").write_bytes(data)
    program = Program.from_script("fix.py", ["--dry"])
    assert (program.source, program.filename, program.mode, program.argv) == (
        source,
        "fix.py",
        "script",
        ["fix.py", "--dry"],
    )
    assert program.audit == {"path": str(tmp_path / "fix.py"), "sha256": hashlib.sha256(data).hexdigest()}


# (what is there, the error)
BAD_SCRIPTS = [
    ("nothing", "appshell: error: cannot open script 'fix.py' (no such file) — check the path"),
    ("folder", "appshell: error: 'fix.py' is a directory, not a script — name the .py file to run"),
]


@pytest.mark.parametrize(("there", "message"), BAD_SCRIPTS)
def test_from_script_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, there: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if there == "folder":
        Path("fix.py").mkdir()
    with pytest.raises(UsageError) as info:
        Program.from_script("fix.py")
    assert info.value.format() == message and info.value.exit_code == EXIT_USAGE


# (argv, mode of the program or None for a shell, its argv, json, quiet, assume_yes)
PARSE_ROWS: list[tuple[list[str], str | None, list[str] | None, bool, bool, bool]] = [
    (["-q"], None, None, False, True, False),
    (["-c", "1", "a"], "command", ["-c", "a"], False, False, False),
    (["--json", "-y", "-c1"], "command", ["-c"], True, False, True),
    (["fix.py", "-q", "--json"], "script", ["fix.py", "-q", "--json"], False, False, False),  # after SCRIPT: its ARGS
    (["--shell", "python", "fix.py"], "script", ["fix.py"], False, False, False),
    (["-", "x"], "stdin", ["-", "x"], False, False, False),
    (["--", "fix.py"], "script", ["fix.py"], False, False, False),
]


@pytest.mark.parametrize(("argv", "mode", "program_argv", "json", "quiet", "assume_yes"), PARSE_ROWS)
def test_parse(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    mode: str | None,
    program_argv: list[str] | None,
    json: bool,
    quiet: bool,
    assume_yes: bool,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()
    Path("fix.py").write_text("print(1)\n")
    monkeypatch.setattr("sys.stdin", _Terminal("print(3)\n"))
    settings, program, options = parse(argv)
    assert settings.profile.name == "development" and settings.project_root == tmp_path
    assert (program.mode if program else None, program.argv if program else None) == (mode, program_argv)
    assert (options.json, options.quiet, options.assume_yes, options.argv) == (json, quiet, assume_yes, argv)


# (argv, profile file, the error): the checks parse() makes, in the order it makes them
PARSE_ERRORS = [
    (["--json"], "", 'appshell: error: --json needs -c CODE, a SCRIPT or stdin — use appshell --json -c "EXPR"'),
    (["--database-url", "", "-c", "1"], "", "appshell: error: --database-url is empty"),
    (
        ["--write", "missing.py"],
        "[access]\nallow_write = false\n",
        "appshell: error: profile 'development' does not allow --write",
    ),
    (
        ["--reason", " ", "--write", "-c1"],
        "[access]\nallow_write = false\n",
        "appshell: error: the reason for this session is blank",
    ),
    (["missing.py"], "", "appshell: error: cannot open script 'missing.py' (no such file)"),
    (
        ["-q", "doctor"],
        "",
        "appshell: error: 'doctor' is a command, not a session — run appshell doctor, or a script so named as ./doctor",
    ),
    (
        ["--log", "x", "-c", "1"],
        "",
        "appshell: error: --log means nothing to a session (the shell, -c, SCRIPT) — use it with appshell audit",
    ),
]


@pytest.mark.parametrize(("argv", "profile", "message"), PARSE_ERRORS)
def test_parse_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], profile: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "development.toml").write_text(profile)
    monkeypatch.setattr("sys.stdin", _Terminal(""))
    with pytest.raises(AppshellError) as info:
        parse(argv)
    assert info.value.format().startswith(message) and info.value.exit_code == EXIT_USAGE


class _Terminal(io.StringIO):
    """stdin that says it is a terminal: without -c or SCRIPT, parse() then leaves the program to the shell."""

    def isatty(self) -> bool:
        return True
