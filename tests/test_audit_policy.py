"""Issue 10, items 4 and 5, as a hostile operator tries them: audit settings belong to the profile,
redaction cannot erase evidence, URL passwords never shown, and doctor FAILs where the SQL sink's
role could delete its own records."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.audit import audit_records
from support.harness import run
from support.terminal import leave, spawn_shell

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

LOG = Path(".appshell") / "audit.jsonl"
PRODUCTION = ["--profile", "production", "--reason", "INC-7 policy test"]


def statements(log: Path) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in audit_records(log) if r["event"] == "statement"]


# -- audit settings belong to the profile ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--audit-log", "{tmp}/elsewhere.jsonl"], {}, "--audit-log"),
        ([], {"APPSHELL_AUDIT_LOG": "{tmp}/elsewhere.jsonl"}, "APPSHELL_AUDIT_LOG"),
        ([], {"APPSHELL_AUDIT_URL": "sqlite:///{tmp}/elsewhere.db"}, "APPSHELL_AUDIT_URL"),
        ([], {"APPSHELL_SYSLOG_ADDRESS": "127.0.0.1:9"}, "APPSHELL_SYSLOG_ADDRESS"),
    ],
)
def test_production_refuses_audit_overrides(
    shop: Path, tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    result = run([*PRODUCTION, *args, "-c", "open('ran', 'w')"], cwd=shop, env=env)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(
        f"appshell: error: {named} cannot change the audit settings: profile 'production' locks them"
    )
    assert "profiles/production.toml" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (shop / "ran").exists() and list(tmp_path.glob("elsewhere*")) == []


def test_production_writes_where_its_profile_says(shop: Path) -> None:
    assert run([*PRODUCTION, "-c", "print(count(Product))"], cwd=shop).exit_code == 0
    assert statements(shop / LOG)[0]["source"] == "print(count(Product))"


def test_doctor_fails_on_overridden_lock(shop: Path, tmp_path: Path) -> None:
    result = run(
        ["doctor", "--json", "--profile", "production"], cwd=shop, env={"APPSHELL_AUDIT_LOG": str(tmp_path / "x.jsonl")}
    )
    assert result.exit_code == 5
    checks = json.loads(result.stdout)["checks"]
    policy = [c for c in checks if c["check"] == "audit policy"]
    assert (
        policy[0]["status"] == "FAIL" and "APPSHELL_AUDIT_LOG cannot change the audit settings" in policy[0]["detail"]
    )
    # the sink it checks is the profile's, not the override
    sink = next(c for c in checks if c["check"] == "audit sink file")
    assert str(shop / LOG) in sink["detail"] and "x.jsonl" not in sink["detail"]


def test_required_audit_without_sinks(shop: Path) -> None:
    profile = shop / "profiles" / "production.toml"
    profile.write_text(profile.read_text() + "\n[audit]\nsinks = []\n")
    result = run([*PRODUCTION, "-c", "open('ran', 'w')"], cwd=shop)
    assert result.exit_code == 2 and not (shop / "ran").exists()
    assert result.stderr == (
        "appshell: error: profile 'production' requires the audit "
        "(audit.required = true) but names no sink (audit.sinks = [])"
        ' — set audit.sinks in profiles/production.toml (e.g. ["file"]), or audit.required = false\n'
    )
    doctor = run(["doctor", "--profile", "production"], cwd=shop)
    assert doctor.exit_code == 5 and "all checks passed" not in doctor.stdout
    assert re.search(r"│ audit policy\s+│ FAIL\s+│ profile 'production' requires the audit", doctor.stdout), (
        doctor.stdout
    )


# -- redaction cannot erase evidence ------------------------------------------------------------

DELETE = "sql('delete from order_lines'); commit()"


@pytest.mark.parametrize("profile", ["production", "development"])
def test_short_and_keyword_values_do_not_erase_the_statement(shop: Path, profile: str) -> None:
    args = [*PRODUCTION, "--write", "--yes"] if profile == "production" else []
    result = run([*args, "-c", DELETE], cwd=shop, env={"A_KEY": "delete", "B_KEY": "order_lines"})
    assert result.exit_code == 0, result.output
    records = audit_records(shop / LOG)
    assert statements(shop / LOG)[0]["source"] == DELETE
    ran = next(r for r in records if r["event"] == "result")["sql"]
    assert any("delete from order_lines" in s.lower() for s in ran), ran


@pytest.mark.parametrize("profile", ["production", "development"])
def test_program_in_a_secret_variable_does_not_erase_it(shop: Path, profile: str) -> None:
    args = [*PRODUCTION, "--write", "--yes"] if profile == "production" else []
    result = run([*args, "-c", DELETE], cwd=shop, env={"FOO_TOKEN": DELETE})
    assert result.exit_code == 0, result.output
    assert statements(shop / LOG)[0]["source"] == DELETE


def test_stdin_program_in_a_secret_variable_is_recorded(shop: Path) -> None:
    program = "n = count(Product)\nprint(n)\n"
    result = run(PRODUCTION, cwd=shop, input=program, env={"FOO_TOKEN": program, "BAR_SECRET": program.strip()})
    assert result.exit_code == 0, result.output
    assert statements(shop / LOG)[0]["source"] == program


def test_locked_profile_masks_the_apps_dotenv_secrets_not_the_operators(shop: Path) -> None:
    (shop / ".env").write_text("SHOP_API_TOKEN=tok-abcdef123\n")
    code = "t = 'tok-abcdef123'; u = 'ord-9f8e7d6c'"
    assert run([*PRODUCTION, "-c", code], cwd=shop, env={"OPERATOR_TOKEN": "ord-9f8e7d6c"}).exit_code == 0
    assert statements(shop / LOG)[0]["source"] == "t = '***'; u = 'ord-9f8e7d6c'"


# -- URL passwords: any character, and password-like query parameters, never shown -------------

PASSWORD = "Zq/x7#Yv?w9:K%40j3"  # decodes to Zq/x7#Yv?w9:K@j3
QUERY_PASSWORD = "Qm8zQueryPw"
FRAGMENTS = ("Zq/x", "x7#Yv", "Yv?w9", "w9:K", "K%40j3", "K@j3", QUERY_PASSWORD)


@pytest.fixture(params=["userinfo", "query"])
def secret_url(request: pytest.FixtureRequest, pg_url: str) -> str:
    """The test's PostgreSQL (trust: any password connects), with a password in the URL."""
    if request.param == "userinfo":
        return pg_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    return f"{pg_url}&password={QUERY_PASSWORD}"


