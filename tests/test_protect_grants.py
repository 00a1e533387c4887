"""Protected data enforced by the database (issue 24 item 4): doctor's proof that the role a session reads
with cannot read the protected columns — real PostgreSQL roles and column-level GRANTs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from appshell.profiles import build_profile
from appshell.protect import doctor_rows, prove_column_grants

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
    assert prove_column_grants(sqlite_url, PROTECTED) == (None, "SQLite has no column grants: protected data is masked in Python only (guarded)")


def test_doctor_rows_read_through_the_read_only_role(customers: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine

    owner_url, role_url = customers
    metadata = MetaData()
    Table("customers", metadata, Column("id", Integer, primary_key=True), Column("email", String), Column("name", String, info={"protected": True}),
          Column("country", String))
    engine = create_engine(owner_url)
    ctx = SimpleNamespace(models={}, metadata=metadata, engine=engine)
    values = {"protect.enabled": True, "protect.columns": ["customers.email"], "database.read_only_url_env": "DATABASE_URL_READONLY"}
    profile = build_profile("production", values)
    monkeypatch.setenv("DATABASE_URL_READONLY", role_url)
    try:
        assert [row[1] for row in doctor_rows(SimpleNamespace(profile=profile, read_only=True), ctx)] == ["ok"]
        rows = list(doctor_rows(SimpleNamespace(profile=profile, read_only=False), ctx))  # read-write: the app's own role
        assert rows[0][:2] == ("protected data", "WARN") and "can read customers.email, customers.name" in rows[0][2]
        assert list(doctor_rows(SimpleNamespace(profile=build_profile("development", {}), read_only=True), ctx)) == []
    finally:
        engine.dispose()
