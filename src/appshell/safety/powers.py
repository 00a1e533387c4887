"""What a database role can do outside the session's transaction, for `appshell doctor` (issue 21).

The sandbox and read-only live in one transaction on one connection. A role that can make
the *server* act on its behalf — open a connection of its own (dblink), run a program or write
a file (``COPY … TO PROGRAM``, ``lo_export``, ``INTO OUTFILE``), schedule a statement for later
(``CREATE EVENT``) — reaches past both, and appshell cannot see it happen (docs/safety.md, "What
appshell cannot prevent"). Nothing here refuses anything: doctor names each such power with why
it matters and the statement that removes it.

Each dialect has one reader that asks the catalog (one query on PostgreSQL; ``SHOW GRANTS`` and
the roles it names on MySQL/MariaDB) and one pure function from those facts to :class:`Power`
rows, which the tests drive with tables.
"""
# Over 350 lines: per dialect, a catalog reader and a table from facts to rows, each row with its why and fix.

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = [
    "Power",
    "PgFacts",
    "MysqlFacts",
    "powers",
    "postgresql_powers",
    "mysql_powers",
    "read_postgresql",
    "read_mysql",
    "mysql_grants",
    "mysql_pattern_covers",
    "PG_SERVER_ROLES",
    "DBLINK_RUNNERS",
]


@dataclass(frozen=True)
class Power:
    """One thing the role can do outside the transaction: what it holds, why that matters, the fix."""

    name: str
    held: str
    why: str
    fix: str

    @property
    def detail(self) -> str:
        return f"{self.held}: {self.why} — {self.fix}"


# -- PostgreSQL ---------------------------------------------------------------------------------

# Built-in roles whose members the server lets touch its own files and programs (PostgreSQL 11+).
PG_SERVER_ROLES = ("pg_execute_server_program", "pg_write_server_files", "pg_read_server_files")
# dblink's functions that run a statement on a connection it opens (or names).
DBLINK_RUNNERS = ("dblink", "dblink_exec", "dblink_send_query", "dblink_open", "dblink_connect", "dblink_connect_u")


@dataclass(frozen=True)
class PgFacts:
    user: str
    database: str
    superuser: bool = False
    owns_database: bool = False
    create_on_database: bool = False
    dblink_schema: str | None = None  # where the extension is installed; None: not installed
    dblink_usable: tuple[str, ...] = ()  # DBLINK_RUNNERS the role may call (USAGE on the schema, EXECUTE)
    fdw_schema: str | None = None  # postgres_fdw installed in this schema; None: not installed
    fdw_usage: bool = False  # USAGE on the wrapper: the role may create servers of its own
    fdw_servers: tuple[str, ...] = ()  # postgres_fdw servers the role may use
    server_roles: tuple[str, ...] = ()  # PG_SERVER_ROLES the role is a member of
    lo_export: bool = False  # EXECUTE on the server-side lo_export(oid, text)


_PG_QUERY = """
SELECT current_user, current_database(), r.rolsuper,
  pg_has_role(current_user, d.datdba, 'MEMBER'),
  has_database_privilege(current_database(), 'CREATE'),
  (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'),
  ARRAY(SELECT DISTINCT p.proname::text FROM pg_proc p
        JOIN pg_depend dep ON dep.classid = 'pg_proc'::regclass AND dep.objid = p.oid AND dep.deptype = 'e'
        JOIN pg_extension e ON e.oid = dep.refobjid AND e.extname = 'dblink'
        WHERE p.proname = ANY(:runners) AND has_function_privilege(p.oid, 'EXECUTE')
          AND has_schema_privilege(p.pronamespace, 'USAGE') ORDER BY 1),
  (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'postgres_fdw'),
  COALESCE((SELECT has_foreign_data_wrapper_privilege(w.oid, 'USAGE') FROM pg_foreign_data_wrapper w
            WHERE w.fdwname = 'postgres_fdw'), false),
  ARRAY(SELECT s.srvname::text FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
        WHERE w.fdwname = 'postgres_fdw' AND has_server_privilege(s.oid, 'USAGE') ORDER BY 1),
  ARRAY(SELECT g.rolname::text FROM pg_roles g WHERE g.rolname = ANY(:server_roles)
        AND pg_has_role(current_user, g.oid, 'MEMBER') ORDER BY 1),
  has_function_privilege('pg_catalog.lo_export(oid, text)', 'EXECUTE')
FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()
"""


