"""The audit side and doctor with async URLs (issue 12, items 6 and 7): the SQL sink, every `appshell audit`
command and `appshell doctor` work when the only URL is an async one — on aiosqlite and on PostgreSQL
through asyncpg — through the sync driver of the same database, and say in one line what to install
when that driver is missing.

In-process (tests/support/harness.py): run(), the seeds and Alembic run in this process; a driver hidden
from the session (the `without` fixture) needs a fresh interpreter."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from support.ci import IN_CI
from support.harness import run, run_module

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

SQL_AUDIT = 'description = "the SQL sink, required"\n[audit]\nsinks = ["file", "sql"]\nrequired = true\n'
ASYNC_TRACES = ("Traceback", "MissingGreenlet", "greenlet_spawn")


def seeded(root: Path, url: str) -> None:
    run_module("asyncapp.seed", root, {"DATABASE_URL": url})


@pytest.fixture
def asyncapp(app_dir: Callable[[str], Path], async_url: str) -> tuple[Path, str]:
    """tests/apps/asyncapp with its two books on an async URL, and a profile whose required audit has the SQL sink."""
    root = app_dir("asyncapp")
    seeded(root, async_url)
    (root / "profiles").mkdir()
    (root / "profiles" / "sqlaudit.toml").write_text(SQL_AUDIT)
    return root, async_url


def one_line_error(stderr: str) -> str:
    assert stderr.count("\n") == 1 and stderr.startswith("appshell: error: "), stderr
    assert not any(t in stderr for t in ASYNC_TRACES), stderr
    return stderr


def session_id(tail: str) -> str:
    ids = re.findall(r"│ ([0-9a-f]{16})(?: │|$)", tail, re.M)  # a table's cell, or an expanded record's line
    assert len(ids) == 1, tail
    return ids[0]


# -- the SQL sink and the audit commands -------------------------------------------------------------------------


def test_the_sql_sink_records_an_async_apps_session_and_every_audit_command_reads_it(
    asyncapp: tuple[Path, str],
) -> None:
    root, url = asyncapp
    env = {"DATABASE_URL": url}
    result = run(["--profile", "sqlaudit", "--app", "asyncapp.db", "-c", "print(count(Book))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "2\n", result.output

    verify = run(["audit", "verify", "--url", url], cwd=root, env=env)
    assert verify.exit_code == 0, verify.output
    assert verify.stdout.startswith("ok: appshell_audit: 4 records in 1 sessions"), verify.output
    tail = run(["audit", "tail", "--url", url], cwd=root, env=env)
    assert tail.exit_code == 0, tail.output
    session = session_id(tail.stdout)
    shown = run(["audit", "show", session[:8], "--url", url], cwd=root, env=env)
    assert shown.exit_code == 0, shown.output
    assert "print(count(Book))" in shown.stdout and session in shown.stdout, shown.output
    # the file sink holds the same session: the table witnesses it
    witness = run(
        ["audit", "verify", "--log", str(root / ".appshell" / "audit.jsonl"), "--witness", url], cwd=root, env=env
    )
    assert witness.exit_code == 0, witness.output
    assert "ok: " in witness.stdout, witness.output


@pytest.mark.parametrize("where", ["APPSHELL_AUDIT_URL", "audit.url"])
def test_an_async_audit_url_of_its_own(asyncapp: tuple[Path, str], tmp_path: Path, where: str) -> None:
    """The audit's own database named by an async URL too (here aiosqlite, for an app on either database)."""
    root, url = asyncapp
    audit_db = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    env = {"DATABASE_URL": url}
    if where == "APPSHELL_AUDIT_URL":
        env[where] = audit_db
    else:
        (root / "profiles" / "sqlaudit.toml").write_text(
            SQL_AUDIT.replace("[audit]\n", f'[audit]\nurl = "{audit_db}"\n')
        )
    for code in ("print(count(Book))", "1/0"):
        result = run(["--profile", "sqlaudit", "--app", "asyncapp.db", "-c", code], cwd=root, env=env)
        assert result.exit_code in (0, 1) and not any(t in result.stderr for t in ("MissingGreenlet", "audit")), (
            result.output
        )
    verify = run(["audit", "verify", "--url", audit_db], cwd=root)
    assert verify.exit_code == 0 and "8 records in 2 sessions" in verify.stdout, verify.output
    tail = run(["audit", "tail", "--url", audit_db], cwd=root)
    assert tail.exit_code == 0 and tail.stdout.count("sqlaudit") == 2 and "error" in tail.stdout, tail.output


