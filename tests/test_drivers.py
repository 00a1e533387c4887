"""Every driver the docs name (issue 20 item 4, SPEC §11): sandbox, read-only and the audit's SQL capture on each.

psycopg 3, psycopg2, pymysql and the standard library's sqlite3 through tests/apps/plainapp (a sync engine);
asyncpg, aiosqlite, aiomysql and asyncmy through tests/apps/asyncapp (an AsyncEngine). Both apps have a
``books`` table with a ``title`` and a book with id 1; the helpers (``sql``, ``commit``, ``count``) work the same
on both, so one program serves every driver. Real databases only: PostgreSQL, MariaDB, SQLite files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.apps import library_on
from support.audit import audit_records
from support.harness import run, run_module

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


@dataclass(frozen=True)
class Driver:
    name: str
    backend: str  # sqlite, postgresql, mariadb
    is_async: bool

    @property
    def args(self) -> list[str]:
        return ["--app", "asyncapp.db"] if self.is_async else []


DRIVERS = [
    Driver("psycopg", "postgresql", False),
    Driver("psycopg2", "postgresql", False),
    Driver("pymysql", "mariadb", False),
    Driver("sqlite3", "sqlite", False),
    Driver("asyncpg", "postgresql", True),
    Driver("aiosqlite", "sqlite", True),
    Driver("aiomysql", "mariadb", True),
    Driver("asyncmy", "mariadb", True),
]


@pytest.fixture(params=DRIVERS, ids=[d.name for d in DRIVERS])
def on_driver(
    request: pytest.FixtureRequest, app_dir: Callable[[str], Path], tmp_path: Path
) -> tuple[Driver, Path, dict[str, str]]:
    """(the driver, the app's folder, its environment): books with id 1 titled 'Dune', on that driver."""
    from sqlalchemy import make_url

    driver: Driver = request.param
    if driver.name in ("asyncpg", "aiosqlite"):
        root, env = request.getfixturevalue(f"{driver.name}_app")
        return driver, root, env
    if driver.backend == "mariadb":
        url = (
            make_url(request.getfixturevalue("mariadb_url"))
            .set(drivername=f"mysql+{driver.name}")
            .render_as_string(hide_password=False)
        )
    elif driver.backend == "postgresql":
        url = str(request.getfixturevalue("pg_url")).replace("postgresql+psycopg://", f"postgresql+{driver.name}://")
    else:
        url = f"sqlite:///{tmp_path / 'test.db'}"
    if driver.is_async:
        root = app_dir("asyncapp")
        run_module("asyncapp.seed", root, {"DATABASE_URL": url}, process=False)
        return driver, root, {"DATABASE_URL": url}
    root, env = library_on(app_dir, url)
    return driver, root, env


UPDATE = "sql(\"update books set title = 'X' where id = 1\")\n"


def changed(driver: Driver, root: Path, env: dict[str, str]) -> int:
    """How many books are titled 'X' now, by a fresh session that writes nothing."""
    result = run([*driver.args, "-c", "print(count(Book, title='X'))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    return int(result.stdout.strip())


def test_sandbox_rolls_back_and_counts(on_driver: tuple[Driver, Path, dict[str, str]]) -> None:
    driver, root, env = on_driver
    result = run(
        [*driver.args, "--sandbox", "-c", UPDATE + "commit()\nprint(count(Book, title='X'))"], cwd=root, env=env
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1"  # inside the sandbox, the change is there
    assert "sandbox dry run — these changes were made, then rolled back" in result.stderr, result.stderr
    assert "│ books │        0 │       1 │       0 │" in result.stderr, result.stderr
    source = {"postgresql": "pg_stat_xact_user_tables", "mariadb": "rowcount", "sqlite": "total_changes()"}[
        driver.backend
    ]
    assert source in result.stderr
    if driver.backend == "mariadb":
        assert "mariadb: 1 row(s) modified in all" in result.stderr, result.stderr  # innodb_trx's total
    assert changed(driver, root, env) == 0


def test_sandbox_refuses_commit(on_driver: tuple[Driver, Path, dict[str, str]]) -> None:
    driver, root, env = on_driver
    result = run([*driver.args, "--sandbox", "-c", UPDATE + "sql('COMMIT')"], cwd=root, env=env)
    assert result.exit_code == 1 and "refused in the sandbox" in result.stderr, result.output
    assert changed(driver, root, env) == 0


RAW = {
    False: "raw = session.connection().connection.dbapi_connection\n",
    True: "raw = (await (await session.connection()).get_raw_connection()).dbapi_connection\n",
}


def test_sandbox_dbapi_commit_is_refused_or_detected(on_driver: tuple[Driver, Path, dict[str, str]]) -> None:
    """The DBAPI connection's own commit(), below SQLAlchemy: refused where appshell can replace it, and on
    psycopg2 (a C attribute that cannot be replaced) detected: SANDBOX BROKEN, exit 6 — never "rolled back"."""
    driver, root, env = on_driver
    result = run(
        [
            *driver.args,
            "--sandbox",
            "-c",
            UPDATE + RAW[driver.is_async] + "raw.commit()\nprint('still running', count(Book))",
        ],
        cwd=root,
        env=env,
    )
    assert "still running" not in result.stdout, result.output
    assert "AttributeError" not in result.stderr, result.stderr  # psycopg2's read-only commit attribute (issue 20)
    if driver.name == "psycopg2":
        assert result.exit_code == 6, result.output
        assert "SANDBOX BROKEN" in result.stderr and "changes may have been committed" in result.stderr, result.stderr
        assert "all rolled back" not in result.stderr
        assert changed(driver, root, env) == 1  # committed behind appshell's back: it could only say so
    else:
        assert result.exit_code == 1, result.output
        assert "refused in the sandbox" in result.stderr or "not authorized" in result.stderr, result.stderr
        assert changed(driver, root, env) == 0


def test_read_only_write_refused_by_the_database(on_driver: tuple[Driver, Path, dict[str, str]]) -> None:
    driver, root, env = on_driver
    result = run([*driver.args, "--read-only", "-c", UPDATE + "commit()"], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    assert "ReadOnlyError" not in result.stderr, result.stderr  # the database refused, not appshell's parser
    text = result.stderr.lower()
    assert "read-only" in text or "readonly" in text or "read only" in text, result.stderr
    assert changed(driver, root, env) == 0


def test_audit_records_the_sql(on_driver: tuple[Driver, Path, dict[str, str]], tmp_path: Path) -> None:
    driver, root, env = on_driver
    log = tmp_path / "audit.jsonl"
    result = run([*driver.args, "--audit-log", str(log), "-c", "sql('select 42 as answer')"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    results = [r for r in audit_records(log) if r["event"] == "result"]
    assert any("select 42 as answer" in s for s in results[0]["sql"]), results
