"""After SANDBOX BROKEN: the end of the session is one error, not a traceback (real processes: the pool's
reset at exit is where the second error came from), on psycopg and on asyncpg."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support.apps import library_on
from support.audit import audit_records
from support.environment import clean_environ
from support.paths import APPSHELL
from support.terminal import spawn_shell

from appshell.errors import EXIT_SANDBOX_BROKEN

SYNC_BREAK = "raw = session.connection().connection.dbapi_connection\nraw.execute('COMMIT')\nsql('select 1')\n"
ASYNC_BREAK = (
    "from sqlalchemy import text\n"
    "raw = (await (await session.connection()).get_raw_connection()).driver_connection\n"
    "await raw.execute('commit')\n"
    "await session.execute(text('select 2'))\n"
)


def _broken_session(
    root: Path, env: dict[str, str], args: list[str], program: str, log: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [APPSHELL, *args, "--sandbox", "--audit-log", str(log), "-c", program],
        cwd=root,
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _assert_quiet(result: subprocess.CompletedProcess[str], log: Path) -> None:
    assert result.returncode == EXIT_SANDBOX_BROKEN, result.stderr
    assert "SANDBOX BROKEN" in result.stderr, result.stderr
    # Today's tracebacks came from the pool's reset ("Exception during reset or similar") and the rollback at exit.
    assert "Traceback" not in result.stderr and "Exception during reset" not in result.stderr, result.stderr
    assert all(line.startswith("appshell:") for line in result.stderr.splitlines() if line.strip()), result.stderr
    assert audit_records(log)[-1]["status"] == "sandbox_broken"


def test_teardown_after_a_broken_sandbox_is_one_error_psycopg(
    app_dir: Callable[[str], Path], pg_url: str, tmp_path: Path
) -> None:
    root, env = library_on(app_dir, pg_url)
    log = tmp_path / "audit.jsonl"
    _assert_quiet(_broken_session(root, env, [], SYNC_BREAK, log), log)


def test_teardown_after_a_broken_sandbox_is_one_error_asyncpg(
    asyncpg_app: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, env = asyncpg_app
    log = tmp_path / "audit.jsonl"
    _assert_quiet(_broken_session(root, env, ["--app", "asyncapp.db"], ASYNC_BREAK, log), log)


# -- at the prompt: the three shells end a broken sandbox the same way (runtime/shells.BrokenSandbox) ------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")
PROMPT = [r">>>", r"In \["]  # coloured prompts: their text, between escape codes
BREAKS = {
    # the driver's own COMMIT ends the sandbox's transaction; the next statement finds it
    "sandbox": (
        ["--sandbox"],
        "SANDBOX BROKEN",
        "sandbox_broken",
        "raw = session.connection().connection.dbapi_connection; raw.execute('COMMIT'); sql('select 1')",
    ),
    # the driver's own SET lifts a guarded read-only session; the write after it finds it
    "read-only": (
        ["--read-only"],
        "READ-ONLY LIFTED",
        "read_only_lifted",
        "raw = session.connection().connection.dbapi_connection; "
        "raw.execute('SET default_transaction_read_only = off'); "
        "raw.commit(); sql('update books set year = 0 where id > 0'); commit()",
    ),
}


def _said(output: str, words: str) -> list[str]:
    return [line.strip() for line in _ANSI.sub("", output).split("\n") if words in line]


@pytest.mark.subprocess
@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
@pytest.mark.parametrize("kind", list(BREAKS))
def test_each_shell_ends_a_broken_sandbox_the_same_way(
    app_dir: Callable[[str], Path], pg_url: str, tmp_path: Path, shell: str, kind: str
) -> None:
    """The message the program (-c) prints, once, nothing after it, and EXIT_SANDBOX_BROKEN: in every shell."""
    import pexpect

    args, words, status, code = BREAKS[kind]
    root, env = library_on(app_dir, pg_url)
    program = subprocess.run(
        [APPSHELL, *args, "-c", code], cwd=root, env=clean_environ(env), capture_output=True, text=True, timeout=60
    )
    assert program.returncode == EXIT_SANDBOX_BROKEN, program.stderr
    expected = _said(program.stderr, words)
    assert len(expected) == 1, program.stderr

    log = tmp_path / "shell.jsonl"
    child = spawn_shell(root, "--shell", shell, *args, "-q", "--audit-log", str(log), env=env, columns=400)
    child.expect(PROMPT)
    child.sendline(code)
    child.expect(pexpect.EOF)  # the session ends at once: no prompt after the break
    child.close()
    said = str(child.before)
    assert child.exitstatus == EXIT_SANDBOX_BROKEN, said
    assert _said(said, words) == expected, said  # the same line as the program's, said once
    assert "Traceback" not in said and "Exception during reset" not in said, said
    assert audit_records(log)[-1]["status"] == status