def test_the_review_page_reads_and_writes_reviews_on_an_async_url(asyncapp: tuple[Path, str]) -> None:
    """`appshell audit serve --url` with an async URL: sessions listed,
    chain checked, a review appended (table appshell_review)."""
    try:
        from starlette.testclient import TestClient
    except ImportError:
        if IN_CI:
            raise  # CI installs the test extra, which has appshell[review]
        pytest.skip("the review extra is not installed: pip install -e '.[test]'")

    from appshell.cli.review_web.app import create_app
    from appshell.cli.review_web.cli import build_config, parser

    root, url = asyncapp
    assert (
        run(
            ["--profile", "sqlaudit", "--app", "asyncapp.db", "-c", "print(count(Book))"],
            cwd=root,
            env={"DATABASE_URL": url},
        ).exit_code
        == 0
    )
    token = "alice-token-0123456789"
    config = build_config(parser().parse_args(["--url", url]), {"APPSHELL_REVIEW_TOKENS": f"alice:{token}"})
    config.warm = False
    client = TestClient(create_app(config), follow_redirects=False)
    auth = {"Authorization": f"Bearer {token}"}
    page = client.get("/", headers=auth)
    assert page.status_code == 200, page.text
    ids = re.findall(r'<a href="/session/([0-9a-f]+)">', page.text)
    assert len(ids) == 1 and "intact, not authenticated" in page.text, page.text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert csrf is not None
    posted = client.post(
        f"/session/{ids[0]}/review", data={"state": "reviewed", "note": "looked at it", "csrf": csrf[1]}, headers=auth
    )
    assert posted.status_code == 303, posted.text
    shown = client.get(f"/session/{ids[0]}", headers=auth).text
    assert "looked at it" in shown and "print(count(Book))" in shown, shown


# -- doctor -----------------------------------------------------------------------------------------------------


def doctor(
    root: Path, url: str, *args: str, env: dict[str, str] | None = None, process: bool | None = None
) -> tuple[int, dict[str, tuple[str, str]], str]:
    result = run(
        ["doctor", "--profile", "sqlaudit", "--app", "asyncapp.db", "--json", *args],
        cwd=root,
        env={"DATABASE_URL": url, **(env or {})},
        process=process,
    )
    assert not any(t in result.output for t in ASYNC_TRACES), result.output
    report = json.loads(result.stdout)
    return result.exit_code, {c["check"]: (c["status"], c["detail"]) for c in report["checks"]}, result.output


def test_doctor_checks_an_async_app_on_its_async_url(asyncapp: tuple[Path, str]) -> None:
    root, url = asyncapp
    code, rows, output = doctor(root, url)
    assert rows["app"][0] == "ok", output
    assert rows["database"][0] == "ok" and "reachable" in rows["database"][1], output
    assert rows["mapped tables"] == ("ok", "all 1 exist in the database"), output
    assert rows["audit sink sql"][0] == "ok" and "appshell_audit will be created" in rows["audit sink sql"][1], output
    if not url.startswith("sqlite"):
        assert rows["audit sql rights"][1].startswith(
            "table public.appshell_audit does not exist yet: the sink would create it as postgres"
        ), output
    assert (
        run(["--profile", "sqlaudit", "--app", "asyncapp.db", "-c", "1"], cwd=root, env={"DATABASE_URL": url}).exit_code
        == 0
    )
    code, rows, output = doctor(root, url)
    assert rows["audit sink sql"][0] == "ok" and "appshell_audit exists" in rows["audit sink sql"][1], output
    # the rights check really ran, on the sink's own connection
    if url.startswith("sqlite"):
        assert rows["audit sql rights"][0] == "FAIL" and rows["audit sql rights"][1].startswith(
            "SQLite has no privileges"
        ), output
    else:
        assert rows["audit sql rights"][0] == "FAIL" and rows["audit sql rights"][1].startswith(
            "postgres is a superuser"
        ), output
    assert code == 5  # that FAIL, and only that one
    assert [c for c, (s, _) in rows.items() if s == "FAIL"] == ["audit sql rights"], output


