"""Safety on every engine in the process, on real databases.

Each test is a reproduction from the issue: on the old code the write went
through (committed, or reported as "no rows were changed").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.apps import library_on
from support.audit import audit_records
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

PRODUCTION = ["--profile", "production", "--reason", "INC-1"]


def count_items(root: Path, env: dict[str, str]) -> int:
    result = run(["-c", "print(count(Item))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    return int(result.stdout)


# -- Flask-SQLAlchemy with SQLALCHEMY_BINDS: two engines ------------------------


@pytest.fixture
def binds(app_dir: Callable[[str], Path], db_url: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = app_dir("bindsapp")
    env = {"DATABASE_URL": db_url, "ANALYTICS_URL": f"sqlite:///{tmp_path / 'analytics.db'}"}
    assert run(["-c", "from bindsapp import db; db.create_all()"], cwd=root, env=env).exit_code == 0
    return root, env


def counts(root: Path, env: dict[str, str]) -> list[int]:
    result = run(["-c", "print(count(Gadget), count(Event))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    return [int(x) for x in result.stdout.split()]


def test_sandbox_covers_the_second_bind(binds: tuple[Path, dict[str, str]]) -> None:
    root, env = binds
    code = (
        "from bindsapp import db\ndb.session.add_all([Gadget(name='g'), Event(name='e')]); db.session.commit()\n"
        "print(count(Gadget), count(Event))"
    )
    result = run(["--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["1", "1"]
    assert "│ event  │        1 │" in result.stderr and "│ gadget │        1 │" in result.stderr, result.stderr
    assert "analytics.db (sqlite)" in result.stderr  # the summary names every engine it covered
    assert counts(root, env) == [0, 0]


def test_read_only_covers_a_raw_write_through_the_second_bind(binds: tuple[Path, dict[str, str]]) -> None:
    root, env = binds
    code = (
        "from bindsapp import db\nfrom sqlalchemy import text\n"
        "with db.engines['analytics'].begin() as conn:\n"
        "    conn.execute(text(\"insert into event (name) values ('x')\"))"
    )
    result = run(["--read-only", "-c", code], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    assert "readonly" in result.stderr.lower().replace("-", "").replace(" ", "") or "read only" in result.stderr.lower()
    assert counts(root, env) == [0, 0]


# -- an engine a library builds lazily from the URL ------------------------------


def _lazy_on(app_dir: Callable[[str], Path], url: str) -> tuple[Path, dict[str, str]]:
    root = app_dir("lazyapp")
    env = {"DATABASE_URL": url}
    assert (
        run(["-c", "from lazyapp.models import Base; Base.metadata.create_all(engine)"], cwd=root, env=env).exit_code
        == 0
    )
    return root, env


@pytest.fixture
def lazy(app_dir: Callable[[str], Path], db_url: str) -> tuple[Path, dict[str, str]]:
    return _lazy_on(app_dir, db_url)


def test_read_only_covers_an_engine_made_later(lazy: tuple[Path, dict[str, str]]) -> None:
    root, env = lazy
    result = run(["--read-only", "-c", "from lazyapp.tracking import track; track('x')"], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    assert count_items(root, env) == 0


def test_read_only_refuses_a_flush_of_any_orm_session(lazy: tuple[Path, dict[str, str]]) -> None:
    root, env = lazy
    code = (
        "from sqlalchemy.orm import Session\nfrom lazyapp.tracking import get_engine\n"
        "own = Session(get_engine()); own.add(Item(name='x')); own.commit()"
    )
    result = run(["--read-only", "-c", code], cwd=root, env=env)
    assert result.exit_code == 1
    assert (
        result.stderr.startswith("ReadOnlyError: this session is read-only") and len(result.stderr.splitlines()) == 1
    ), result.stderr
    assert count_items(root, env) == 0


def test_sandbox_covers_an_engine_made_later(lazy: tuple[Path, dict[str, str]]) -> None:
    root, env = lazy
    result = run(
        [
            "--sandbox",
            "-c",
            "from lazyapp.tracking import track, get_engine; track('x'); track('y'); print(get_engine() is not engine)",
        ],
        cwd=root,
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "True"  # a second engine: the library's own
    assert "no rows were changed" not in result.stderr
    assert "│ items │        2 │       0 │       0 │" in result.stderr, result.stderr
    assert count_items(root, env) == 0


def test_sql_of_every_engine_is_audited(lazy: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, env = lazy
    log = tmp_path / "audit.jsonl"
    assert (
        run(
            ["--audit-log", str(log), "-c", "from lazyapp.tracking import track; track('x')"], cwd=root, env=env
        ).exit_code
        == 0
    )
    result = next(r for r in audit_records(log) if r["event"] == "result")
    assert any("insert into items" in s for s in result["sql"]), result


def test_an_engine_made_with_autocommit_is_sandboxed(lazy: tuple[Path, dict[str, str]]) -> None:
    root, env = lazy
    code = (
        "from sqlalchemy import create_engine, text\n"
        "auto = create_engine(engine.url, isolation_level='AUTOCOMMIT')\n"
        "with auto.connect() as conn:\n    conn.execute(text(\"insert into items (name) values ('a')\"))\n"
        "    print(conn.scalar(text('select count(*) from items')))"
    )
    result = run(["--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == "1" and "│ items │        1 │" in result.stderr, result.output
    assert count_items(root, env) == 0


# -- a connection checked out while the app was imported -------------------------


@pytest.fixture
def import_query(app_dir: Callable[[str], Path], db_url: str) -> tuple[Path, dict[str, str]]:
    root = app_dir("importqueryapp")
    env = {"DATABASE_URL": db_url}
    assert run(["-c", "sql(\"insert into items (name) values ('a')\"); commit()"], cwd=root, env=env).exit_code == 0
    return root, env


def test_connection_checked_out_at_import_is_read_only(import_query: tuple[Path, dict[str, str]]) -> None:
    root, env = import_query
    code = (
        "from importqueryapp.models import warm\nfrom sqlalchemy import text\n"
        "warm.execute(text(\"update items set name = 'changed'\")); warm.commit()"
    )
    result = run([*PRODUCTION, "--write", "-y", "-c", "print(1)"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    ro = run([*PRODUCTION, "-c", code], cwd=root, env=env)
    assert ro.exit_code == 1, ro.output
    names = run(["-c", "print(sql('select name from items')[0][0])"], cwd=root, env=env)
    assert names.stdout.strip() == "a", names.output


def test_statement_timeout_reaches_a_connection_checked_out_at_import(
    import_query: tuple[Path, dict[str, str]],
) -> None:
    root, env = import_query
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text("[database]\nstatement_timeout_ms = 5000\n")
    code = (
        "from importqueryapp.models import warm\nfrom sqlalchemy import text\n"
        "print(warm.scalar(text('select count(*) from items')), count(Item))"
    )
    result = run(["-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output  # was: KeyError: 'appshell_deadline' on SQLite
    assert result.stdout.split() == ["1", "1"]


# -- Alembic ------------------------------------------------------------------------

ALEMBIC = "from alembic.config import main\nmain(['upgrade', 'head'])"
TABLES = "from sqlalchemy import inspect\nprint(sorted(inspect(engine).get_table_names()))"


def test_alembic_upgrade_under_sandbox_is_a_dry_run(app_dir: Callable[[str], Path], db_url: str) -> None:
    root = app_dir("migrateapp")
    env = {"DATABASE_URL": db_url}
    result = run(["--sandbox", "-c", ALEMBIC], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "schema changes (rolled back): CREATE TABLE alembic_version; CREATE TABLE widgets" in result.stderr, (
        result.stderr
    )
    assert "│ widgets         │        1 │" in result.stderr
    tables = run(["-c", TABLES], cwd=root, env=env)
    assert tables.stdout.strip() == "[]", tables.output  # no table created, no alembic_version moved
    real = run(["-c", ALEMBIC], cwd=root, env=env)  # and without --sandbox it migrates for real
    assert real.exit_code == 0, real.output
    assert run(["-c", TABLES], cwd=root, env=env).stdout.strip() == "['alembic_version', 'widgets']"


def test_alembic_upgrade_under_sandbox_refused_on_mariadb(app_dir: Callable[[str], Path], mariadb_url: str) -> None:
    root = app_dir("migrateapp")
    env = {"DATABASE_URL": mariadb_url}
    result = run(["--sandbox", "-c", ALEMBIC], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    assert "SandboxRefused: CREATE cannot be rolled back on mariadb" in result.stderr
    assert run(["-c", TABLES], cwd=root, env=env).stdout.strip() == "[]"


# -- raw DBAPI connections outside SQLAlchemy -------------------------------------


def test_raw_dbapi_connect_refused_in_sandbox_and_read_only(lazy: tuple[Path, dict[str, str]]) -> None:
    root, env = lazy
    url = env["DATABASE_URL"]
    if url.startswith("sqlite"):
        code = f"import sqlite3\nc = sqlite3.connect({url.removeprefix('sqlite:///')!r})"
    else:
        from sqlalchemy import make_url

        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        code = (
            "import psycopg\n"
            f"c = psycopg.connect({dsn.split('?')[0]!r}, options='-csearch_path={url.rsplit('%3D', 1)[1]}')"
        )
    code += "\nc.execute(\"insert into items (name) values ('raw')\"); c.commit()"
    for flag in ("--sandbox", "--read-only"):
        result = run([flag, "-c", code], cwd=root, env=env)
        assert result.exit_code == 1 and "outside SQLAlchemy" in result.stderr, result.output
    assert count_items(root, env) == 0


# -- Ctrl-C during a long SQLite statement ---------------------------------------------


def test_ctrl_c_interrupts_a_long_sqlite_query(app_dir: Callable[[str], Path], sqlite_url: str, tmp_path: Path) -> None:
    """SQLite only: the progress handler that lets Ctrl-C stop a statement (PostgreSQL cancels on its own)."""
    import signal
    import time

    from support.processes import started

    root, env = _lazy_on(app_dir, sqlite_url)
    log = tmp_path / "audit.jsonl"
    # go() prints once the statement runs inside SQLite: the signal then arrives mid-statement.
    code = (
        "raw = session.connection().connection.dbapi_connection\n"
        "raw.create_function('go', 0, lambda: print('go', flush=True) or 1)\n"
        "sql('with recursive c(x) as (select go() union all select x + 1 from c) select count(*) from c')"
    )
    proc = started(["--audit-log", str(log), "-c", code], root, env)
    time.sleep(0.5)  # not a timed assertion: lets go() return, so the signal lands in SQLite's own loop (endless)
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=30) == 130, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()  # the old code never came back from the statement
    assert audit_records(log)[-2]["status"] == "interrupted"


def test_idle_in_transaction_timeout_for_every_session(app_dir: Callable[[str], Path], pg_url: str) -> None:
    """A PostgreSQL setting."""
    root, env = _lazy_on(app_dir, pg_url)
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text("[database]\nidle_in_transaction_timeout_ms = 5000\n")
    code = (
        "from lazyapp.tracking import get_engine\nfrom sqlalchemy import text\n"
        "with get_engine().connect() as c:\n"
        "    print(c.scalar(text(\"select current_setting('idle_in_transaction_session_timeout')\")))"
    )
    result = run(["-c", code], cwd=root, env=env)  # no sandbox, and an engine the app made later
    assert result.stdout.strip() == "5s", result.output


# -- the sync engine under an AsyncEngine ------------------------------------------------

ASYNC_WRITE = """
import asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

