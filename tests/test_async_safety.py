"""Safety and audit on async engines (issue 12, item 5), on aiosqlite and on PostgreSQL through asyncpg.

The app is tests/apps/asyncapp (an AsyncEngine and an async_sessionmaker); every write goes through
SQLAlchemy's adapter of the async driver, whose DBAPI connection is not the driver's: asyncpg's adapter
begins its transaction lazily and keeps its own note of it, aiosqlite's runs sqlite3 in a thread of its own.
"""

from __future__ import annotations

import time
from pathlib import Path

import pexpect
import pytest
from support.apps import titles
from support.audit import audit_records
from support.environment import clean_environ
from support.harness import run
from support.paths import APPSHELL

# Sessions in this process (tests/support/harness.py, docs/design.md
# §9); the few that only a real process shows say why.
pytestmark = pytest.mark.in_process

APP = ["--app", "asyncapp.db"]
PRE = "from asyncapp.db import add_book\nfrom sqlalchemy import text\n"
RAW = "raw = (await (await session.connection()).get_raw_connection()).dbapi_connection\n"  # SQLAlchemy's adapter
BEFORE = ["Dune", "Emma"]
UPDATE_ALL = "sql(\"update books set title = 'Q' where id > 0\")\n"


def is_pg(env: dict[str, str]) -> bool:
    return env["DATABASE_URL"].startswith("postgresql")


def write_profile(root: Path, text: str) -> None:
    (root / "profiles").mkdir(exist_ok=True)
    (root / "profiles" / "development.toml").write_text(text)


# -- read-only ----------------------------------------------------------------


def test_an_async_orm_write_is_refused_in_one_line_under_read_only(asyncapp: tuple[Path, dict[str, str]]) -> None:
    """The issue: "an async write committed under both read-only and sandbox"."""
    root, env = asyncapp
    result = run(
        [*APP, "--read-only", "-c", PRE + "await add_book(session, 'X'); await session.commit()"], cwd=root, env=env
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        "ReadOnlyError: this session is read-only (profile development): 1 pending change(s) not written — "
        "roll back with rollback(), or reopen appshell with --write"
    ]
    assert titles(root, env) == BEFORE


def test_async_raw_sql_cannot_write_under_read_only(asyncapp: tuple[Path, dict[str, str]]) -> None:
    root, env = asyncapp
    code = PRE + (
        "async with engine.begin() as c:\n"
        "    try:\n        await c.execute(text(\"insert into books (title) values ('Y')\"))\n"
        "    except Exception as e:\n        print(type(e).__name__, 'read-only' in str(e) or 'readonly' in str(e))\n"
        'await session.execute(text("delete from books where id = 1"))\n'
    )
    result = run([*APP, "--read-only", "-c", code], cwd=root, env=env)
    assert result.stdout.split() == ["DBAPIError" if is_pg(env) else "OperationalError", "True"], result.output
    assert result.exit_code == 1  # the database refused the DELETE too
    assert titles(root, env) == BEFORE


def test_async_read_only_cannot_be_switched_off(asyncapp: tuple[Path, dict[str, str]]) -> None:
    root, env = asyncapp
    switch = "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE" if is_pg(env) else "PRAGMA query_only = OFF"
    result = run(
        [*APP, "--read-only", "-c", f"sql('{switch}')\nrollback()\n" + UPDATE_ALL + "commit()"], cwd=root, env=env
    )
    assert result.exit_code == 1, result.output
    assert "ReadOnlyError: this session is read-only" in result.stderr and "refused" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert titles(root, env) == BEFORE


