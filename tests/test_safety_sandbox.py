"""No way out of the sandbox (issue 11 item 2), and its accounting (item 4), on real databases.

Every escape below committed its change on the old code (SQLite and PostgreSQL;
MariaDB where marked). Each must now leave the database as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.apps import library_on
from support.audit import audit_records
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

YEARS = "print(count(Book, year=0))"

ESCAPES = {
    "sql COMMIT": "sql('update books set year = 0 where id > 0'); sql('COMMIT')",
    "sql END": "sql('update books set year = 0 where id > 0'); sql('END')",
    "outer ROLLBACK": "sql('ROLLBACK'); sql('update books set year = 0 where id > 0'); commit()",
    "a .sql file ending in COMMIT": (
        "open('fix.sql', 'w').write('update books set year = 0 where id > 0;\\nCOMMIT;\\n')\n"
        "for part in open('fix.sql').read().split(';'):\n    part.strip() and sql(part)"
    ),
    "AUTOCOMMIT connection": "with engine.connect().execution_options(isolation_level='AUTOCOMMIT') as c:\n"
    "    c.execute(text('update books set year = 0 where id > 0'))",
    "raw_connection commit": (
        "c = engine.raw_connection(); cur = c.cursor(); "
        "cur.execute('update books set year = 0 where id > 0'); c.commit()"
    ),
    "dbapi_connection commit": "session.execute(text('update books set year = 0 where id > 0'))\n"
    "session.connection().connection.dbapi_connection.commit()",
    "RELEASE the sandbox savepoint": (
        "sql('RELEASE SAVEPOINT appshell_sandbox'); sql('update books set year = 0 where id > 0'); sql('COMMIT')"
    ),
    "update; commit in one string": "sql('update books set year = 0 where id > 0; commit')",
    "BEGIN": "sql('BEGIN'); sql('update books set year = 0 where id > 0'); sql('COMMIT')",
}


@pytest.mark.parametrize("code", ESCAPES.values(), ids=ESCAPES.keys())
def test_sandbox_cannot_be_committed_through(library: tuple[Path, dict[str, str]], code: str, tmp_path: Path) -> None:
    root, env = library
    log = tmp_path / "audit.jsonl"
    result = run(["--sandbox", "--audit-log", str(log), "-c", code], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    # sqlite3's own commit() is refused by the database (appshell's authorizer), in sqlite3's words.
    assert "refused in the sandbox" in result.stderr or "sqlite3.DatabaseError: not authorized" in result.stderr, (
        result.stderr
    )
    assert "site-packages/sqlalchemy" not in result.stderr  # one line, not SQLAlchemy's frames
    assert "SANDBOX BROKEN" not in result.stderr  # refused before it ran: nothing to detect
    assert run(["-c", YEARS], cwd=root, env=env).stdout.strip() == "0"
    assert audit_records(log)[-1]["status"] == "error"


def test_a_transaction_ended_behind_appshell_stops_the_session(
    app_dir: Callable[[str], Path], pg_url: str, tmp_path: Path
) -> None:
    """psycopg's own execute('COMMIT') bypasses every hook: appshell cannot prevent it, it detects it."""
    root, env = library_on(app_dir, pg_url)
    log = tmp_path / "audit.jsonl"
    code = (
        "raw = session.connection().connection.dbapi_connection\n"
        "raw.execute('update books set year = 0 where id = 1'); raw.execute('COMMIT')\n"
        "print('still running', count(Book))"
    )
    result = run(["--sandbox", "--audit-log", str(log), "-c", code], cwd=root, env=env)
    assert result.exit_code == 6, result.output
    assert "still running" not in result.stdout
    assert "SANDBOX BROKEN" in result.stderr and "changes may have been committed" in result.stderr
    assert "select count(*)" in result.stderr.lower() or "SELECT count(*)" in result.stderr  # names the statement
    assert audit_records(log)[-1]["event"] == "session_end" and audit_records(log)[-1]["status"] == "sandbox_broken"
    # What the code knows: the change was committed behind its back, and it says so rather than "rolled back".
    assert run(["-c", YEARS], cwd=root, env=env).stdout.strip() == "1"


def test_savepoint_released_behind_appshell_stops_the_session(
    app_dir: Callable[[str], Path], pg_url: str, tmp_path: Path
) -> None:
    root, env = library_on(app_dir, pg_url)
    log = tmp_path / "audit.jsonl"
    code = (
        "raw = session.connection().connection.dbapi_connection\n"
        "raw.execute('RELEASE SAVEPOINT appshell_sandbox')\n"
        "sql('update books set year = 0 where id = 1'); commit()\n"
        "print('still running')"
    )
    result = run(["--sandbox", "--audit-log", str(log), "-c", code], cwd=root, env=env)
    assert result.exit_code == 6, result.output
    assert "still running" not in result.stdout and "its savepoint was gone" in result.stderr
    assert audit_records(log)[-1]["status"] == "sandbox_broken"
    assert run(["-c", YEARS], cwd=root, env=env).stdout.strip() == "0"  # the outer transaction was still there


