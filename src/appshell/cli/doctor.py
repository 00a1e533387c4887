"""`appshell doctor`: is this the right interpreter, release, config, database and audit? (docs/operations.md)

Each check is a small function returning rows; a row is (check, status, detail)
with status ``ok``, ``FAIL``, ``WARN`` or ``info``. Any FAIL makes the exit code 5 (EXIT_DOCTOR_FAILED); a WARN
names a power worth taking away (what the app's role can do outside the transaction) that
does not stop a session from running as it is.
"""
# Over 350 lines: one small function per check; together they are the table doctor prints.

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from appshell.boot.migrations import check_migrations
from appshell.config.redact import mask_mapping, mask_url
from appshell.console.render import table
from appshell.errors import EXIT_DOCTOR_FAILED, EXIT_OK, AppshellError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from appshell.boot.context import AppContext
    from appshell.config.settings import Settings

__all__ = ["run_doctor", "PACKAGES"]

Row = tuple[str, str, str]
PACKAGES = ("appshell", "SQLAlchemy", "ipython", "ptpython", "prompt-toolkit", "python-dotenv", "psycopg", "PyMySQL")


def _interpreter(settings: Settings) -> Iterator[Row]:
    from appshell.runtime.reexec import project_python, same_environment

    yield "interpreter", "info", f"{sys.executable} (Python {sys.version.split()[0]})"
    python = project_python(settings.project_root, os.environ)
    if python is None:
        yield "environment", "info", f"{sys.prefix} (the project has no .venv/ and APPSHELL_PYTHON is unset)"
    elif same_environment(python):
        yield "environment", "ok", f"{sys.prefix} is the project's environment"
    else:
        yield (
            "environment",
            "FAIL",
            f"{sys.prefix} is not the project's environment ({python}) — run appshell without --no-reexec",
        )


def _release(settings: Settings) -> Iterator[Row]:
    from appshell.boot.release import check_parity, release_id

    release = release_id(settings.project_root)
    parity = check_parity(release, settings.profile, settings.project_root)
    yield "release", "ok" if release != "unknown" else "info", release
    if parity.state in ("mismatch", "unknown"):
        yield "release parity", "FAIL", parity.describe(release)
    elif parity.state == "match":
        yield "release parity", "ok", f"same as the web process ({parity.source})"


def _packages(settings: Settings) -> Iterator[Row]:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    yield "packages", "info", ", ".join(found)


def _settings(settings: Settings) -> Iterator[Row]:
    shown = mask_mapping(settings.public())
    for name, value in shown.items():
        yield f"setting {name}", "info", f"{value!r} (from {settings.sources.get(name, 'default')})"
    profile = settings.profile
    files = ", ".join(str(p) for p in profile.sources)
    yield "profile", "ok", f"{profile.name}: {profile.description} ({files})"


def _database(ctx: AppContext, settings: Settings) -> Iterator[Row]:
    from sqlalchemy import text

    from appshell.safety.connection import backend
    from appshell.safety.database import ConnectionPlan, configure_connections

    url = mask_url(ctx.engine.url.render_as_string(hide_password=True))
    started = time.perf_counter()
    with ctx.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    yield "database", "ok", f"{url} reachable, {(time.perf_counter() - started) * 1000:.1f} ms"
    if not settings.read_only:
        yield "read-only", "info", "off (read-write)"
        return
    from appshell.safety.readonly_role import read_only_level

    kind = backend(ctx.engine)
    configure_connections(ctx.engine, ConnectionPlan(read_only=True))
    probe = {
        "sqlite": "PRAGMA query_only",
        "postgresql": "SHOW transaction_read_only",
        "mariadb": "SELECT @@tx_read_only",
    }.get(kind, "SELECT @@transaction_read_only")  # MariaDB < 11.1: no transaction_read_only
    with ctx.engine.connect() as conn:
        value = str(conn.exec_driver_sql(probe).scalar()).lower()
    in_force = value in ("1", "on", "true")
    yield (
        "read-only",
        "ok" if in_force else "FAIL",
        f"{probe} = {value}" + ("" if in_force else " — the database does not enforce it"),
    )
    level = read_only_level(settings)
    if level == "enforced":
        yield (
            "read-only level",
            "ok",
            (
                "enforced: sessions log in as the read-only role database.read_only_url_env names — the "
                "'read-only role' row says whether that role can write"
            ),
        )
    elif settings.profile.database.read_only:
        # The profile means every session to be read-only: a setting
        # the operator's own SQL can lift is the weaker level.
        yield (
            "read-only level",
            "WARN",
            (
                f"guarded: a session setting appshell re-checks after every statement, which the operator's "
                f"SQL can switch off (the session then ends) — for enforced read-only, set "
                f"database.read_only_url_env in profile {settings.profile.name} to a variable holding a "
                "read-only role's URL (docs/safety.md)"
            ),
        )
    else:
        yield (
            "read-only level",
            "info",
            "guarded: a session setting appshell re-checks after every statement (--read-only)",
        )


