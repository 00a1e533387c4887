"""Issue 21 item 5: doctor names what the app's role can do outside the session's transaction —
the pure mapping from catalog facts to rows as tables, then the real catalogs of PostgreSQL and
MariaDB, each power granted to a real role, named by doctor, and gone after the fix it names."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.databases import MYSQL_URL, Scratch, pg_scratch, server_or_skip
from support.harness import run

from appshell.safety.powers import MysqlFacts, PgFacts, mysql_powers, postgresql_powers

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


# -- facts to rows --------------------------------------------------------------------------------

PG = PgFacts(user="shop_app", database="shop")


@pytest.mark.parametrize(
    ("facts", "names"),
    [
        (PG, []),
        (
            PgFacts(
                "shop_app",
                "shop",
                superuser=True,
                create_on_database=True,
                server_roles=("pg_read_server_files",),
                lo_export=True,
            ),
            ["superuser"],
        ),  # it implies the rest: one row
        (PgFacts("shop_app", "shop", dblink_schema="public", dblink_usable=("dblink", "dblink_exec")), ["dblink"]),
        (PgFacts("shop_app", "shop", dblink_schema="public"), []),  # installed, but nothing it may call
        (PgFacts("shop_app", "shop", fdw_schema="public"), []),  # installed, but no wrapper or server it may use
        (PgFacts("shop_app", "shop", fdw_schema="public", fdw_servers=("loop",)), ["postgres_fdw"]),
        (PgFacts("shop_app", "shop", fdw_schema="public", fdw_usage=True), ["postgres_fdw"]),
        (
            PgFacts("shop_app", "shop", server_roles=("pg_execute_server_program", "pg_write_server_files")),
            ["pg_execute_server_program", "pg_write_server_files"],
        ),
        (PgFacts("shop_app", "shop", lo_export=True), ["lo_export"]),
        (PgFacts("shop_app", "shop", create_on_database=True), ["CREATE on the database"]),
    ],
)
def test_postgresql_facts_to_powers(facts: PgFacts, names: list[str]) -> None:
    assert [p.name for p in postgresql_powers(facts)] == names


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (
            PgFacts("shop_app", "shop", dblink_schema="public", dblink_usable=("dblink_exec",)),
            ["outside the sandbox and read-only", "REVOKE USAGE ON SCHEMA dblink FROM PUBLIC, shop_app"],
        ),
        (
            PgFacts("Shop App", "shop", dblink_schema="ext", dblink_usable=("dblink_exec",)),
            ['REVOKE USAGE ON SCHEMA ext FROM PUBLIC, "Shop App"'],
        ),  # a name that needs quoting is quoted
        (
            PgFacts("shop_app", "shop", fdw_schema="public", fdw_servers=("loop",)),
            ["REVOKE USAGE ON FOREIGN SERVER loop FROM PUBLIC, shop_app", "does follow this one's commit or rollback"],
        ),
        (
            PgFacts("shop_app", "shop", create_on_database=True, owns_database=True),
            ['"$user"', "REVOKE CREATE ON DATABASE shop FROM PUBLIC, shop_app", "ALTER DATABASE shop OWNER TO"],
        ),
        (
            PgFacts("shop_app", "shop", create_on_database=True),
            ["REVOKE CREATE ON DATABASE shop FROM PUBLIC, shop_app"],
        ),
        (
            PgFacts("shop_app", "shop", lo_export=True),
            ["REVOKE EXECUTE ON FUNCTION lo_export(oid, text) FROM PUBLIC, shop_app"],
        ),
    ],
)
def test_postgresql_rows_say_why_and_how_to_fix(facts: PgFacts, expected: list[str]) -> None:
    detail = " ".join(p.detail for p in postgresql_powers(facts))
    for part in expected:
        assert part in detail
    if not facts.owns_database:
        assert "OWNER TO" not in detail


@pytest.mark.parametrize(
    ("grants", "names"),
    [
        ((), []),
        ((("SELECT", "`shop`.*"), ("INSERT", "`shop`.*")), []),
        ((("ALL PRIVILEGES", "*.*"),), ["FILE", "EVENT", "SUPER", "CREATE"]),
        ((("ALL PRIVILEGES", "`shop`.*"),), ["EVENT", "CREATE"]),  # FILE and SUPER are global privileges only
        ((("FILE", "*.*"),), ["FILE"]),
        ((("EVENT", "`shop`.*"), ("CREATE", "`shop`.*")), ["EVENT", "CREATE"]),
        ((("SUPER", "*.*"),), ["SUPER"]),
    ],
)
def test_mysql_grants_to_powers(grants: tuple[tuple[str, str], ...], names: list[str]) -> None:
    assert [p.name for p in mysql_powers(MysqlFacts("app@%", "shop", grants))] == names


def test_mysql_rows_name_the_revoke_for_the_target_granted() -> None:
    (event,) = mysql_powers(MysqlFacts("app@%", "shop", (("EVENT", "`shop`.*"),), event_scheduler="ON"))
    assert "event_scheduler is ON" in event.detail and event.detail.endswith("REVOKE EVENT ON `shop`.* FROM 'app'@'%'")


# -- PostgreSQL: a real role, each power granted, doctor names it ---------------------------------


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    """A database and a login role of their own, both dropped at the end."""
    with pg_scratch() as made:
        yield made


def as_admin(scratch: Scratch, *statements: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(scratch.admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def doctor_rows(root: Path, url: str) -> dict[str, tuple[str, str]]:
    result = run(["doctor", "--json"], cwd=root, env={"DATABASE_URL": url})
    return {c["check"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)["checks"]}


def test_doctor_names_each_power_of_the_apps_role_and_its_fix_removes_it(
    app_dir: Callable[[str], Path], scratch: Scratch
) -> None:
    root = app_dir("plainapp")
    app = scratch.app
    as_admin(
        scratch,
        "CREATE EXTENSION dblink",
        "CREATE EXTENSION postgres_fdw",
        f"CREATE SERVER loop FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', dbname '{scratch.database}')",
        f"GRANT USAGE ON FOREIGN SERVER loop TO {app}",
        f"GRANT pg_execute_server_program, pg_write_server_files, pg_read_server_files TO {app}",
        f"GRANT EXECUTE ON FUNCTION lo_export(oid, text) TO {app}",
        f"GRANT CREATE ON DATABASE {scratch.database} TO {app}",
    )
    rows = doctor_rows(root, scratch.app_url)
    powers = {
        check: detail for check, (status, detail) in rows.items() if status == "WARN" and check.startswith("role power")
    }
    assert sorted(powers) == sorted(
        f"role power: {n}"
        for n in (
            "dblink",
            "postgres_fdw",
            "pg_execute_server_program",
            "pg_write_server_files",
            "pg_read_server_files",
            "lo_export",
            "CREATE on the database",
        )
    ), rows
    assert powers["role power: dblink"].startswith(
        f"dblink is installed in schema public and {app} may call dblink, dblink_connect, dblink_exec"
    )
    assert (
        "dblink can run statements on a new connection, outside the sandbox and read-only"
        in powers["role power: dblink"]
    )
    assert f"{app} may use foreign server(s) loop" in powers["role power: postgres_fdw"]
    # the fixes doctor names, as an administrator would run them
    as_admin(
        scratch,
        "CREATE SCHEMA dblink",
        "ALTER EXTENSION dblink SET SCHEMA dblink",
        f"REVOKE USAGE ON SCHEMA dblink FROM PUBLIC, {app}",
        f"REVOKE USAGE ON FOREIGN SERVER loop FROM PUBLIC, {app}",
        *(
            f"REVOKE {role} FROM {app}"
            for role in ("pg_execute_server_program", "pg_write_server_files", "pg_read_server_files")
        ),
        f"REVOKE EXECUTE ON FUNCTION lo_export(oid, text) FROM PUBLIC, {app}",
        f"REVOKE CREATE ON DATABASE {scratch.database} FROM PUBLIC, {app}",
    )
    rows = doctor_rows(root, scratch.app_url)
    assert rows["role powers"][0] == "ok" and rows["role powers"][1].startswith(
        f"{app} cannot reach past the transaction"
    ), rows
    assert not any(check.startswith("role power:") for check in rows)


def test_doctor_names_a_superuser_once(app_dir: Callable[[str], Path], scratch: Scratch) -> None:
    root = app_dir("plainapp")
    rows = doctor_rows(root, scratch.admin_url)
    assert rows["role power: superuser"][0] == "WARN" and rows["role power: superuser"][1].startswith(
        "postgres is a superuser"
    )
    assert [c for c in rows if c.startswith("role power")] == ["role power: superuser"]


def test_the_loopback_doctor_warns_about_commits_from_inside_a_sandbox(
    app_dir: Callable[[str], Path], scratch: Scratch
) -> None:
    """What the superuser row is about, shown: dblink_exec writes on its own connection while the
    sandbox rolls back its own — the row it writes stays, whatever appshell reported (it cannot see
    the other connection)."""
    from sqlalchemy import create_engine, text

    root = app_dir("plainapp")
    as_admin(scratch, "CREATE EXTENSION dblink", "CREATE TABLE marks (x int)")
    loopback = f"dbname={scratch.database} host=127.0.0.1 user=postgres"
    code = f"sql(\"select dblink_exec('{loopback}', 'insert into marks values (1)')\")"
    result = run(["--sandbox", "-c", code], cwd=root, env={"DATABASE_URL": scratch.admin_url})
    engine = create_engine(scratch.admin_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM marks")).scalar() == 1, (
            result.output
        )  # committed, whatever the sandbox said
    engine.dispose()
    assert doctor_rows(root, scratch.admin_url)["role power: superuser"][0] == "WARN"


# -- MariaDB: FILE, EVENT, SUPER, CREATE --------------------------------------------------------------


@pytest.fixture
def maria_user(mariadb_url: str) -> Iterator[tuple[str, str, str]]:
    """(admin URL, the user's URL, database) for a user of its own on the test database; dropped at the end."""
    from sqlalchemy import create_engine, text

    user = f"app_{uuid.uuid4().hex[:8]}"
    database = mariadb_url.rsplit("/", 1)[1]
    admin = create_engine(MYSQL_URL)
    server_or_skip(admin, "MariaDB/MySQL")
    with admin.begin() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'%'"))
        conn.execute(text(f"GRANT SELECT, INSERT ON {database}.* TO '{user}'@'%'"))
    try:
        yield mariadb_url, mariadb_url.replace("root@", f"{user}@", 1), user
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP USER '{user}'@'%'"))
        admin.dispose()


def test_doctor_names_mariadb_privileges_that_reach_past_the_transaction(
    app_dir: Callable[[str], Path], maria_user: tuple[str, str, str]
) -> None:
    root = app_dir("plainapp")
    from sqlalchemy import create_engine, text

    admin_url, app_url, user = maria_user
    database = admin_url.rsplit("/", 1)[1]
    rows = doctor_rows(root, app_url)
    assert rows["role powers"] == ("ok", f"{user}@% holds none of FILE, EVENT, SUPER, CREATE"), rows
    admin = create_engine(admin_url)
    with admin.begin() as conn:
        conn.execute(text(f"GRANT FILE, SUPER ON *.* TO '{user}'@'%'"))
        conn.execute(text(f"GRANT EVENT, CREATE ON {database}.* TO '{user}'@'%'"))
    admin.dispose()
    rows = doctor_rows(root, app_url)
    powers = {
        check: detail for check, (status, detail) in rows.items() if status == "WARN" and check.startswith("role power")
    }
    assert sorted(powers) == ["role power: CREATE", "role power: EVENT", "role power: FILE", "role power: SUPER"], rows
    assert powers["role power: EVENT"].endswith(f"REVOKE EVENT ON `{database}`.* FROM '{user}'@'%'")
    assert "INTO OUTFILE" in powers["role power: FILE"] and "implicit commit" in powers["role power: CREATE"]