def assert_hidden(text: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in text, (fragment, text)


def test_url_password_hidden_in_settings_and_audit_fields(shop: Path, secret_url: str) -> None:
    code = "print(repr(settings)); print(settings.database_url); print(engine.url.host)"
    result = run(["--database-url", secret_url, "-c", code], cwd=shop)
    assert result.exit_code == 0, result.output
    assert "127.0.0.1" in result.stdout and "***" in result.stdout
    assert_hidden(result.output)
    start = audit_records(shop / LOG)[0]
    assert "***" in start["database"] and "***" in " ".join(start["argv"])
    assert_hidden((shop / LOG).read_text())


def test_url_password_hidden_by_doctor(shop: Path, secret_url: str) -> None:
    result = run(["doctor", "--database-url", secret_url], cwd=shop)
    assert "reachable" in result.stdout, result.output
    assert_hidden(result.output)


def test_url_password_hidden_in_errors(shop: Path, secret_url: str) -> None:
    unreachable = re.sub(r"127\.0\.0\.1:5432", "127.0.0.1:1", secret_url)
    result = run(["--database-url", unreachable, "-c", "1"], cwd=shop)
    assert result.exit_code == 2 and "cannot connect to" in result.stderr, result.output
    assert_hidden(result.output)
    doctor = run(["doctor", "--database-url", unreachable], cwd=shop)
    assert doctor.exit_code == 5 and "cannot connect" in doctor.stdout
    assert_hidden(doctor.output)


def test_url_password_hidden_in_the_banner(shop: Path, secret_url: str) -> None:
    child = spawn_shell(shop, "--shell", "python", "--database-url", secret_url)
    child.expect("helpers\\(\\) lists the helpers")
    banner = child.before
    child.expect(r"\[dev\]")  # Ctrl-D only at a fresh prompt
    leave(child)
    assert "database  postgresql+psycopg://postgres" in banner
    assert_hidden(banner)


# -- the INSERT-only role on PostgreSQL (docs/audit.md) -----------------------------------------


@pytest.fixture
def roles(pg_url: str) -> Iterator[tuple[str, str, str]]:
    """Names for the audit table's owner and the app's role (which exists, with USAGE on the
    test schema, as an app's role would); both dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = re.search(r"search_path%3D(\w+)", pg_url)[1]  # type: ignore[index]
    suffix = uuid.uuid4().hex[:8]
    owner, app = f"audit_owner_{suffix}", f"shop_app_{suffix}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE ROLE {app} LOGIN"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {app}"))
    try:
        yield schema, owner, app
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {schema}"))  # the pg_url fixture drops it again
            for role in (owner, app):
                if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
                    conn.execute(text(f"DROP OWNED BY {role}"))
                    conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def recipe(schema: str, owner: str, app: str, database: str) -> list[list[str]]:
    """The ```sql blocks of the INSERT-only recipe in docs/audit.md, statement by statement,
    with the test's role, schema and database names."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "audit.md").read_text(encoding="utf-8")
    section = page.split("### The INSERT-only role on PostgreSQL", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for sql in re.findall(r"```sql\n(.*?)```", section, re.S):
        sql = (
            sql.replace("appshell_audit_owner", owner)
            .replace("shop_app", app)
            .replace("SCHEMA public", f"SCHEMA {schema}")
            .replace("public.appshell_audit", f"{schema}.appshell_audit")
            .replace("DATABASE shop", f"DATABASE {database}")
        )
        lines = [line.split("--", 1)[0] for line in sql.splitlines()]
        blocks.append([s.strip() for s in "\n".join(lines).split(";") if s.strip()])
    return blocks


def test_insert_only_role_recipe(shop: Path, pg_url: str, roles: tuple[str, str, str]) -> None:
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.exc import ProgrammingError

    schema, owner, app = roles
    as_admin, as_owner = recipe(schema, owner, app, str(make_url(pg_url).database))
    owner_url, app_url = (pg_url.replace("postgres@", f"{role}@", 1) for role in (owner, app))
    (shop / "profiles" / "production.toml").write_text('[audit]\nsinks = ["file", "sql"]\n')
    # 1. an administrator creates the owner
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        for statement in as_admin:
            conn.execute(text(statement))
    admin.dispose()
    # 2. the owner creates the table, through appshell's own sink (its first session does it)
    assert run([*PRODUCTION, "-c", "1"], cwd=shop, env={"DATABASE_URL": owner_url}).exit_code == 0
    doctor = run(["doctor", "--json", "--profile", "production"], cwd=shop, env={"DATABASE_URL": owner_url})
    rights = next(c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "audit sql rights")
    assert rights["status"] == "FAIL" and f"{owner} owns appshell_audit" in rights["detail"]  # it could delete them
    # 3. the owner grants the app's role INSERT and SELECT only
    engine = create_engine(owner_url)
    with engine.begin() as conn:
        for statement in as_owner:
            conn.execute(text(statement))
    engine.dispose()
    # 4. the app's role writes records, and cannot UPDATE, DELETE, TRUNCATE, ALTER or DROP them
    env = {"DATABASE_URL": app_url}
    assert run([*PRODUCTION, "-c", "print(1)"], cwd=shop, env=env).exit_code == 0
    engine = create_engine(app_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM appshell_audit")).scalar() >= 6
        for attack in (
            "UPDATE appshell_audit SET record = '{}'",
            "DELETE FROM appshell_audit",
            "TRUNCATE appshell_audit",
            "ALTER TABLE appshell_audit DISABLE TRIGGER ALL",
            "DROP TABLE appshell_audit",
        ):
            with engine.connect() as conn, pytest.raises(ProgrammingError, match="permission denied|must be owner"):
                conn.execute(text(attack))
    finally:
        engine.dispose()
    # 5. doctor, as the app's role: the rights check passes
    doctor = run(["doctor", "--json", "--profile", "production"], cwd=shop, env=env)
    checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["audit sql rights"]["status"] == "ok", checks["audit sql rights"]
    assert checks["audit sql schema"]["status"] == "ok", checks["audit sql schema"]  # no CREATE on the database
    assert checks["audit sink sql"]["status"] == "ok" and checks["audit policy"]["status"] == "ok"


@pytest.mark.parametrize("right", ["DELETE", "UPDATE", "TRUNCATE", "TRIGGER", "superuser"])
def test_doctor_sql_rights_on_postgresql_name_what_could_erase(
    shop: Path, pg_url: str, roles: tuple[str, str, str], right: str
) -> None:
    from sqlalchemy import create_engine, text

    _, _, app = roles
    (shop / "profiles" / "production.toml").write_text('[audit]\nsinks = ["sql"]\n')
    assert (
        run([*PRODUCTION, "-c", "1"], cwd=shop, env={"DATABASE_URL": pg_url}).exit_code == 0
    )  # the table, owned by postgres
    url = pg_url
    if right != "superuser":
        admin = create_engine(pg_url)
        with admin.begin() as conn:
            conn.execute(text(f"GRANT SELECT, INSERT, {right} ON appshell_audit TO {app}"))
        admin.dispose()
        url = pg_url.replace("postgres@", f"{app}@", 1)
    doctor = run(["doctor", "--json", "--profile", "production"], cwd=shop, env={"DATABASE_URL": url})
    rights = next(c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "audit sql rights")
    expected = "postgres is a superuser" if right == "superuser" else f"{app} holds {right} on appshell_audit"
    assert rights["status"] == "FAIL" and rights["detail"].startswith(expected), rights
    assert doctor.exit_code == 5


def test_doctor_sql_rights_on_sqlite_fail_where_required(shop: Path, tmp_path: Path) -> None:
    (shop / "profiles" / "production.toml").write_text('[audit]\nsinks = ["sql"]\n')
    result = run(["doctor", "--json", "--profile", "production"], cwd=shop)
    rights = next(c for c in json.loads(result.stdout)["checks"] if c["check"] == "audit sql rights")
    assert rights["status"] == "FAIL" and rights["detail"].startswith("SQLite has no privileges")
    assert result.exit_code == 5


def test_doctor_sql_rights_on_mariadb(shop: Path, mariadb_url: str) -> None:
    from sqlalchemy import create_engine, text

    (shop / "profiles" / "production.toml").write_text('[audit]\nsinks = ["sql"]\n')
    database = mariadb_url.rsplit("/", 1)[1]
    assert (
        run([*PRODUCTION, "-c", "1"], cwd=shop, env={"DATABASE_URL": mariadb_url}).exit_code == 0
    )  # creates appshell_audit
    as_root = run(["doctor", "--json", "--profile", "production"], cwd=shop, env={"DATABASE_URL": mariadb_url})
    rights = next(c for c in json.loads(as_root.stdout)["checks"] if c["check"] == "audit sql rights")
    assert rights["status"] == "FAIL" and "ALL PRIVILEGES" in rights["detail"]
    user = f"app_{uuid.uuid4().hex[:8]}"
    admin = create_engine(mariadb_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'%'"))
        conn.execute(text(f"GRANT SELECT, INSERT ON {database}.appshell_audit TO '{user}'@'%'"))
        conn.execute(text(f"GRANT SELECT ON {database}.* TO '{user}'@'%'"))
    try:
        app_url = mariadb_url.replace("root@", f"{user}@", 1)
        as_app = run(["doctor", "--json", "--profile", "production"], cwd=shop, env={"DATABASE_URL": app_url})
        rights = next(c for c in json.loads(as_app.stdout)["checks"] if c["check"] == "audit sql rights")
        assert rights["status"] == "ok", rights
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP USER '{user}'@'%'"))
        admin.dispose()


@pytest.mark.parametrize(
    ("target", "database", "covers"),
    [
        ("`shop\\_%`.*", "shop_prod", True),  # LIKE wildcards, escaped underscore
        ("`shop\\_%`.*", "shopXprod", False),
        ("`sh_p`.*", "shop", True),
        ("`%`.*", "anything", True),
        ("`other`.*", "shop", False),
        ("`shop`.`appshell_audit`", "shop", False),  # a table-level grant is matched exactly, elsewhere
    ],
)
def test_mysql_database_grant_patterns(target: str, database: str, covers: bool) -> None:
    from appshell.safety.powers import mysql_pattern_covers

    assert mysql_pattern_covers(target, database) is covers
