"""Read-only that holds (issue 11 item 3): one statement must not switch it off; a read-only role cannot write."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.apps import library_on
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

UPDATE = "sql('update books set year = 0 where id > 0'); commit()"
YEARS = "print(count(Book, year=0))"

PG_SWITCHES = {
    "SET transaction_read_only": "sql('SET transaction_read_only = off')",
    "SESSION CHARACTERISTICS": "sql('SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE')",
    "BEGIN READ WRITE": "sql('BEGIN READ WRITE')",
    "set_config": "sql(\"select set_config('default_transaction_read_only', 'off', false)\")",
    "RESET ALL": "sql('RESET ALL')",
}


@pytest.mark.parametrize("switch", PG_SWITCHES.values(), ids=PG_SWITCHES.keys())
def test_postgresql_read_only_cannot_be_switched_off(app_dir: Callable[[str], Path], pg_url: str, switch: str) -> None:
    root, env = library_on(app_dir, pg_url)
    result = run(["--read-only", "-c", f"{switch}\nrollback()\n{UPDATE}"], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    assert "ReadOnlyError: this session is read-only" in result.stderr and "refused" in result.stderr, result.stderr
    assert "site-packages/sqlalchemy" not in result.stderr
    assert run(["-c", YEARS], cwd=root, env=env).stdout.strip() == "0"


@pytest.mark.parametrize(
    "switch",
    [
        "sql('PRAGMA query_only = OFF')",
        "session.connection().connection.dbapi_connection.execute('PRAGMA query_only = OFF')",
    ],
)
def test_sqlite_read_only_cannot_be_switched_off(app_dir: Callable[[str], Path], sqlite_url: str, switch: str) -> None:
    root, env = library_on(app_dir, sqlite_url)
    result = run(["--read-only", "-c", f"{switch}\n{UPDATE}"], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    assert "ReadOnlyError" in result.stderr or "not authorized" in result.stderr, result.stderr
    assert run(["-c", YEARS], cwd=root, env=env).stdout.strip() == "0"


def test_mariadb_read_only_cannot_be_switched_off(app_dir: Callable[[str], Path], mariadb_url: str) -> None:
    root, env = library_on(app_dir, mariadb_url)
    result = run(["--read-only", "-c", f"sql('SET SESSION TRANSACTION READ WRITE')\n{UPDATE}"], cwd=root, env=env)
    assert result.exit_code == 1 and "ReadOnlyError" in result.stderr, result.output
    assert run(["-c", YEARS], cwd=root, env=env).stdout.strip() == "0"


def test_orm_write_refused_in_one_line(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root, env = library_on(app_dir, sqlite_url)
    result = run(["--read-only", "-c", "session.add(Author(name='x')); commit()"], cwd=root, env=env)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "ReadOnlyError: this session is read-only (profile development): 1 pending change(s) not written — "
        "roll back with rollback(), or reopen appshell with --write"
    ]
