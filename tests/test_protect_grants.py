"""Protected data enforced by the database (issue 24 item 4): the proof that the role a session reads with
cannot read the protected columns, and sessions through such a role — real PostgreSQL roles and MariaDB
users with column-level GRANTs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.harness import run, run_module

from appshell.config.profiles import build_profile
from appshell.console.protect_report import doctor_rows, prove_column_grants

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

PROTECTED = ["customers.email", "customers.name"]


@pytest.fixture
def customers(pg_url: str) -> Iterator[tuple[str, str]]:
    """A customers table in the test's schema, and a role granted SELECT on its unprotected columns only:
    (the owner's URL, the role's URL)."""
    from sqlalchemy import create_engine, make_url, text

    schema = pg_url.rsplit("%3D", 1)[1]
    role = f"masked_{uuid.uuid4().hex[:8]}"
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE customers (id integer PRIMARY KEY, email text, name text, country text)"))
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
        conn.execute(text(f"GRANT SELECT (id, country) ON customers TO {role}"))  # column-level: not email, not name
    try:
        yield pg_url, make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        engine.dispose()


def test_a_role_without_select_on_the_columns_is_proved_enforced(customers: tuple[str, str]) -> None:
    _, role_url = customers
    enforced, message = prove_column_grants(role_url, PROTECTED)
    assert enforced is True, message
    assert "cannot read customers.email, customers.name: the database refuses (enforced)" in message


def test_a_role_that_can_read_them_is_named_guarded(customers: tuple[str, str]) -> None:
    owner_url, _ = customers
    enforced, message = prove_column_grants(owner_url, PROTECTED)
    assert enforced is False
    assert "can read customers.email, customers.name: masked in Python only (guarded)" in message


def test_a_missing_table_is_not_taken_for_a_refusal(customers: tuple[str, str]) -> None:
    _, role_url = customers
    enforced, message = prove_column_grants(role_url, ["nosuch.email"])
    assert enforced is None and "failed for another reason than a missing privilege" in message


def test_sqlite_has_no_grants(sqlite_url: str) -> None:
    assert prove_column_grants(sqlite_url, PROTECTED) == (
        None,
        "SQLite has no column grants: protected data is masked in Python only (guarded)",
    )


def test_doctor_rows_read_through_the_read_only_role(
    customers: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine

    owner_url, role_url = customers
    metadata = MetaData()
    Table(
        "customers",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("email", String),
        Column("name", String, info={"protected": True}),
        Column("country", String),
    )
    engine = create_engine(owner_url)
    ctx = SimpleNamespace(models={}, metadata=metadata, engine=engine)
    values = {
        "protect.enabled": True,
        "protect.columns": ["customers.email"],
        "database.read_only_url_env": "DATABASE_URL_READONLY",
    }
    profile = build_profile("production", values)
    monkeypatch.setenv("DATABASE_URL_READONLY", role_url)
    try:
        assert [row[1] for row in doctor_rows(SimpleNamespace(profile=profile, read_only=True), ctx)] == ["ok"]
        rows = list(
            doctor_rows(SimpleNamespace(profile=profile, read_only=False), ctx)
        )  # read-write: the app's own role
        assert rows[0][:2] == ("protected data", "WARN") and "can read customers.email, customers.name" in rows[0][2]
        assert list(doctor_rows(SimpleNamespace(profile=build_profile("development", {}), read_only=True), ctx)) == []
    finally:
        engine.dispose()


def _enforced_profile(shop: Path) -> None:
    with (shop / "profiles" / "production.toml").open("a") as profile:
        profile.write('\n[database]\nread_only_url_env = "DATABASE_URL_READONLY"\n')
    text_ = (
        (shop / "profiles" / "production.toml").read_text().replace("[protect]\n", "[protect]\ncolumn_grants = true\n")
    )
    (shop / "profiles" / "production.toml").write_text(text_)


@pytest.fixture(params=["postgresql", "mariadb"])
def enforced_shop(request: pytest.FixtureRequest, shop: Path) -> Iterator[tuple[Path, dict[str, str], str]]:
    """The shop on PostgreSQL or MariaDB, its production profile reading through a role with no SELECT
    on the customers' e-mail and name (column grants): (the shop, its environment, the owner's URL)."""
    from sqlalchemy import create_engine, make_url, text

    url = str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "mariadb_url"))
    env = {"DATABASE_URL": url}
    run_module("shop.seed", shop, env)
    role = f"masked_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url)
    if request.param == "postgresql":
        schema = url.rsplit("%3D", 1)[1]
        grants = [
            f"CREATE ROLE {role} LOGIN",
            f"GRANT USAGE ON SCHEMA {schema} TO {role}",
            f"GRANT SELECT ON orders, order_lines, products TO {role}",
            f"GRANT SELECT (id, country, created_at) ON customers TO {role}",
        ]
        drops = [f"DROP OWNED BY {role}", f"DROP ROLE {role}"]
    else:
        database, user = make_url(url).database, f"'{role}'@'%'"
        grants = [
            f"CREATE USER {user}",
            *(f"GRANT SELECT ON {database}.{t} TO {user}" for t in ("orders", "order_lines", "products")),
            f"GRANT SELECT (id, country, created_at) ON {database}.customers TO {user}",
        ]
        drops = [f"DROP USER {user}"]
    with engine.begin() as conn:
        for statement in grants:
            conn.execute(text(statement))
    _enforced_profile(shop)
    try:
        yield (
            shop,
            {**env, "DATABASE_URL_READONLY": make_url(url).set(username=role).render_as_string(hide_password=False)},
            url,
        )
    finally:
        with engine.begin() as conn:
            for statement in drops:
                conn.execute(text(statement))
        engine.dispose()


PRODUCTION = ["--profile", "production", "--reason", "INC-8 grants check"]


def test_an_enforced_session_never_reads_the_protected_columns(enforced_shop: tuple[Path, dict[str, str], str]) -> None:
    shop, env, _ = enforced_shop
    result = run(
        [
            *PRODUCTION,
            "-c",
            "print(where(Customer, limit=2)); print(first(Customer)); show(find(Customer, 2)); print(count(Order))",
        ],
        cwd=shop,
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "│  1 │ <no access> │ <no access> │ FR      │" in result.stdout
    assert "<Customer id=1 country='FR'" in result.stdout  # the shop's own repr reads the e-mail: appshell's instead
    assert "│ email      │ <no access>" in result.stdout
    assert result.stdout.rstrip().endswith("50")
    assert "example.com" not in result.stdout


@pytest.mark.parametrize(
    "code",
    [
        "print(sql('SELECT email FROM customers'))",  # raw SQL: the database refuses
        "print(session.scalar(select(Customer.email)))",
        "print(first(Customer).email)",  # reading the attribute: never loaded, not loadable
        "print(where(Customer, email='customer1@example.com'))",  # a filter on it is a read of it
    ],
)
def test_raw_sql_and_attributes_meet_the_database_refusal(
    enforced_shop: tuple[Path, dict[str, str], str], code: str
) -> None:
    shop, env, _ = enforced_shop
    result = run([*PRODUCTION, "-c", code], cwd=shop, env=env)
    assert result.exit_code == 1
    refused = (
        "permission denied for table customers",
        "command denied to user",
        "'Customer.email' is not available due to raiseload=True",
    )
    assert any(words in result.stderr for words in refused), result.stderr
    assert "customer1@example.com" not in result.stdout


def test_unlock_says_the_role_cannot_read_them(enforced_shop: tuple[Path, dict[str, str], str]) -> None:
    shop, env, _ = enforced_shop
    result = run([*PRODUCTION, "-c", "unlock('INC-42: customer asked for a copy of their data')"], cwd=shop, env=env)
    assert result.exit_code == 1
    assert "UnlockRefused: this session's database role may not read the protected columns" in result.stderr


def test_unlock_logs_in_as_the_role_that_can_read_them_and_lock_logs_out(
    enforced_shop: tuple[Path, dict[str, str], str],
) -> None:
    from sqlalchemy import make_url

    shop, env, owner_url = enforced_shop
    profile = shop / "profiles" / "production.toml"
    profile.write_text(
        profile.read_text().replace("[protect]\n", '[protect]\nunlock_url_env = "DATABASE_URL_UNLOCKED"\n')
    )
    code = "\n".join(
        [
            "print(where(Customer, limit=1))",
            "unlock('INC-42: customer asked for a copy of their data')",
            "print(sql('select current_user')[0][0]); print(where(Customer, limit=1))",
            "lock()",
            "print(sql('select current_user')[0][0]); print(where(Customer, limit=1))",
        ]
    )
    result = run([*PRODUCTION, "-c", code], cwd=shop, env={**env, "DATABASE_URL_UNLOCKED": owner_url})
    assert result.exit_code == 0, result.output
    owner, masked = make_url(owner_url).username, make_url(env["DATABASE_URL_READONLY"]).username
    before, unlocked, after = result.stdout.split("(1 row)")[:3]
    assert "<no access>" in before and "example.com" not in before
    assert unlocked.split()[0].split("@")[0] == owner and "│  1 │ customer1@example.com │ Customer 1 │" in unlocked
    assert after.split()[0].split("@")[0] == masked and "<no access>" in after and "example.com" not in after
    assert f"(the database role {owner}) until lock()" in result.stderr
    from support.audit import audit_records

    access = [r for r in audit_records(shop / ".appshell" / "audit.jsonl") if r.get("kind") == "sensitive_access"]
    assert [(r["role"], r["columns"]) for r in access] == [(owner, ["customers.email", "customers.name"])]


def test_an_unlock_role_named_but_unset_is_an_error(enforced_shop: tuple[Path, dict[str, str], str]) -> None:
    shop, env, _ = enforced_shop
    profile = shop / "profiles" / "production.toml"
    profile.write_text(
        profile.read_text().replace("[protect]\n", '[protect]\nunlock_url_env = "DATABASE_URL_UNLOCKED"\n')
    )
    result = run([*PRODUCTION, "-c", "pass"], cwd=shop, env=env)
    assert result.exit_code == 2
    assert (
        'protect.unlock_url_env = "DATABASE_URL_UNLOCKED", but it '
        "is not set — set DATABASE_URL_UNLOCKED to the URL of a role" in result.stderr
    )


def test_the_proof_on_each_database(enforced_shop: tuple[Path, dict[str, str], str]) -> None:
    _, env, owner_url = enforced_shop
    enforced, message = prove_column_grants(env["DATABASE_URL_READONLY"], PROTECTED)
    assert enforced is True, message
    assert prove_column_grants(owner_url, PROTECTED)[0] is False