async def main():
    e = create_async_engine(str(engine.url).replace("sqlite://", "sqlite+aiosqlite://"))
    async with e.begin() as conn:
        await conn.execute(text("insert into items (name) values ('async')"))
    await e.dispose()

asyncio.run(main())
"""


# aiosqlite is first imported during the session: in-process, an earlier run imported it already
@pytest.mark.subprocess
@pytest.mark.parametrize("flag", ["--sandbox", "--read-only"])
def test_async_engine_is_covered(app_dir: Callable[[str], Path], sqlite_url: str, flag: str) -> None:
    pytest.importorskip("aiosqlite")
    root = app_dir("lazyapp")
    env = {"DATABASE_URL": sqlite_url}
    assert (
        run(["-c", "from lazyapp.models import Base; Base.metadata.create_all(engine)"], cwd=root, env=env).exit_code
        == 0
    )
    result = run([flag, "-c", ASYNC_WRITE], cwd=root, env=env)
    if flag == "--sandbox":
        assert (
            result.exit_code == 0 and "│ items │        1 │" in result.stderr and "sqlite+aiosqlite" in result.stderr
        ), result.output
    else:
        assert result.exit_code == 1 and "readonly" in result.stderr.replace(" ", "").replace("-", ""), result.output
    assert count_items(root, env) == 0


def test_sessions_in_one_process_do_not_leak_into_each_other(
    app_dir: Callable[[str], Path], sqlite_url: str, invoke: Callable[..., Any]
) -> None:
    """Class-level listeners outlive a session: the next one in the process must not inherit its rules."""
    root, env = library_on(app_dir, sqlite_url)
    assert invoke(["--sandbox", "-c", "sql('delete from books where id > 0')"], cwd=root, env=env).exit_code == 0
    assert invoke(["--read-only", "-c", "print(count(Book))"], cwd=root, env=env).stdout.strip() == "2"
    path = sqlite_url.removeprefix("sqlite:///")
    plain = invoke(
        ["-c", f"import sqlite3\nprint(sqlite3.connect({path!r}).execute('select count(*) from books').fetchone()[0])"],
        cwd=root,
        env=env,
    )
    assert plain.exit_code == 0 and plain.stdout.strip() == "2", plain.output  # no sandbox now: a raw connect is fine