def _powers(ctx: AppContext) -> Iterator[Row]:
    """What the app's role can do outside the session's transaction (appshell.safety.powers): a WARN each."""
    from appshell.safety.powers import powers

    with ctx.engine.connect() as conn:
        found = powers(conn)
    if found is None:
        return
    user, held = found
    for power in held:
        yield f"role power: {power.name}", "WARN", power.detail
    if not held:
        yield (
            "role powers",
            "ok",
            (
                f"{user} cannot reach past the transaction: no superuser, dblink, postgres_fdw, server files or "
                "programs, lo_export, or CREATE on the database"
                if ctx.engine.dialect.name == "postgresql"
                else f"{user} holds none of FILE, EVENT, SUPER, CREATE"
            ),
        )


def _audit_policy(settings: Settings) -> Iterator[Row]:
    """Does the run follow the profile's audit policy (audit.locked, audit.required)?"""
    for problem in settings.audit_problems:
        yield "audit policy", "FAIL", f"{problem.what} — {problem.fix}"
    if not settings.audit_problems:
        profile = settings.profile
        locked = "locked by the profile" if profile.audit.locked else "flags and environment may change it"
        yield (
            "audit policy",
            "ok",
            f"profile '{profile.name}': {'required' if profile.audit.required else 'best-effort'}, {locked}",
        )


def _audit(settings: Settings, database_url: str) -> Iterator[Row]:
    from appshell.audit.auditor import audit_url

    profile = settings.profile
    required = "required" if profile.audit.required else "best-effort"
    for kind in profile.audit.sinks:
        try:
            detail = _probe_sink(kind, settings, database_url)
        except AppshellError as exc:  # it knows its fix (a driver to install)
            yield f"audit sink {kind}", "FAIL", f"{mask_url(exc.what)} — {exc.fix} ({required})"
            continue
        except Exception as exc:
            yield f"audit sink {kind}", "FAIL", f"{type(exc).__name__}: {mask_url(str(exc))} ({required})"
            continue
        yield f"audit sink {kind}", "ok", f"{detail} ({required})"
        if kind == "sql" and profile.audit.required:
            yield _guarded("audit sql rights", lambda: iter([_sql_rights(audit_url(settings, database_url))]))[0]
        if kind == "sql":
            yield from _guarded("audit sql schema", lambda: _sql_schema(audit_url(settings, database_url)))
    if not profile.audit.sinks:
        yield "audit", "FAIL" if profile.audit.required else "info", "no sinks: statements are not audited"


def _sql_rights(url: str) -> Row:
    """Could the connection that writes the SQL sink's records delete or change them?

    A witness the operator can rewrite witnesses nothing: where the audit is required, the
    sink's role must be able to INSERT and SELECT only (docs/audit.md has the recipe).
    """
    from appshell.audit.sqlsink import audit_engine, schema_of

    engine = audit_engine(url)  # as the sink connects: an async URL's sync driver
    try:
        with engine.connect() as conn:
            kind = conn.dialect.name
            if kind == "postgresql":
                problems = _postgresql_rights(conn, schema_of(url) or "public")
            elif kind in ("mysql", "mariadb"):
                problems = _mysql_rights(conn)
            elif kind == "sqlite":
                problems = [
                    "SQLite has no privileges: whoever can write the database file can delete or change records"
                ]
            else:
                return "audit sql rights", "info", f"privileges not checked on {kind}"
    finally:
        engine.dispose()
    if problems:
        fix = (
            "write the records as a role with INSERT and SELECT only on a table another role owns "
            "(docs/audit.md: the INSERT-only role)"
        )
        return "audit sql rights", "FAIL", "; ".join(problems) + f" — {fix}"
    return "audit sql rights", "ok", "the sink's role can only INSERT and SELECT appshell_audit"


def _qualified(conn: Connection, schema: str) -> str:
    """schema.appshell_audit, quoted where needed, for to_regclass."""
    from appshell.audit.sqlsink import TABLE

    preparer = conn.dialect.identifier_preparer
    return f"{preparer.quote_schema(schema)}.{preparer.quote(TABLE)}"