MARIADB_ESCAPES = {
    "COMMIT": "sql('COMMIT')",
    "START TRANSACTION": "sql('START TRANSACTION')",
    "SET autocommit": "sql('SET autocommit=1')",
    "LOCK TABLES": "sql('LOCK TABLES books WRITE')",
    "ANALYZE TABLE": "sql('ANALYZE TABLE books')",
    "DDL after a comment": "sql('/* fix */ create table scratch (x int)')",
    "dbapi commit": "session.connection().connection.dbapi_connection.commit()",
}


@pytest.mark.parametrize("escape", MARIADB_ESCAPES.values(), ids=MARIADB_ESCAPES.keys())
def test_mariadb_sandbox_cannot_be_committed_through(
    app_dir: Callable[[str], Path], mariadb_url: str, escape: str
) -> None:
    root, env = library_on(app_dir, mariadb_url)
    code = "sql('update books set year = 0 where id > 0')\n" + escape
    result = run(["--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 1 and "refused in the sandbox" in result.stderr, result.output
    assert run(["-c", YEARS], cwd=root, env=env).stdout.strip() == "0"
    assert (
        run(
            ["-c", "from sqlalchemy import inspect; print(inspect(engine).has_table('scratch'))"], cwd=root, env=env
        ).stdout.strip()
        == "False"
    )


# -- the dry run's accounting: net of the program's own rollbacks ---------------------


def test_summary_counts_net_changes(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    code = (
        "sql('delete from books where id > 0'); rollback()\n"  # undone by the program itself: not a change
        "session.add(Author(name='Banks')); commit()\n"
        "nested = session.begin_nested(); session.add(Author(name='Gone')); session.flush(); nested.rollback()\n"
        "sql('update books set year = 1 where id = 1'); commit()"
    )
    result = run(["--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "│ authors │        1 │       0 │       0 │" in result.stderr, result.stderr
    assert "│ books   │        0 │       1 │       0 │" in result.stderr
    assert "deleted" in result.stderr and "│       2 │" not in result.stderr


def test_summary_does_not_claim_what_it_cannot_know(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(["--sandbox", "-c", "print(count(Book))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "no rows were changed" not in result.stderr
    assert "no changes seen through the engines appshell covered" in result.stderr
    assert env["DATABASE_URL"].split("://")[0] in result.stderr  # names the engines it covered


def test_data_modifying_cte_counted(app_dir: Callable[[str], Path], pg_url: str) -> None:
    """The driver reports no count for a data-modifying CTE; PostgreSQL's own counters do (issue 21 item 2)."""
    root, env = library_on(app_dir, pg_url)
    result = run(
        [
            "--sandbox",
            "-c",
            "print(sql('with d as (delete from books where id > 0 returning *) select count(*) as n from d')[0][0])",
        ],
        cwd=root,
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "2"
    assert "│ books │        0 │       0 │       2 │ pg_stat_xact_user_tables │" in result.stderr, result.stderr


# -- a transaction ended and another begun behind appshell's back (hostile review finding 11, sync twin) -------


@pytest.mark.parametrize(
    "then",
    ["raw.execute('BEGIN')", "raw.execute('SAVEPOINT appshell_sandbox'); sql('select 1'); commit()"],
    ids=["BEGIN", "the savepoint made again"],
)
def test_commit_then_a_new_transaction_through_the_driver_is_detected(
    app_dir: Callable[[str], Path], pg_url: str, tmp_path: Path, then: str
) -> None:
    """psycopg's own COMMIT, a write, COMMIT, and a transaction open again: the driver says "in a transaction",
    but not the sandbox's — its transaction_timestamp() is not the one noted at BEGIN, savepoint or not."""
    root, env = library_on(app_dir, pg_url)
    log = tmp_path / "audit.jsonl"
    code = (
        "raw = session.connection().connection.dbapi_connection\n"
        "raw.execute('COMMIT'); raw.execute('update books set year = 0 where id = 1'); raw.execute('COMMIT')\n"
        f"{then}\n"  # psycopg opens a transaction itself before it (BEGIN: PostgreSQL only warns)
        "print('still running', count(Book))"
    )
    result = run(["--sandbox", "--audit-log", str(log), "-c", code], cwd=root, env=env)
    assert run(["-c", YEARS], cwd=root, env=env).stdout.strip() == "1"  # it was committed: appshell cannot prevent it …
    assert result.exit_code == 6, result.output  # … it says so
    assert "SANDBOX BROKEN" in result.stderr and "another transaction was open in its place" in result.stderr, (
        result.stderr
    )
    assert audit_records(log)[-1]["status"] == "sandbox_broken"
    assert "Traceback" not in result.stderr and "Exception during reset" not in result.stderr, result.stderr  # one line
