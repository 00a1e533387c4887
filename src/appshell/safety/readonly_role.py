"""A read-only database role: the one level of read-only the operator cannot switch off (docs/safety.md).

A profile names an environment variable (``database.read_only_url_env``, e.g.
``DATABASE_URL_READONLY``) holding a URL whose user has only ``SELECT``
rights. In a read-only session every connection to that database — the
app's engine, Flask binds to it, engines libraries make later — logs in with
that URL's user and password (SQLAlchemy's ``do_connect`` event, on every
dialect). ``appshell doctor`` proves the role cannot write:
:func:`prove_cannot_write`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from appshell.errors import ConfigError

if TYPE_CHECKING:
    from appshell.config.settings import Settings

__all__ = ["read_only_url", "read_only_level", "use_role", "prove_cannot_write", "doctor_rows"]

_PROBE = "appshell_write_probe"


def read_only_url(settings: Settings) -> str | None:
    """The read-only role's URL, where the profile names one; a named but unset variable is an error."""
    name = settings.profile.database.read_only_url_env
    if not name:
        return None
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(
            f"profile '{settings.profile.name}' sets database.read_only_url_env = \"{name}\", but {name} is not set",
            f"set {name} to the URL of a database role with SELECT rights only",
        )
    return value


def read_only_level(settings: Settings) -> str | None:
    """How a session's read-only holds (docs/safety.md): "enforced" by a read-only role the operator cannot
    switch off, "guarded" by a session setting appshell re-checks after every statement it cannot prove
    harmless (an operator's SQL could switch it off; appshell then ends the session) — None when read-write."""
    if not settings.read_only:
        return None
    return "enforced" if read_only_url(settings) is not None else "guarded"


def _target(params: dict[str, Any]) -> tuple[str, str, str]:
    host = str(params.get("host") or "localhost").replace("127.0.0.1", "localhost")
    port = str(params.get("port") or "")
    database = str(params.get("dbname") or params.get("database") or params.get("db") or "")
    return host, port, database


def use_role(url: str) -> None:
    """Every new connection to the role's database logs in as the role (class-level ``do_connect``)."""
    from sqlalchemy import make_url

    from appshell.safety.engines import is_exempt, on_every_engine

    role = make_url(url)

    def do_connect(dialect: Any, conn_rec: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        if is_exempt(dialect) or dialect.name != role.get_backend_name():
            return
        _, wanted = dialect.create_connect_args(role.set(drivername=f"{dialect.name}+{dialect.driver}"))
        if _target(cparams)[2] != _target(wanted)[2] or _target(cparams)[0] != _target(wanted)[0]:
            return  # another database (a second bind): the session-level read-only still covers it
        for key in ("user", "password", "passwd"):
            cparams.pop(key, None)
        cparams.update({k: v for k, v in wanted.items() if k in ("user", "password", "passwd")})

    on_every_engine("do_connect", do_connect)


def prove_cannot_write(url: str) -> tuple[bool, str]:
    """Try to write as the role, and read its rights from the catalog: (True, why) only if it cannot."""
    from sqlalchemy import create_engine, text

    from appshell.config.urls import sync_url
    from appshell.safety.engines import exempt

    engine = create_engine(sync_url(url))  # an async driver's URL (asyncpg): the same database through its sync driver
    exempt(engine)  # the probe must meet the role's rights, not appshell's session-level read-only
    try:
        with engine.connect() as conn:
            user = conn.execute(
                text("SELECT current_user" if engine.dialect.name != "sqlite" else "SELECT 'sqlite'")
            ).scalar()
            problems = _catalog_problems(conn, engine.dialect.name)
            wrote = _try_write(conn, engine.dialect.name)
    finally:
        engine.dispose()
    if wrote:
        problems.insert(0, f"CREATE TABLE {_PROBE} succeeded (dropped again)")
    if problems:
        return False, f"role {user} can write: " + "; ".join(problems)
    return True, f"role {user} cannot write: CREATE TABLE refused, no INSERT/UPDATE/DELETE/CREATE rights in the catalog"


def _try_write(conn: Any, kind: str) -> bool:
    from sqlalchemy.exc import DBAPIError

    try:
        conn.exec_driver_sql(f"CREATE TABLE {_PROBE} (x integer)")
    except DBAPIError:
        conn.rollback()
        return False
    if kind in ("mysql", "mariadb"):
        conn.exec_driver_sql(f"DROP TABLE {_PROBE}")  # MySQL committed the CREATE: take it away again
    conn.rollback()
    return True


def _catalog_problems(conn: Any, kind: str) -> list[str]:
    from sqlalchemy import text

    if kind == "postgresql":
        tables = (
            conn.execute(
                text(
                    "SELECT n.nspname || '.' || c.relname "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') ORDER BY 1 LIMIT 5"
                )
            )
            .scalars()
            .all()
        )
        out = [f"may write {', '.join(tables)}"] if tables else []
        role = conn.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")).first()
        if role is not None and role[0]:
            out.append("it is a superuser")
        member = conn.execute(
            text(
                "SELECT string_agg(r.rolname, ', ') FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                "WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
            )
        ).scalar()
        if member:
            out.append(f"it is a member of {member} (SET ROLE may regain write rights)")
        return out
    if kind in ("mysql", "mariadb"):
        grants = [str(g) for (g,) in conn.execute(text("SHOW GRANTS FOR CURRENT_USER()"))]
        risky = ("ALL PRIVILEGES", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "SUPER")
        return [f"grant: {g}" for g in grants if any(word in g.upper().split(" ON ")[0] for word in risky)]
    return []


def doctor_rows(settings: Settings) -> Iterator[tuple[str, str, str]]:
    """For `appshell doctor`: the read-only role's proof, where the profile names one."""
    url = read_only_url(settings)
    if url is None:
        return
    ok, message = prove_cannot_write(url)
    yield "read-only role", "ok" if ok else "FAIL", message