def _postgresql_rights(conn: Connection, schema: str) -> list[str]:
    from sqlalchemy import text

    name = _qualified(conn, schema)
    row = conn.execute(
        text(
            "SELECT current_user, r.rolsuper,"
            " pg_has_role(current_user, c.relowner, 'MEMBER'), pg_has_role(current_user, n.nspowner, 'MEMBER'),"
            " has_table_privilege(c.oid, 'DELETE'), has_table_privilege(c.oid, 'UPDATE'),"
            " has_table_privilege(c.oid, 'TRUNCATE'), has_table_privilege(c.oid, 'TRIGGER')"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles r ON r.rolname = current_user"
            " WHERE c.oid = to_regclass(:name)"
        ),
        {"name": name},
    ).first()
    if row is None:
        user = conn.execute(text("SELECT current_user")).scalar()
        return [
            f"table {schema}.appshell_audit does not exist yet: the sink would create it as {user}, who would own it"
        ]
    user, superuser, owner, schema_owner, *rights = row
    if superuser:
        return [f"{user} is a superuser"]
    found = [f"{user} owns appshell_audit (or is a member of its owner)"] if owner else []
    if schema_owner:
        found.append(f"{user} owns its schema (and can drop it)")
    held = [name for name, has in zip(("DELETE", "UPDATE", "TRUNCATE", "TRIGGER"), rights) if has]
    if held:
        found.append(f"{user} holds {', '.join(held)} on appshell_audit")
    return found


# MySQL/MariaDB privileges that delete, change or replace rows of an existing table.
_MYSQL_RISKY = ("ALL PRIVILEGES", "DELETE", "UPDATE", "DROP", "ALTER", "TRIGGER", "DELETE HISTORY")


def _mysql_rights(conn: Connection) -> list[str]:
    """SHOW GRANTS for the user and the roles it holds; grants on *.*, the database, or the table."""
    from appshell.safety.powers import mysql_grants

    user = conn.exec_driver_sql("SELECT CURRENT_USER()").scalar()
    held = {name for name, _ in mysql_grants(conn, tables=("appshell_audit",)) if name in _MYSQL_RISKY}
    return [f"{user} holds {', '.join(sorted(held))} on appshell_audit"] if held else []


def _sql_schema(url: str) -> Iterator[Row]:
    """PostgreSQL: could the sink's table be shadowed for anyone who names it without its schema?

    appshell writes and reads schema.appshell_audit on a pinned search_path, so a schema named
    after a role ("$user", first in its search_path) no longer catches the records; psql, an
    older appshell, or an auditor's own query that says only "appshell_audit" would still be
    led there. Hence: no CREATE on the database for the sink's role, and no other table that
    an unqualified name finds first.
    """
    from sqlalchemy import text

    from appshell.audit.sqlsink import TABLE, audit_engine, schema_of

    engine = audit_engine(url)
    schema = schema_of(url) or "public"
    try:
        with engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                return
            user, database, create = conn.execute(
                text("SELECT current_user, current_database(), has_database_privilege(current_database(), 'CREATE')")
            ).one()
            conn.exec_driver_sql(
                "RESET search_path"
            )  # the role's own search_path, as psql would have it (the sink pins its own)
            found = conn.execute(
                text(
                    "SELECT n.nspname FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE c.oid = to_regclass(:t)"
                ),
                {"t": TABLE},
            ).scalar()
            conn.rollback()
    finally:
        engine.dispose()
    if found is not None and found != schema:
        yield (
            "audit sql table",
            "WARN",
            f"for {user}, an unqualified {TABLE} is {found}.{TABLE}, not {schema}.{TABLE}: appshell writes and reads "
            f"only {schema}.{TABLE}, but psql, an older appshell and an auditor's own query "
            "that names the table without its schema "
            f"meet the other one — see who owns schema {found} and what is in it, then drop it",
        )
    if create:
        yield (
            "audit sql schema",
            "WARN",
            f'the sink\'s role {user} may CREATE schemas in database {database}: one named after a role ("$user", '
            f"first in its search_path) would stand in for {TABLE} wherever that role names it without its schema — "
            f"REVOKE CREATE ON DATABASE {database} FROM PUBLIC, {user} (docs/audit.md: the INSERT-only role)",
        )
    elif found is None or found == schema:
        yield (
            "audit sql schema",
            "ok",
            f"{user} cannot CREATE schemas in {database}; the table is {schema}.{TABLE}, qualified and pinned",
        )


def _probe_sink(kind: str, settings: Settings, database_url: str) -> str:
    """Can the sink be written? Without writing a record: that would extend the chain."""
    from appshell.audit.auditor import audit_url, default_log_path, syslog_address

    if kind == "file":
        path = default_log_path(settings)
        target = path if path.exists() else next(p for p in path.parents if p.exists())
        if path.exists() and not path.is_file():
            raise IsADirectoryError(f"{path} is not a file")
        if not os.access(target, os.W_OK):
            raise PermissionError(f"{target} is not writable")
        return f"{path} writable"
    if kind == "sql":
        from sqlalchemy import inspect

        from appshell.audit.sqlsink import TABLE, audit_engine, schema_of

        url = audit_url(settings, database_url)
        schema = schema_of(url)
        engine = audit_engine(url)  # as the sink connects: an async URL's sync driver
        try:
            exists = inspect(engine).has_table(TABLE, schema=schema)
        finally:
            engine.dispose()
        name = f"{schema}.{TABLE}" if schema else TABLE
        return f"{mask_url(url)}: table {name} {'exists' if exists else 'will be created'}"
    from appshell.audit.sinks import SyslogSink

    address = syslog_address(settings)
    SyslogSink(address).close()  # connecting is the check: the sink's own address parsing
    return f"{address} reachable"