def read_postgresql(conn: Connection) -> PgFacts:
    """The facts, in one round trip; every object named with its schema (no search_path involved)."""
    from sqlalchemy import text

    row = conn.execute(text(_PG_QUERY), {"runners": list(DBLINK_RUNNERS), "server_roles": list(PG_SERVER_ROLES)}).one()
    return PgFacts(
        user=row[0],
        database=row[1],
        superuser=bool(row[2]),
        owns_database=bool(row[3]),
        create_on_database=bool(row[4]),
        dblink_schema=row[5],
        dblink_usable=tuple(row[6]),
        fdw_schema=row[7],
        fdw_usage=bool(row[8]),
        fdw_servers=tuple(row[9]),
        server_roles=tuple(row[10]),
        lo_export=bool(row[11]),
    )


def _ident(name: str) -> str:
    """*name* as SQL would need it written (quoted where a bare word would fold or fail)."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def postgresql_powers(f: PgFacts) -> list[Power]:
    """Each power the facts show; a superuser's is one row, since it implies all the others."""
    user, db = _ident(f.user), _ident(f.database)
    if f.superuser:
        return [
            Power(
                "superuser",
                f"{f.user} is a superuser",
                "it holds every power doctor checks for, and more — run "
                "programs on the database server (COPY … TO PROGRAM), "
                "read and write its files, open connections outside the "
                "sandbox and read-only (dblink), change server settings",
                "connect the app as a role without SUPERUSER "
                f"(ALTER ROLE {user} NOSUPERUSER, once it is granted what the app needs)",
            )
        ]
    found: list[Power] = []
    if f.dblink_schema is not None and f.dblink_usable:
        schema = _ident(f.dblink_schema)
        found.append(
            Power(
                "dblink",
                f"dblink is installed in schema {f.dblink_schema} and {f.user} may call {', '.join(f.dblink_usable)}",
                "dblink can run statements on a new connection, outside "
                "the sandbox and read-only: they commit at once, "
                "and the dry-run summary does not see them",
                "DROP EXTENSION dblink where the app does not use it; else keep it in a schema of its own "
                "(CREATE SCHEMA dblink; ALTER EXTENSION dblink SET SCHEMA dblink) and REVOKE USAGE ON SCHEMA "
                f"{'dblink' if schema == 'public' else schema} FROM PUBLIC, {user}",
            )
        )
    if f.fdw_schema is not None and (f.fdw_usage or f.fdw_servers):
        what = [
            *(["may create foreign servers (USAGE on the wrapper)"] if f.fdw_usage else []),
            *([f"may use foreign server(s) {', '.join(f.fdw_servers)}"] if f.fdw_servers else []),
        ]
        fix = [
            *(["REVOKE USAGE ON FOREIGN DATA WRAPPER postgres_fdw FROM PUBLIC, " + user] if f.fdw_usage else []),
            *([f"REVOKE USAGE ON FOREIGN SERVER {_ident(s)} FROM PUBLIC, {user}" for s in f.fdw_servers]),
        ]
        found.append(
            Power(
                "postgres_fdw",
                f"postgres_fdw is installed and {f.user} {' and '.join(what)}",
                "its foreign tables write on another connection, as "
                "the user mapping's user: the dry-run summary does not "
                "count those rows, and that user's rights, not this role's, decide what they may write "
                "(its transaction does follow this one's commit or rollback)",
                "; ".join(fix) + " (or DROP EXTENSION postgres_fdw where the app does not use it)",
            )
        )
    why = {
        "pg_execute_server_program": (
            "COPY … TO/FROM PROGRAM runs shell commands as the database server's OS user: they take effect at once, "
            "outside the sandbox and read-only (psql back into the database included)"
        ),
        "pg_write_server_files": (
            "COPY … TO 'file' writes files on the database server, in a read-only transaction too; "
            "no rollback takes them back"
        ),
        "pg_read_server_files": (
            "COPY … FROM 'file' and pg_read_file read any file the database server's OS user can, "
            "its configuration and keys included"
        ),
    }
    for role in f.server_roles:
        found.append(
            Power(
                role,
                f"{f.user} is a member of {role}",
                why[role],
                f"REVOKE {role} FROM {user} (or from the role it inherits it through)",
            )
        )
    if f.lo_export:
        found.append(
            Power(
                "lo_export",
                f"{f.user} may execute lo_export(oid, text)",
                "lo_export writes a large object to a file on the "
                "database server at once; no rollback takes the file back",
                f"REVOKE EXECUTE ON FUNCTION lo_export(oid, text) FROM PUBLIC, {user}",
            )
        )
    if f.create_on_database:
        owner = (
            (
                f"; it owns database {f.database}, and an owner can grant the right back: make another role the owner "
                f"(ALTER DATABASE {db} OWNER TO …)"
            )
            if f.owns_database
            else ""
        )
        found.append(
            Power(
                "CREATE on the database",
                f"{f.user} may CREATE schemas in database {f.database}",
                "a schema named after a role comes first in that role's "
                'search_path ("$user"), so its tables stand in for '
                "the ones that role's unqualified names meant — the app's own queries, psql, an audit table",
                f"REVOKE CREATE ON DATABASE {db} FROM PUBLIC, {user}{owner}",
            )
        )
    return found


