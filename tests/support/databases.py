"""The database servers the tests use (PostgreSQL, MariaDB/MySQL): their URLs, scratch schemas, databases and roles."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from support.ci import unavailable

__all__ = [
    "MYSQL_URL",
    "PG_URL",
    "Scratch",
    "asyncpg_database",
    "mariadb_database",
    "pg_readonly_role",
    "pg_schema",
    "pg_scratch",
    "server_or_skip",
]

# The servers the tests use, read once here: every test's environment is cleaned of APPSHELL_* (conftest's _clean_env).
PG_URL = os.environ.get("APPSHELL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("APPSHELL_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def server_or_skip(engine: Any, server: str) -> None:
    """The database server (*server*: its name) answers through *engine*; else the test is skipped (failed under CI)."""
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        unavailable(
            f"{server} is not reachable at {engine.url.render_as_string(hide_password=True)}: {exc}",
            "every database server",
        )


@contextmanager
def pg_schema() -> Iterator[str]:
    """A schema of its own on the PostgreSQL server (the URL's search_path), dropped at the end."""
    from sqlalchemy import create_engine, text

    base = PG_URL
    engine = create_engine(base)
    server_or_skip(engine, "PostgreSQL")
    schema = f"appshell_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"drop schema {schema} cascade"))
        engine.dispose()


@contextmanager
def asyncpg_database(template: str | None = None) -> Iterator[str]:
    """A PostgreSQL database of its own (a copy of *template*, if given), its asyncpg URL; dropped
    at the end. Skipped if the server is down — failed under CI."""
    from sqlalchemy import create_engine, make_url, text

    name = f"appshell_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    server_or_skip(admin, "PostgreSQL")
    with admin.connect() as conn:
        conn.execute(text(f"create database {name}" + (f" template {template}" if template else "")))
    try:
        yield make_url(PG_URL).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"drop database {name} with (force)"))
        admin.dispose()


@contextmanager
def mariadb_database() -> Iterator[str]:
    """A database of its own on the MariaDB/MySQL server, its URL; dropped at the end. Skipped if the server is
    down — failed under CI."""
    from sqlalchemy import create_engine, text

    base = MYSQL_URL
    engine = create_engine(base)
    server_or_skip(engine, "MariaDB/MySQL")
    name = f"appshell_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.execute(text(f"create database {name}"))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"drop database {name}"))
        engine.dispose()


@dataclass
class Scratch:
    """A scratch PostgreSQL database and a login role of its own (pg_scratch)."""

    admin_url: str  # postgres, on the scratch database
    app_url: str  # the app's role on it
    app: str
    database: str


@contextmanager
def pg_scratch(*grants: str) -> Iterator[Scratch]:
    """A database and a login role of their own, both dropped at the end; *grants* run as postgres
    right after, with {database} and {app} filled in."""
    from sqlalchemy import create_engine, make_url, text

    suffix = uuid.uuid4().hex[:10]
    name, app = f"appshell_{suffix}", f"shop_app_{suffix}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    server_or_skip(admin, "PostgreSQL")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
        conn.execute(text(f"CREATE ROLE {app} LOGIN"))
        for grant in grants:
            conn.execute(text(grant.format(database=name, app=app)))
    base = make_url(PG_URL).set(database=name)
    try:
        yield Scratch(
            base.render_as_string(hide_password=False),
            base.set(username=app).render_as_string(hide_password=False),
            app,
            name,
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
            conn.execute(text(f"DROP ROLE {app}"))
        admin.dispose()


@contextmanager
def pg_readonly_role(pg_url: str) -> Iterator[str]:
    """A login role with SELECT rights only on *pg_url*'s schema (a pg_schema URL), its URL; dropped at the end."""
    from sqlalchemy import create_engine, make_url, text

    schema = pg_url.rsplit("%3D", 1)[1]
    role = f"ro_{uuid.uuid4().hex[:8]}"
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
        conn.execute(text(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}"))
    try:
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        engine.dispose()
