"""The synchronous URL for an async driver's: appshell's own short-lived engines (the SQL audit
sink and its readers, doctor's probes) are synchronous, whatever the app's engine is.

``postgresql+asyncpg://…`` becomes ``postgresql+psycopg://…`` — the same database, user,
password and host, through the sync driver of the same database. Options only the async
driver knows are translated (asyncpg's ``ssl`` is libpq's ``sslmode``) or dropped (its
statement cache); a URL that names no async driver comes back unchanged, character for character.
"""

from __future__ import annotations

import math

from appshell.errors import DatabaseUnavailable

__all__ = ["SYNC_DRIVERS", "sync_url", "driver_module", "missing_driver"]

# (backend, async driver) -> the sync driver of the same database.
SYNC_DRIVERS = {
    ("postgresql", "asyncpg"): "psycopg",
    ("postgresql", "psycopg_async"): "psycopg",
    ("sqlite", "aiosqlite"): "pysqlite",
    ("mysql", "aiomysql"): "pymysql",
    ("mysql", "asyncmy"): "pymysql",
    ("mariadb", "aiomysql"): "pymysql",
    ("mariadb", "asyncmy"): "pymysql",
    ("oracle", "oracledb_async"): "oracledb",
    ("mssql", "aioodbc"): "pyodbc",
}

# The module each sync driver imports, and how to get it.
_MODULES = {
    "psycopg": "psycopg",
    "pysqlite": "sqlite3",
    "pymysql": "pymysql",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
}
_INSTALL = {"psycopg": "pip install 'appshell[postgres]'", "pymysql": "pip install 'appshell[mysql]'"}

# asyncpg's connect() arguments that libpq (psycopg) spells otherwise, or has no use for here.
_ASYNCPG_RENAMED = {"ssl": "sslmode"}
_ASYNCPG_DROPPED = ("prepared_statement_cache_size", "prepared_statement_name_func", "command_timeout")


def sync_url(url: str) -> str:
    """*url* with its async driver replaced by the same database's sync one; any other URL unchanged."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # not a URL: create_engine says so, as it would have
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    sync = SYNC_DRIVERS.get((backend, driver))
    if sync is None:
        return url
    parsed = parsed.set(drivername=f"{backend}+{sync}")
    if driver == "asyncpg":
        query = {_ASYNCPG_RENAMED.get(k, k): v for k, v in parsed.query.items() if k not in _ASYNCPG_DROPPED}
        if "timeout" in query:  # asyncpg's connect timeout in seconds (a float); libpq's is whole seconds
            query["connect_timeout"] = str(math.ceil(float(str(query.pop("timeout")))))
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=False)


def driver_module(url: str) -> str | None:
    """The module the sync driver of *url* imports (``psycopg`` for a ``postgresql+asyncpg`` URL)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return _MODULES.get(make_url(sync_url(url)).get_driver_name())
    except ArgumentError:
        return None


def missing_driver(url: str, exc: ModuleNotFoundError, what: str) -> DatabaseUnavailable:
    """The one-line error for a sync driver that is not installed, naming the package that brings it."""
    module = exc.name or driver_module(url) or "the driver"
    scheme = url.split("://", 1)[0]
    fix = _INSTALL.get(module, f"pip install {module}")
    because = (
        f" (for {scheme}:// URLs {what} uses the sync driver of the same database)"
        if scheme != sync_url(url).split("://", 1)[0]
        else ""
    )
    return DatabaseUnavailable(f"the database driver '{module}' is not installed{because}", fix)
