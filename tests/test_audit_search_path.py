"""Issue 21 item 6, as a hostile app role tries it: the SQL sink's table is found by its schema,
not by the role's search_path, so a schema named after a role cannot catch or hide the records."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.audit import audit_records
from support.databases import Scratch, pg_scratch
from support.harness import Result, run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

LOG = Path(".appshell") / "audit.jsonl"
PRODUCTION = ["--profile", "production", "--reason", "INC-21 search_path"]


# -- where the table is, from the URL alone ----------------------------------------------------


@pytest.fixture(autouse=True)
def _review_key_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The review server's key file in this test's folder, never the developer's ~/.config."""
    monkeypatch.setenv("APPSHELL_REVIEW_KEY_FILE", str(tmp_path / "reviewer" / "review.key"))


@pytest.mark.parametrize(
    ("url", "schema"),
    [
        ("postgresql+psycopg://u@h/shop", "public"),
        ("postgresql+asyncpg://u@h/shop", "public"),
        ("postgresql+psycopg://u@h/shop?options=-csearch_path%3Daudit", "audit"),
        ("postgresql+psycopg://u@h/shop?options=-c%20search_path%3DAudit,public", "audit"),  # unquoted names fold
        ("postgresql+psycopg://u@h/shop?options=-csearch_path%3D%22Audit%22", "Audit"),
        ("postgresql+psycopg://u@h/shop?options=-csearch_path%3D%22%24user%22,logs", "logs"),  # never "$user"
        ("postgresql+psycopg://u@h/shop?options=-csearch_path%3D%24user", "public"),
        (
            "postgresql+psycopg://u@h/shop?options=-cstatement_timeout%3D5%20--search_path%3Da%20-csearch_path%3Db",
            "b",
        ),  # the last wins
        ("postgresql+psycopg://u@h/shop?options=-cstatement_timeout%3D5", "public"),
        ("mysql+pymysql://u@h/shop", "shop"),
        ("mariadb+pymysql://u@h/shop", "shop"),
        ("mysql+pymysql://u@h", None),
        ("sqlite:///audit.db", None),
        ("sqlite+aiosqlite:///audit.db", None),
    ],
)
def test_schema_of_the_sink_table(url: str, schema: str | None) -> None:
    from appshell.audit.sqlsink import schema_of

    assert schema_of(url) == schema


# -- the attack on PostgreSQL --------------------------------------------------------------------


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    """A database of its own whose audit table (public.appshell_audit, owned by postgres) the app's
    role may only insert into and read, as docs/audit.md's recipe has it — but the role has CREATE
    on the database. Database and role are dropped at the end."""
    from sqlalchemy import create_engine, text

    from appshell.audit.sqlsink import SqlSink

    with pg_scratch("GRANT CREATE ON DATABASE {database} TO {app}") as made:  # the one right too many
        SqlSink(made.admin_url).close()  # creates public.appshell_audit, owned by postgres
        engine = create_engine(made.admin_url)
        with engine.begin() as conn:
            conn.execute(text("REVOKE ALL ON public.appshell_audit FROM PUBLIC"))
            conn.execute(text(f"GRANT SELECT, INSERT ON public.appshell_audit TO {made.app}"))
        engine.dispose()
        yield made


def decoy(url: str, schema: str) -> None:
    """As the role at *url*: a schema named *schema* and an empty appshell_audit in it, shaped like the real one."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(text(f'CREATE TABLE "{schema}".appshell_audit (LIKE public.appshell_audit INCLUDING ALL)'))
    engine.dispose()


def unqualified_table(url: str) -> str:
    """The table an unqualified appshell_audit names for the role at *url*, on a connection of its own."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        found = str(
            conn.execute(
                text(
                    "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.oid = to_regclass('appshell_audit')"
                )
            ).scalar()
        )
    engine.dispose()
    return found