def _protected(settings: Settings, ctx: AppContext) -> Iterator[Row]:
    """Can the role a session reads with read the protected columns? (appshell.console.protect: enforced or guarded)"""
    from appshell.console.protect_report import doctor_rows

    yield from doctor_rows(settings, ctx)


def _session(ctx: AppContext) -> Iterator[Row]:
    """A real query through the session the shell hands out (an app's unbound factory is caught here, not at
    the operator's first query); a WARN where appshell made its own engine beside the app's."""
    from appshell.boot.context import check_session
    from appshell.boot.engine import own_engine_note

    problem = check_session(ctx)
    if problem:
        yield (
            "session",
            "FAIL",
            f"{problem} — the shell's session cannot query its database: check the session --app gives",
        )
    else:
        yield "session", "ok", "SELECT 1 through the session the shell hands out"
    note = own_engine_note(ctx)
    if note:
        yield "engine", "WARN", note


def _guarded(name: str, check: Callable[[], Iterator[Row]]) -> list[Row]:
    try:
        return list(check())
    except AppshellError as exc:
        return [(name, "FAIL", f"{exc.what} — {exc.fix}")]
    except Exception as exc:
        return [(name, "FAIL", f"{type(exc).__name__}: {mask_url(str(exc)).splitlines()[0] if str(exc) else ''}")]


def _app_io(check: Callable[[], Iterator[Row]]) -> Callable[[], Iterator[Row]]:
    """*check* run where the app's engine can do its IO: an async app's sync core connects inside
    SQLAlchemy's greenlet on the session's loop (docs/design.md §8); a sync app's, as it is."""
    from appshell.hooks import aio

    return lambda: iter(aio.sync_io(lambda: list(check())))


def _boot_rows(settings: Settings) -> tuple[list[Row], AppContext | None]:
    from appshell.boot.context import boot
    from appshell.errors import AppCrashed

    try:
        ctx = boot(settings)
    except AppshellError as exc:
        return [("app", "FAIL", f"{exc.what} — {exc.fix}")], None
    except AppCrashed as crash:
        return [("app", "FAIL", f"{crash.what}: {type(crash.exc).__name__}: {crash.exc}")], None
    return [("app", "ok", f"{ctx.label}: {len(ctx.models)} models")], ctx


def run_doctor(settings: Settings, as_json: bool) -> int:
    rows: list[Row] = []
    rows += _guarded("interpreter", lambda: _interpreter(settings))
    rows += _guarded("release", lambda: _release(settings))
    rows += _guarded("packages", lambda: _packages(settings))
    rows += _guarded("settings", lambda: _settings(settings))
    boot_rows, ctx = _boot_rows(settings)
    rows += boot_rows
    database_url = settings.database_url or ""
    if ctx is not None:
        try:
            database_url = ctx.engine.url.render_as_string(hide_password=False)
            rows += _guarded("database", _app_io(lambda: _database(ctx, settings)))
            rows += _guarded("session", _app_io(lambda: _session(ctx)))
            rows += _guarded("role powers", _app_io(lambda: _powers(ctx)))
            rows += _guarded("protected data", _app_io(lambda: _protected(settings, ctx)))
            rows += _guarded("migrations", _app_io(lambda: check_migrations(ctx, settings)))
        finally:
            from appshell.hooks import aio

            try:
                ctx.close()
            finally:
                aio.close()  # the loop an async app's boot made
    from appshell.safety.readonly_role import doctor_rows as read_only_role_rows

    rows += _guarded("read-only role", lambda: read_only_role_rows(settings))
    rows += _guarded("audit policy", lambda: _audit_policy(settings))
    rows += _guarded("audit", lambda: _audit(settings, database_url))
    failed = [r for r in rows if r[1] == "FAIL"]
    if as_json:
        print(
            json.dumps(
                {"ok": not failed, "checks": [{"check": c, "status": s, "detail": d} for c, s, d in rows]}, indent=2
            )
        )
    else:
        print(table(["check", "status", "detail"], [list(r) for r in rows], max_cell=400))
        print(f"{len(failed)} problem(s) found" if failed else "all checks passed")
    return EXIT_DOCTOR_FAILED if failed else EXIT_OK  # its own code: 1 is "your code raised"