def test_aiosqlite_own_connection_cannot_switch_read_only_off(aiosqlite_app: tuple[Path, dict[str, str]]) -> None:
    """Below SQLAlchemy's adapter, aiosqlite's own connection: SQLite's authorizer, set
    in aiosqlite's thread, denies it. (asyncpg's own execute() is below appshell, as
    psycopg's is: docs/safety.md says read-only is refused there, not prevented.)"""
    root, env = aiosqlite_app
    code = RAW + "await raw.driver_connection.execute('PRAGMA query_only = OFF')\n" + UPDATE_ALL + "commit()"
    result = run([*APP, "--read-only", "-c", code], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    assert (
        "ReadOnlyError: this session is read-only (profile "
        "development): PRAGMA query_only would lift read-only — refused"
        in result.stderr
        or "not authorized" in result.stderr
    ), result.stderr
    assert titles(root, env) == BEFORE


# -- sandbox --------------------------------------------------------------------


def test_async_sandbox_dry_run_counts_and_rolls_back(asyncapp: tuple[Path, dict[str, str]]) -> None:
    root, env = asyncapp
    code = PRE + (
        "await add_book(session, 'Ulysses'); await session.commit()\n"  # committed through the AsyncSession
        "await add_book(session, 'Gone'); await session.rollback()\n"  # rolled back by the program: not a change
        "async with session.begin_nested():\n    await add_book(session, 'Nested')\n"  # a savepoint released: kept
        "nested = await session.begin_nested(); await add_book(session, 'Dropped'); await nested.rollback()\n"
        "await session.commit()\n"
        "async with engine.begin() as c:\n"
        "    await c.execute(text(\"update books set title = 'Dune (revised)' where id = 1\"))\n"
        "await session.execute(text('delete from books where id = 2')); await session.commit()\n"
        "print(sorted(b.title for b in where(Book)))\n"
    )
    result = run([*APP, "--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "['Dune (revised)', 'Nested', 'Ulysses']"  # inside: committed changes are visible
    assert "sandbox dry run — these changes were made, then rolled back" in result.stderr
    assert "│ books │        2 │       1 │       1 │" in result.stderr, result.stderr
    assert "never committed" not in result.stderr  # everything counted was committed
    assert titles(root, env) == BEFORE


def test_async_sandbox_recovers_from_a_failed_statement(asyncapp: tuple[Path, dict[str, str]]) -> None:
    """A failed statement aborts PostgreSQL's transaction: the rollback returns to the sandbox's savepoint."""
    root, env = asyncapp
    code = PRE + (
        "try:\n    await session.execute(text(\"insert into books (id, title) values (1, 'dup')\"))\n"
        "except Exception as e:\n    print(type(e).__name__)\n"
        "await session.rollback()\nawait add_book(session, 'After'); await session.commit()\nprint(count(Book))\n"
    )
    result = run([*APP, "--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["IntegrityError", "3"]
    assert "│ books │        1 │       0 │       0 │" in result.stderr, result.stderr
    assert titles(root, env) == BEFORE


def test_async_sandbox_says_nothing_false_when_nothing_changed(asyncapp: tuple[Path, dict[str, str]]) -> None:
    root, env = asyncapp
    result = run([*APP, "--sandbox", "-c", "print(count(Book))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "no rows were changed" not in result.stderr
    assert "no changes seen through the engines appshell covered" in result.stderr
    assert env["DATABASE_URL"].split("://")[0] in result.stderr  # names the async engine it covered


ESCAPES = {
    "sql COMMIT": UPDATE_ALL + "sql('COMMIT')",
    "outer ROLLBACK": "sql('ROLLBACK')\n" + UPDATE_ALL + "commit()",
    "RELEASE the sandbox savepoint": "sql('RELEASE SAVEPOINT appshell_sandbox')\n" + UPDATE_ALL + "sql('COMMIT')",
    "BEGIN": "sql('BEGIN')\n" + UPDATE_ALL + "sql('COMMIT')",
    "update; commit in one string": "sql(\"update books set title = 'Q' where id > 0; commit\")",
    "AUTOCOMMIT connection": "from sqlalchemy import text\nasync with engine.connect() as c:\n"
    "    c = await c.execution_options(isolation_level='AUTOCOMMIT')\n"
    "    await c.execute(text(\"update books set title = 'Q' where id > 0\"))",
    "adapter commit": UPDATE_ALL + RAW + "raw.commit()",
    # Given back in `finally`, as careful code does: in-process, a connection left checked out outlives the
    # session and its loop, and is collected later (SQLAlchemy's "non-checked-in connection" warning).
    "raw_connection commit": "c = await engine.raw_connection()\ntry:\n    cur = c.cursor()\n"
    "    cur.execute(\"update books set title = 'Q' where id > 0\"); c.commit()\nfinally:\n    c.close()",
}


@pytest.mark.parametrize("code", ESCAPES.values(), ids=ESCAPES.keys())
def test_async_sandbox_cannot_be_committed_through(
    asyncapp: tuple[Path, dict[str, str]], code: str, tmp_path: Path
) -> None:
    root, env = asyncapp
    log = tmp_path / "audit.jsonl"
    result = run([*APP, "--sandbox", "--audit-log", str(log), "-c", code], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    assert "SandboxRefused: " in result.stderr and "refused in the sandbox" in result.stderr, result.stderr
    assert "site-packages/sqlalchemy" not in result.stderr and "Traceback" not in result.stderr  # one line
    assert "SANDBOX BROKEN" not in result.stderr  # refused before it ran: nothing to detect
    assert titles(root, env) == BEFORE
    assert audit_records(log)[-1]["status"] == "error"


def test_aiosqlite_own_commit_is_denied_by_sqlite(aiosqlite_app: tuple[Path, dict[str, str]]) -> None:
    """aiosqlite's connection below SQLAlchemy's adapter: the authorizer, set in aiosqlite's thread, denies COMMIT."""
    root, env = aiosqlite_app
    for code in (
        UPDATE_ALL + RAW + "await raw.driver_connection.commit()",
        UPDATE_ALL + RAW + "await raw.driver_connection.execute('COMMIT')",
        RAW + "await raw.driver_connection.execute('RELEASE appshell_sandbox')\n" + UPDATE_ALL + "commit()",
    ):
        result = run([*APP, "--sandbox", "-c", code], cwd=root, env=env)
        assert result.exit_code == 1 and "not authorized" in result.stderr, result.output
        assert titles(root, env) == BEFORE


def test_asyncpg_transaction_ended_behind_appshell_stops_the_session(
    asyncpg_app: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """asyncpg's own execute('COMMIT') bypasses every hook: appshell detects it (asyncpg's transaction status)."""
    root, env = asyncpg_app
    log = tmp_path / "audit.jsonl"
    code = (
        "sql(\"update books set title = 'Q' where id = 1\")\n" + RAW + "await raw.driver_connection.execute('COMMIT')\n"
        "print('still running', count(Book))"
    )
    result = run([*APP, "--sandbox", "--audit-log", str(log), "-c", code], cwd=root, env=env)
    assert result.exit_code == 6, result.output
    assert "still running" not in result.stdout
    assert "SANDBOX BROKEN" in result.stderr and "changes may have been committed" in result.stderr
    assert "SELECT count(*)" in result.stderr  # names the statement before which it noticed
    assert audit_records(log)[-1]["event"] == "session_end" and audit_records(log)[-1]["status"] == "sandbox_broken"
    assert titles(root, env) == ["Emma", "Q"]  # what the code knows: it was committed behind its back


def test_asyncpg_savepoint_released_behind_appshell_stops_the_session(asyncpg_app: tuple[Path, dict[str, str]]) -> None:
    root, env = asyncpg_app
    code = (
        RAW
        + "await raw.driver_connection.execute('RELEASE SAVEPOINT appshell_sandbox')\n"
        + UPDATE_ALL
        + "commit()\nprint('still running')"
    )
    result = run([*APP, "--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 6, result.output
    assert "still running" not in result.stdout and "its savepoint was gone" in result.stderr
    assert titles(root, env) == BEFORE  # the outer transaction was still there


def test_an_autocommit_async_engine_is_sandboxed(asyncapp: tuple[Path, dict[str, str]]) -> None:
    """An engine made with isolation_level='AUTOCOMMIT': asyncpg's adapter would begin no transaction at all."""
    root, env = asyncapp
    code = (
        "import os\nfrom sqlalchemy import text\nfrom sqlalchemy.ext.asyncio import create_async_engine\n"
        "auto = create_async_engine(os.environ['DATABASE_URL'], isolation_level='AUTOCOMMIT')\n"
        "async with auto.connect() as c:\n    await c.execute(text(\"update books set title = 'Q' where id = 1\"))\n"
        "print(count(Book, title='Q'))\n"
        "await auto.dispose()\n"
    )
    result = run([*APP, "--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "│ books │        0 │       1 │       0 │" in result.stderr, result.stderr
    assert "never committed" not in result.stderr  # each statement of an AUTOCOMMIT engine counts as committed
    assert titles(root, env) == BEFORE


def test_a_raw_async_driver_connect_is_refused(asyncapp: tuple[Path, dict[str, str]]) -> None:
    root, env = asyncapp
    if is_pg(env):
        from sqlalchemy import make_url

        url = make_url(env["DATABASE_URL"])
        code = (
            "import asyncpg\n"
            f"c = await asyncpg.connect(user={url.username!r}, host={url.host!r}, database={url.database!r})"
        )
    else:
        code = f"import aiosqlite\nc = await aiosqlite.connect({env['DATABASE_URL'].split(':///', 1)[1]!r})"
    result = run([*APP, "--sandbox", "-c", code], cwd=root, env=env)
    assert (
        result.exit_code == 1 and "RawConnectionRefused" in result.stderr and "outside SQLAlchemy" in result.stderr
    ), result.output


# The drivers' other ways to a connection (hostile review finding 7): each writes, refused before it connects.
# {dsn}: asyncpg's own DSN; {path}: the SQLite file. The driver's own frames are walked past to who asked.
DRIVER_CONNECTS = {
    "asyncpg pool": (
        "asyncpg",
        "import asyncpg\npool = await asyncpg.create_pool({dsn!r}, min_size=1, max_size=1)\n"
        "await pool.execute(\"insert into books (title) values ('raw')\")",
    ),
    "asyncpg pool filled by its tasks": (
        "asyncpg",
        "import asyncpg\npool = await asyncpg.create_pool({dsn!r}, min_size=3, max_size=3)\n"
        "await pool.execute(\"insert into books (title) values ('raw')\")",
    ),
    "asyncpg pool connecting at acquire": (
        "asyncpg",
        "import asyncpg\npool = await asyncpg.create_pool({dsn!r}, min_size=0)\n"
        "async with pool.acquire() as c:\n"
        "    await c.execute(\"insert into books (title) values ('raw')\")",
    ),
    "asyncpg.connection.connect": (
        "asyncpg",
        "import asyncpg.connection\nc = await asyncpg.connection.connect({dsn!r})\n"
        "await c.execute(\"insert into books (title) values ('raw')\")",
    ),
    "aiosqlite.core.connect": (
        "aiosqlite",
        "import aiosqlite.core\ndb = await aiosqlite.core.connect({path!r})\n"
        "await db.execute(\"insert into books (title) values ('raw')\")\nawait db.commit()",
    ),
    "aiosqlite Connection of sqlite3.connect": (
        "aiosqlite",
        "import aiosqlite.core, functools, sqlite3\n"
        "db = await aiosqlite.core.Connection(functools.partial(sqlite3.connect, {path!r}), 64)\n"
        "await db.execute(\"insert into books (title) values ('raw')\")\nawait db.commit()",
    ),
}


@pytest.mark.parametrize("mode", ["--sandbox", "--read-only"])
@pytest.mark.parametrize("how", sorted(DRIVER_CONNECTS))
def test_an_async_drivers_own_ways_to_a_connection_are_refused(
    request: pytest.FixtureRequest, how: str, mode: str
) -> None:
    from sqlalchemy import make_url

    driver, code = DRIVER_CONNECTS[how]
    root, env = request.getfixturevalue(f"{driver}_app")
    url = make_url(env["DATABASE_URL"])
    program = code.format(dsn=url.set(drivername="postgresql").render_as_string(hide_password=False), path=url.database)
    result = run([*APP, mode, "-c", program], cwd=root, env=env)
    assert (
        result.exit_code == 1 and "RawConnectionRefused" in result.stderr and "outside SQLAlchemy" in result.stderr
    ), result.output
    assert titles(root, env) == BEFORE
    assert (
        run([*APP, mode, "-c", "print(count(Book))"], cwd=root, env=env).stdout.strip() == "2"
    )  # SQLAlchemy's own connects go through


# -- timeouts, tagging, the guard, the audit ------------------------------------------


def test_async_statement_timeout(asyncapp: tuple[Path, dict[str, str]]) -> None:
    root, env = asyncapp
    write_profile(root, "[database]\nstatement_timeout_ms = 300\n")
    slow = (
        "sql('select pg_sleep(3)')"
        if is_pg(env)
        else "sql('with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c')"
    )
    # Without the timeout, pg_sleep would succeed (exit 0) and the endless CTE would never return.
    result = run([*APP, "-c", slow], cwd=root, env=env, timeout=60)
    assert result.exit_code == 1, result.output
    assert "statement timeout" in result.stderr or "interrupted" in result.stderr, result.stderr


def test_asyncpg_connections_tagged_with_audit_session(
    asyncpg_app: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, env = asyncpg_app
    write_profile(root, "[database]\nidle_in_transaction_timeout_ms = 60000\n")
    log = tmp_path / "audit.jsonl"
    code = (
        "from sqlalchemy import text\n"
        "async with engine.connect() as c:\n"
        "    print(tuple((await c.execute(text(\"select current_setting('application_name'), "
        "current_setting('idle_in_transaction_session_timeout')\"))).one()))"
    )
    result = run([*APP, "--sandbox", "--audit-log", str(log), "-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"('appshell:{audit_records(log)[0]['session']}', '1min')"


@pytest.mark.parametrize(
    "code",
    [
        "async with engine.begin() as c: await c.execute(text('delete from books'))",
        "from sqlalchemy import delete, update\nawait session.execute(delete(Book)); await session.commit()",
        "from sqlalchemy import update\nawait session.execute(update(Book).values(title='Q')); await session.commit()",
    ],
)
def test_async_destructive_refused_without_tty(asyncapp: tuple[Path, dict[str, str]], code: str) -> None:
    root, env = asyncapp
    result = run([*APP, "--profile", "staging", "-c", PRE + code], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("DestructiveStatementRefused: ")
    assert "pass --yes to allow it" in result.stderr and "Traceback" not in result.stderr
    assert titles(root, env) == BEFORE


def test_async_sql_recorded_per_statement(asyncapp: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, env = asyncapp
    log = tmp_path / "audit.jsonl"
    result = run(
        [*APP, "--sandbox", "--audit-log", str(log)],
        cwd=root,
        env=env,
        input=PRE + "await add_book(session, 'X'); await session.commit()\n"
        "async with engine.begin() as c: await c.execute(text(\"update books set title = 'Z' where id = 1\"))\n"
        "print(count(Book))\n",
    )
    assert result.exit_code == 0, result.output
    results = [r for r in audit_records(log) if r["event"] == "result"]
    assert len(results) == 1 and results[0]["status"] == "ok"
    sql = results[0]["sql"]
    assert (
        sql[0].startswith("INSERT INTO books (title) VALUES") and "update books set title = 'Z' where id = 1" in sql
    ), sql
    assert sql[-1].startswith("SELECT count(*)")
    assert not any(
        "appshell_sandbox" in s or "application_name" in s for s in sql
    )  # appshell's own SQL is not the operator's


@pytest.mark.subprocess  # Ctrl-C through a real pty: SIGINT to a real process
def test_ctrl_c_stops_an_aiosqlite_statement(aiosqlite_app: tuple[Path, dict[str, str]]) -> None:
    """The statement runs in aiosqlite's thread, where Python's SIGINT handler never runs: without appshell's
    interrupt it ran on, and the rollback at exit waited behind it for ever."""
    root, env = aiosqlite_app
    endless = "sql('with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c')"
    child = pexpect.spawn(
        APPSHELL,
        [*APP, "-c", f"print('go', flush=True); {endless}"],
        cwd=str(root),
        env={**clean_environ(env), "TERM": "dumb"},
        encoding="utf-8",
        timeout=30,
    )
    child.expect("go")
    time.sleep(0.5)
    child.sendintr()
    child.expect("KeyboardInterrupt", timeout=10)
    child.expect(pexpect.EOF, timeout=10)
    child.close()
    assert child.exitstatus == 130, child.before
