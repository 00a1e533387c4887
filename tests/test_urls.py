"""appshell.config.urls: the sync driver of the same database
for an async URL (the audit's and doctor's own engines)."""

from __future__ import annotations

import pytest

from appshell.config.urls import driver_module, missing_driver, sync_url
from appshell.errors import DatabaseUnavailable


@pytest.mark.parametrize(
    "url, expected",
    [
        # async drivers: the same database through its sync driver
        (
            "postgresql+asyncpg://app:s3cret@db.internal:5433/shop",
            "postgresql+psycopg://app:s3cret@db.internal:5433/shop",
        ),
        ("postgresql+psycopg_async://app@db/shop", "postgresql+psycopg://app@db/shop"),
        ("sqlite+aiosqlite:///var/app.db", "sqlite+pysqlite:///var/app.db"),
        ("sqlite+aiosqlite:////srv/app/app.db", "sqlite+pysqlite:////srv/app/app.db"),
        ("sqlite+aiosqlite://", "sqlite+pysqlite://"),
        (
            "mysql+aiomysql://root@127.0.0.1:3306/shop?charset=utf8mb4",
            "mysql+pymysql://root@127.0.0.1:3306/shop?charset=utf8mb4",
        ),
        ("mysql+asyncmy://root@127.0.0.1/shop", "mysql+pymysql://root@127.0.0.1/shop"),
        ("mariadb+asyncmy://root@127.0.0.1/shop", "mariadb+pymysql://root@127.0.0.1/shop"),
        (
            "oracle+oracledb_async://scott:tiger@db/?service_name=XE",
            "oracle+oracledb://scott:tiger@db/?service_name=XE",
        ),
        ("mssql+aioodbc://sa:pw@dsn", "mssql+pyodbc://sa:pw@dsn"),
        # a password with characters URLs escape keeps its escaping
        ("postgresql+asyncpg://app:p%40ss%2Fw@db/shop", "postgresql+psycopg://app:p%40ss%2Fw@db/shop"),
        # asyncpg's connect options said as libpq says them; its statement cache and command timeout dropped
        ("postgresql+asyncpg://app@db/shop?ssl=verify-full", "postgresql+psycopg://app@db/shop?sslmode=verify-full"),
        (
            "postgresql+asyncpg://app@db/shop?prepared_statement_cache_size=0&command_timeout=60",
            "postgresql+psycopg://app@db/shop",
        ),
        ("postgresql+asyncpg://app@db/shop?timeout=2.5", "postgresql+psycopg://app@db/shop?connect_timeout=3"),
        # sync URLs, and what is not a URL, come back unchanged
        (
            "postgresql+psycopg://app@db/shop?options=-csearch_path%3Dx",
            "postgresql+psycopg://app@db/shop?options=-csearch_path%3Dx",
        ),
        ("postgresql://app@db/shop", "postgresql://app@db/shop"),
        ("sqlite:///app.db", "sqlite:///app.db"),
        ("mysql+pymysql://root@h/shop", "mysql+pymysql://root@h/shop"),
        ("not a url", "not a url"),
        ("", ""),
    ],
)
def test_sync_url(url: str, expected: str) -> None:
    assert sync_url(url) == expected


@pytest.mark.parametrize(
    "url, module",
    [
        ("postgresql+asyncpg://h/db", "psycopg"),
        ("sqlite+aiosqlite:///x.db", "sqlite3"),
        ("mysql+aiomysql://h/db", "pymysql"),
        ("postgresql+psycopg://h/db", "psycopg"),
        ("sqlite:///x.db", "sqlite3"),
        ("mssql+pymssql://h/db", None),  # a driver appshell names no module for
        ("nonsense", None),
    ],
)
def test_driver_module(url: str, module: str | None) -> None:
    assert driver_module(url) == module


@pytest.mark.parametrize(
    "url, missing, what, fix",
    [
        (
            "postgresql+asyncpg://h/db",
            "psycopg",
            "the database driver 'psycopg' is not installed (for postgresql+asyncpg:// URLs the SQL audit sink uses "
            "the sync driver of the same database)",
            "pip install 'appshell[postgres]'",
        ),
        (
            "mysql+asyncmy://h/db",
            "pymysql",
            "the database driver 'pymysql' is not installed (for mysql+asyncmy:// URLs the SQL audit sink uses the "
            "sync driver of the same database)",
            "pip install 'appshell[mysql]'",
        ),
        (
            "mysql+pymysql://h/db",
            "pymysql",
            "the database driver 'pymysql' is not installed",
            "pip install 'appshell[mysql]'",
        ),
        (
            "mssql+aioodbc://dsn",
            "pyodbc",
            "the database driver 'pyodbc' is not installed (for mssql+aioodbc:// "
            "URLs the SQL audit sink uses the sync driver of the same database)",
            "pip install pyodbc",
        ),
    ],
)
def test_missing_driver_names_the_fix(url: str, missing: str, what: str, fix: str) -> None:
    error = missing_driver(url, ModuleNotFoundError(f"No module named '{missing}'", name=missing), "the SQL audit sink")
    assert isinstance(error, DatabaseUnavailable) and error.exit_code == 2
    assert (error.what, error.fix) == (what, fix)
