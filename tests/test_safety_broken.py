"""After SANDBOX BROKEN: the end of the session is one error, not a traceback (real processes: the pool's
reset at exit is where the second error came from), on psycopg and on asyncpg."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from support.apps import library_on
from support.audit import audit_records
from support.environment import clean_environ
from support.paths import APPSHELL

SYNC_BREAK = ("raw = session.connection().connection.dbapi_connection\n"
              "raw.execute('COMMIT')\n"
              "sql('select 1')\n")
ASYNC_BREAK = ("from sqlalchemy import text\n"
               "raw = (await (await session.connection()).get_raw_connection()).driver_connection\n"
               "await raw.execute('commit')\n"
               "await session.execute(text('select 2'))\n")


def _broken_session(root: Path, env: dict[str, str], args: list[str], program: str, log: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([APPSHELL, *args, "--sandbox", "--audit-log", str(log), "-c", program], cwd=root, env=clean_environ(env),
                          capture_output=True, text=True, timeout=60)


def _assert_quiet(result: subprocess.CompletedProcess[str], log: Path) -> None:
    assert result.returncode == 6, result.stderr
    assert "SANDBOX BROKEN" in result.stderr, result.stderr
    # Today's tracebacks came from the pool's reset ("Exception during reset or similar") and the rollback at exit.
    assert "Traceback" not in result.stderr and "Exception during reset" not in result.stderr, result.stderr
    assert all(line.startswith("appshell:") for line in result.stderr.splitlines() if line.strip()), result.stderr
    assert audit_records(log)[-1]["status"] == "sandbox_broken"


def test_teardown_after_a_broken_sandbox_is_one_error_psycopg(app_dir: Callable[[str], Path], pg_url: str, tmp_path: Path) -> None:
    root, env = library_on(app_dir, pg_url)
    log = tmp_path / "audit.jsonl"
    _assert_quiet(_broken_session(root, env, [], SYNC_BREAK, log), log)


def test_teardown_after_a_broken_sandbox_is_one_error_asyncpg(asyncpg_app: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, env = asyncpg_app
    log = tmp_path / "audit.jsonl"
    _assert_quiet(_broken_session(root, env, ["--app", "asyncapp.db"], ASYNC_BREAK, log), log)