def test_doctor_reads_read_only_from_the_async_database(asyncapp: tuple[Path, str]) -> None:
    root, url = asyncapp
    _, rows, output = doctor(root, url, "--read-only")
    expected = "PRAGMA query_only = 1" if url.startswith("sqlite") else "SHOW transaction_read_only = on"
    assert rows["read-only"] == ("ok", expected), output


def test_doctor_finds_the_missing_tables_of_an_async_app(app_dir: Callable[[str], Path], async_url: str) -> None:
    root = app_dir("asyncapp")
    (root / "profiles").mkdir()
    (root / "profiles" / "sqlaudit.toml").write_text(SQL_AUDIT)
    code, rows, output = doctor(root, async_url)
    assert code == 5
    assert rows["database"][0] == "ok", output
    assert (
        rows["mapped tables"][0] == "FAIL" and "1 of 1 missing from the database: books" in rows["mapped tables"][1]
    ), output


def test_doctor_reads_the_alembic_revision_of_an_async_app(
    asyncapp: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Alembic environment from the async template (`alembic init -t async`), at the async URL."""
    root, url = asyncapp
    monkeypatch.chdir(root)

    def alembic(*args: str) -> str:
        """`alembic ARGS` in the app's folder, in this process (Alembic's own command line, not appshell's)."""
        from alembic.config import main

        said = io.StringIO()
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            main([*args], prog="alembic")  # a failure is SystemExit: the test fails, as check=True did
        return said.getvalue()

    alembic("init", "-t", "async", "migrations")
    ini = root / "alembic.ini"
    ini.write_text(re.sub(r"(?m)^sqlalchemy\.url = .*$", lambda _: f"sqlalchemy.url = {url}", ini.read_text()))
    alembic("revision", "-m", "first")
    head = re.fullmatch(r"(\w+)_first\.py", " ".join(p.name for p in (root / "migrations" / "versions").glob("*.py")))
    assert head is not None
    _, rows, output = doctor(root, url)
    assert (
        rows["migrations"][0] == "FAIL"
        and f"the database has no Alembic revision; the head is {head[1]}" in rows["migrations"][1]
    ), output
    alembic("stamp", "head")
    _, rows, output = doctor(root, url)
    assert rows["migrations"][0] == "ok" and rows["migrations"][1].startswith(f"at head {head[1]}"), output


# -- a sync driver that is not installed ------------------------------------------------------------------------


@pytest.fixture
def without(tmp_path: Path) -> Callable[[str], dict[str, str]]:
    """An environment in which *module* cannot be imported (a package of that name that says it is missing)."""

    def env(module: str) -> dict[str, str]:
        shadow = tmp_path / f"no-{module}" / module
        shadow.mkdir(parents=True, exist_ok=True)
        (shadow / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n"
        )
        return {"PYTHONPATH": os.pathsep.join(filter(None, [str(shadow.parent), os.environ.get("PYTHONPATH")]))}

    return env


# the driver is hidden by a package on PYTHONPATH: in-process, an earlier test imported the real one
@pytest.mark.subprocess
@pytest.mark.parametrize(
    "url, module, fix",
    [
        ("postgresql+asyncpg://postgres@127.0.0.1:5432/test", "psycopg", "pip install 'appshell[postgres]'"),
        ("mysql+aiomysql://root@127.0.0.1:3306/test", "pymysql", "pip install 'appshell[mysql]'"),
    ],
)
@pytest.mark.parametrize("action", [["verify"], ["tail"], ["show", "abc"]])
def test_audit_commands_name_the_sync_driver_to_install(
    tmp_path: Path, without: Callable[[str], dict[str, str]], url: str, module: str, fix: str, action: list[str]
) -> None:
    result = run(["audit", *action, "--url", url], cwd=tmp_path, env=without(module))
    assert result.exit_code == 2, result.output
    line = one_line_error(result.stderr)
    assert f"the database driver '{module}' is not installed" in line and line.rstrip().endswith(f"— {fix}"), line


def test_a_session_and_doctor_name_the_sync_driver_for_the_sql_sink(
    app_dir: Callable[[str], Path], asyncpg_url: str, without: Callable[[str], dict[str, str]]
) -> None:
    """The app runs on asyncpg; the audit's own connection needs
    psycopg, which is missing: one line, exit 3 (required audit)."""
    root = app_dir("asyncapp")
    seeded(root, asyncpg_url)
    (root / "profiles").mkdir()
    (root / "profiles" / "sqlaudit.toml").write_text(SQL_AUDIT)
    env = {"DATABASE_URL": asyncpg_url, **without("psycopg")}
    # Real processes: psycopg is hidden by a package on PYTHONPATH; in this process it is imported already.
    result = run(
        ["--profile", "sqlaudit", "--app", "asyncapp.db", "-c", "print(count(Book))"], cwd=root, env=env, process=True
    )
    assert result.exit_code == 3, result.output
    line = one_line_error(result.stderr)
    assert "cannot open the audit sql sink: the database driver 'psycopg' is not installed" in line, line
    assert "pip install 'appshell[postgres]'; profile 'sqlaudit' requires the audit" in line, line
    assert result.stdout == ""
    code, rows, output = doctor(root, asyncpg_url, env=without("psycopg"), process=True)
    assert code == 5
    assert rows["database"][0] == "ok", output  # the app's own asyncpg connection is fine
    status, detail = rows["audit sink sql"]
    assert (
        status == "FAIL"
        and "the database driver 'psycopg' is not installed" in detail
        and "pip install 'appshell[postgres]'" in detail
    ), output


def test_an_unreachable_async_audit_url_is_one_line(tmp_path: Path) -> None:
    result = run(["audit", "tail", "--url", "postgresql+asyncpg://postgres:hunter22@127.0.0.1:1/nothing"], cwd=tmp_path)
    assert result.exit_code == 2, result.output
    line = one_line_error(result.stderr)
    assert (
        "cannot connect to the audit table's database postgresql+asyncpg://postgres:***@127.0.0.1:1/nothing" in line
    ), line
    assert "hunter22" not in line


# -- MySQL/MariaDB: an aiomysql URL through PyMySQL ------------------------------------------------------------


def test_an_aiomysql_audit_url_writes_and_verifies_through_pymysql(
    app_dir: Callable[[str], Path], tmp_path: Path, mariadb_url: str
) -> None:
    """aiomysql is not even installed: the audit's engine never needs it."""
    audit_db = mariadb_url.replace("mysql+pymysql://", "mysql+aiomysql://")
    root = app_dir("asyncapp")
    app_db = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    seeded(root, app_db)
    (root / "profiles").mkdir()
    (root / "profiles" / "sqlaudit.toml").write_text(SQL_AUDIT)
    result = run(
        ["--profile", "sqlaudit", "--app", "asyncapp.db", "-c", "print(count(Book))"],
        cwd=root,
        env={"DATABASE_URL": app_db, "APPSHELL_AUDIT_URL": audit_db},
    )
    assert result.exit_code == 0 and result.stdout == "2\n", result.output
    verify = run(["audit", "verify", "--url", audit_db], cwd=root)
    assert verify.exit_code == 0 and "4 records in 1 sessions" in verify.stdout, verify.output