def count(url: str, table: str, session: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        found = int(
            conn.execute(text(f"SELECT count(*) FROM {table} WHERE session = :s"), {"s": session}).scalar() or 0
        )
    engine.dispose()
    return found


def session_as_the_app(shop: Path, scratch: Scratch, driver: str = "psycopg") -> Result:
    """A production session whose records go to the file and, as the app's role, to the SQL sink
    (its URL naming *driver*: an async one is reached through the sync driver of the same database)."""
    url = scratch.app_url.replace("+psycopg", f"+{driver}", 1)
    (shop / "profiles" / "production.toml").write_text(
        f'[audit]\nsinks = ["file", "sql"]\nrequired = true\nurl = "{url}"\n'
    )
    return run([*PRODUCTION, "-c", "print(count(Customer))"], cwd=shop)


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_a_schema_named_after_the_app_role_does_not_catch_the_records(
    shop: Path, scratch: Scratch, driver: str
) -> None:
    from sqlalchemy import create_engine, text

    decoy(scratch.app_url, scratch.app)
    assert unqualified_table(scratch.app_url) == f"{scratch.app}.appshell_audit"  # "$user" is first in search_path
    result = session_as_the_app(shop, scratch, driver)
    assert result.exit_code == 0, result.output
    written = audit_records(shop / LOG)
    session = written[0]["session"]
    assert count(scratch.admin_url, "public.appshell_audit", session) == len(
        written
    )  # every record where the auditor looks
    assert count(scratch.admin_url, f"{scratch.app}.appshell_audit", session) == 0  # none in the decoy
    # the operator empties the decoy: nothing of the session goes with it
    engine = create_engine(scratch.app_url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {scratch.app}.appshell_audit"))
    engine.dispose()
    for url in (scratch.app_url, scratch.admin_url):  # the app's own search_path would name the decoy
        verify = run(["audit", "verify", "--url", url], cwd=shop)
        assert verify.exit_code == 0 and f"{len(written)} records in 1 sessions" in verify.stdout, verify.output
        tail = run(["audit", "tail", "--url", url], cwd=shop)
        assert tail.exit_code == 0 and "(1 row)" in tail.stdout, tail.output  # the session; the decoy would show none
        shown = run(["audit", "show", session[:8], "--url", url], cwd=shop)
        assert shown.exit_code == 0 and "print(count(Customer))" in shown.stdout, shown.output
    witness = run(["audit", "verify", "--log", str(shop / LOG), "--witness", scratch.admin_url], cwd=shop)
    assert witness.exit_code == 0 and "the witness holds the same 1 session(s)" in witness.stdout, witness.output


def test_a_schema_named_after_the_auditor_does_not_hide_the_records(shop: Path, scratch: Scratch) -> None:
    """The app's role names its schema after the auditor's role: the auditor's own unqualified reads
    would find an empty table there, and every reader with --url would say all is well."""
    from sqlalchemy import make_url

    auditor = str(make_url(scratch.admin_url).username)
    decoy(scratch.app_url, auditor)
    assert unqualified_table(scratch.admin_url) == f"{auditor}.appshell_audit"
    assert session_as_the_app(shop, scratch).exit_code == 0
    written = audit_records(shop / LOG)
    session = written[0]["session"]
    verify = run(["audit", "verify", "--url", scratch.admin_url], cwd=shop)
    assert verify.exit_code == 0 and f"{len(written)} records in 1 sessions" in verify.stdout, verify.output
    assert "(1 row)" in run(["audit", "tail", "--url", scratch.admin_url], cwd=shop).stdout
    page = review_page(scratch.admin_url)
    assert f"/session/{session}" in page


def review_page(url: str) -> str:
    """The review page's session list for the table at *url*, as `audit serve --url` would show it."""
    try:
        from starlette.testclient import TestClient
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise  # CI installs the test extra, which has appshell[review]
        pytest.skip("the review extra is not installed")
    from appshell.cli.review_web.app import create_app
    from appshell.cli.review_web.cli import build_config, parser

    token = "alice-token-0123456789"
    config = build_config(parser().parse_args(["--url", url]), {"APPSHELL_REVIEW_TOKENS": f"alice:{token}"})
    config.warm = False
    client = TestClient(create_app(config), follow_redirects=False)
    return str(client.get("/", headers={"Authorization": f"Bearer {token}"}).text)


def test_reviews_are_kept_beside_the_qualified_table(scratch: Scratch) -> None:
    """The review chain (appshell_review) goes where the audit table is, not where "$user" points."""
    from sqlalchemy import make_url

    from appshell.audit.reviews import SqlReviews

    auditor = str(make_url(scratch.admin_url).username)
    decoy(scratch.app_url, auditor)
    reviews = SqlReviews(scratch.admin_url)
    reviews.append("0123456789abcdef", "alice", "flagged", "why on prod?")
    assert count(scratch.admin_url, "public.appshell_review", "0123456789abcdef") == 1
    assert reviews.load().state("0123456789abcdef") == "flagged"


def test_doctor_warns_where_an_unqualified_name_finds_another_table(shop: Path, scratch: Scratch) -> None:
    """The sink is safe from the decoy now; doctor still names it (psql and older appshells meet it)
    and the right that made it possible, for the sink's role."""
    from sqlalchemy import create_engine, text

    decoy(scratch.app_url, scratch.app)
    (shop / "profiles" / "production.toml").write_text(
        f'[audit]\nsinks = ["file", "sql"]\nrequired = true\nurl = "{scratch.app_url}"\n'
    )
    result = run(["doctor", "--json", "--profile", "production"], cwd=shop)
    checks = {c["check"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)["checks"]}
    assert checks["audit sql rights"][0] == "ok", checks  # INSERT and SELECT only, on public.appshell_audit
    table, schema = checks["audit sql table"], checks["audit sql schema"]
    assert table[0] == "WARN" and table[1].startswith(
        f"for {scratch.app}, an unqualified appshell_audit is {scratch.app}.appshell_audit, not public.appshell_audit"
    ), table
    assert (
        schema[0] == "WARN" and f"REVOKE CREATE ON DATABASE {scratch.database} FROM PUBLIC, {scratch.app}" in schema[1]
    ), schema
    # the fix: the decoy goes, and the right with it
    admin = create_engine(scratch.admin_url)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {scratch.app} CASCADE"))
        conn.execute(text(f"REVOKE CREATE ON DATABASE {scratch.database} FROM PUBLIC, {scratch.app}"))
    admin.dispose()
    result = run(["doctor", "--json", "--profile", "production"], cwd=shop)
    checks = {c["check"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)["checks"]}
    assert "audit sql table" not in checks and checks["audit sql schema"][0] == "ok", checks


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_readers_say_in_one_line_where_there_is_no_table(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    """An upgraded reader that finds no table where it now looks says so, and what to do — no traceback."""
    url = f"sqlite:///{tmp_path / 'empty.db'}" if database == "sqlite" else request.getfixturevalue("pg_url")
    name = "appshell_audit" if database == "sqlite" else url.rsplit("%3D", 1)[1] + ".appshell_audit"
    for args in (["verify"], ["tail"], ["show", "abc"]):
        result = run(["audit", *args, "--url", url], cwd=tmp_path)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert result.stderr.startswith(f"appshell: error: no table {name} in "), result.stderr
        assert ("SET SCHEMA" in result.stderr) is (database == "postgresql")