# -- MySQL / MariaDB ----------------------------------------------------------------------------


def mysql_pattern_covers(target: str, database: str) -> bool:
    """Does a database-level grant target like `shop\\_%`.* (LIKE wildcards) cover *database*?"""
    match = re.fullmatch(r"`((?:[^`]|``)*)`\.\*", target)
    if match is None:
        return False
    pattern = "".join(
        ".*" if part == "%" else "." if part == "_" else re.escape(part[-1])
        for part in re.findall(r"\\.|%|_|.", match[1].replace("``", "`"))
    )
    return re.fullmatch(pattern, database) is not None


def mysql_grants(conn: Connection, tables: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(privilege, target) from SHOW GRANTS for the user and every role it holds, for grants on
    *.*, the current database (or a pattern covering it), or one of *tables* in it."""
    database = conn.exec_driver_sql("SELECT DATABASE()").scalar() or ""
    targets = {"*.*", f"`{database}`.*", *(f"`{database}`.`{t}`" for t in tables)}
    queue, seen, held = ["SHOW GRANTS"], set(), []
    while queue:
        statement = queue.pop()
        if statement in seen:
            continue
        seen.add(statement)
        for (line,) in conn.exec_driver_sql(statement):
            grant = re.match(r"GRANT (?P<privs>.+?) ON (?P<target>\S+) TO ", line)
            if grant is None:
                role = re.match(r"GRANT (?P<role>`[^`]+`(?:@`[^`]*`)?) TO ", line)
                if role:
                    queue.append(f"SHOW GRANTS FOR {role['role']}")
                continue
            if grant["target"] not in targets and not mysql_pattern_covers(grant["target"], database):
                continue
            for priv in grant["privs"].split(","):
                held.append((re.sub(r"\s*\(.*", "", priv.strip().upper()), grant["target"]))
    return held


@dataclass(frozen=True)
class MysqlFacts:
    user: str
    database: str
    grants: tuple[tuple[str, str], ...] = ()  # (privilege, target) as mysql_grants reads them
    event_scheduler: str = "OFF"
    secure_file_priv: str | None = (
        None  # where the server reads and writes files (NULL means "nowhere" to MySQL, "anywhere" to MariaDB)
    )


def read_mysql(conn: Connection) -> MysqlFacts:
    user = str(conn.exec_driver_sql("SELECT CURRENT_USER()").scalar())
    database = str(conn.exec_driver_sql("SELECT DATABASE()").scalar() or "")
    scheduler, secure = conn.exec_driver_sql("SELECT @@event_scheduler, @@secure_file_priv").one()
    return MysqlFacts(
        user, database, tuple(mysql_grants(conn)), str(scheduler), None if secure is None else str(secure)
    )


def _holding(f: MysqlFacts, privilege: str, global_only: bool = False) -> list[str]:
    """The targets through which the role holds *privilege* (ALL PRIVILEGES included)."""
    return sorted(
        {t for p, t in f.grants if p in (privilege, "ALL PRIVILEGES", "ALL") and (t == "*.*" or not global_only)}
    )


def mysql_powers(f: MysqlFacts) -> list[Power]:
    user = "'{}'@'{}'".format(*f.user.rsplit("@", 1)) if "@" in f.user else f"'{f.user}'"
    found: list[Power] = []

    def revoke(privilege: str, targets: list[str]) -> str:
        return "; ".join(f"REVOKE {privilege} ON {t} FROM {user}" for t in targets) + (
            " (ALL PRIVILEGES holds it: grant the privileges the app needs instead)"
            if any(p in ("ALL PRIVILEGES", "ALL") for p, _ in f.grants)
            else ""
        )

    if targets := _holding(f, "FILE", global_only=True):
        where = "NULL" if f.secure_file_priv is None else repr(f.secure_file_priv)
        found.append(
            Power(
                "FILE",
                f"{f.user} holds FILE",
                "SELECT … INTO OUTFILE writes files on the database server (in "
                "a read-only transaction too; no rollback takes them back) "
                f"and LOAD_FILE reads them, where secure_file_priv (now {where}) allows",
                revoke("FILE", targets),
            )
        )
    if targets := _holding(f, "EVENT"):
        found.append(
            Power(
                "EVENT",
                f"{f.user} holds EVENT on {', '.join(targets)}",
                "CREATE EVENT schedules statements the server runs later on "
                "a connection of its own, after the session and outside its "
                f"sandbox (event_scheduler is {f.event_scheduler}); the CREATE commits the open transaction first",
                revoke("EVENT", targets),
            )
        )
    if targets := _holding(f, "SUPER", global_only=True):
        found.append(
            Power(
                "SUPER",
                f"{f.user} holds SUPER",
                "it can change global settings (SET GLOBAL read_only, "
                "event_scheduler, the binary log) and end other sessions' connections",
                revoke("SUPER", targets),
            )
        )
    if targets := _holding(f, "CREATE"):
        found.append(
            Power(
                "CREATE",
                f"{f.user} holds CREATE on {', '.join(targets)}",
                "MySQL/MariaDB commit the open transaction before CREATE "
                "TABLE (an implicit commit): a sandbox's changes so far "
                "are kept",
                revoke("CREATE", targets),
            )
        )
    return found


# -- both ---------------------------------------------------------------------------------------


def powers(conn: Connection) -> tuple[str, list[Power]] | None:
    """(the role, its powers) on PostgreSQL or MySQL/MariaDB; None where there is nothing to ask (SQLite, others)."""
    kind = conn.dialect.name
    if kind == "postgresql":
        pg = read_postgresql(conn)
        return pg.user, postgresql_powers(pg)
    if kind in ("mysql", "mariadb"):
        my = read_mysql(conn)
        return my.user, mysql_powers(my)
    return None
