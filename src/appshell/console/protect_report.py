"""``appshell protected`` (what each table protects, and why) and doctor's rows on protected data: whether the
role the session reads with can read the protected columns (column grants: enforced by the database)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from appshell.console.protect import Protection, Rules, tables_of

if TYPE_CHECKING:
    from appshell.config.profiles import Profile

__all__ = ["listing", "report", "prove_column_grants", "doctor_rows"]


# -- appshell protected -------------------------------------------------------------


def listing(rules: Rules, tables: Iterable[Any]) -> list[list[str]]:
    """Every protected column of *tables*, with why: ``[["customers.email", "protect.columns '…'"], …]``."""
    protection = Protection(rules)
    rows = []
    for table in sorted(tables, key=lambda t: str(t.fullname)):
        for name, why in protection.table(table).items():
            rows.append([f"{table.fullname}.{name}", "; ".join(why)])
    return rows


def report(profile: Profile, models: Iterable[type], metadata: Any = None, as_json: bool = False) -> str:
    """``appshell protected``: every protected column of the app, why, and what the profile does with them."""
    rules = Rules.of(profile)
    rows = listing(rules, tables_of(models, metadata))
    if as_json:
        import json

        return json.dumps(
            {
                "profile": profile.name,
                "enabled": rules.enabled,
                "columns": [{"column": c, "why": w} for c, w in rows],
                "hosts": list(rules.hosts),
            }
        )
    from appshell.console.render import table

    if rules.enabled and rules.column_grants:
        state = (
            "the role sessions read with is declared to have no SELECT on "
            "them (protect.column_grants): ORM queries leave them out, "
            "the database refuses the rest — enforced where its grants hold (docs/safety.md)"
        )
    elif rules.enabled:
        state = (
            "masked in every output until unlock(reason), which is recorded: a guard against accidental exposure, "
            "not enforcement — Python code in the session can read them (docs/safety.md)"
        )
    else:
        state = "not masked: protect.enabled is off in this profile (a profile that turns it on masks these)"
    if rules.hosts:
        refused = "refused until unlock(reason)" if rules.enabled else "not refused: protect.enabled is off"
        state += f"\nprotected hosts ({refused}): {', '.join(rules.hosts)}"
    return table(["column", "why"], rows, f"protected columns — profile {profile.name}", max_cell=400) + f"\n{state}"


# -- enforced by the database: column grants (doctor) ---------------------------------


def _refused(exc: BaseException) -> bool:
    """The database refused for want of a privilege (PostgreSQL 42501; MySQL/MariaDB 1142, 1143)."""
    orig = getattr(exc, "orig", None)
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    if args and isinstance(args[0], int):  # MySQL/MariaDB drivers: (errno, message)
        return args[0] in (1142, 1143)
    return str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)) == "42501"


def prove_column_grants(url: str, columns: Sequence[str]) -> tuple[bool | None, str]:
    """Read each protected column (``table.column``) as the role of *url*: (True, why) where every read is
    refused by the database, (False, which it can read), (None, why it cannot tell) — SQLite has no grants."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import DBAPIError

    from appshell.config.urls import sync_url
    from appshell.safety.engines import exempt

    engine = create_engine(sync_url(url))
    exempt(engine)  # the probe meets the role's own rights, not appshell's session settings
    readable: list[str] = []
    refused: list[str] = []
    unknown: list[str] = []
    try:
        if engine.dialect.name == "sqlite":
            return None, "SQLite has no column grants: protected data is masked in Python only (guarded)"
        quote = engine.dialect.identifier_preparer.quote
        with engine.connect() as conn:
            user = conn.exec_driver_sql(
                "SELECT current_user" if engine.dialect.name == "postgresql" else "SELECT CURRENT_USER()"
            ).scalar()
            for dotted in columns:
                *table, column = dotted.split(".")
                try:
                    conn.exec_driver_sql(f"SELECT {quote(column)} FROM {'.'.join(map(quote, table))} WHERE 1 = 0").all()
                    readable.append(dotted)
                except DBAPIError as exc:
                    (refused if _refused(exc) else unknown).append(dotted)
                conn.rollback()
    finally:
        engine.dispose()
    if readable:
        return (
            False,
            f"role {user} can read {', '.join(readable)}: masked in Python "
            "only (guarded) — revoke its SELECT on them (docs/safety.md)",
        )
    if unknown:
        return (
            None,
            f"role {user}: reading {', '.join(unknown)} failed for another "
            "reason than a missing privilege (does the table exist?)",
        )
    return True, f"role {user} cannot read {', '.join(refused)}: the database refuses (enforced)"


def doctor_rows(settings: Any, ctx: Any) -> Iterator[tuple[str, str, str]]:
    """For ``appshell doctor``: the protected hosts, and whether the
    role a session reads with can read the protected columns."""
    rules = Rules.of(settings.profile)
    if not rules.enabled:
        return
    if rules.hosts:
        yield (
            "protected hosts",
            "ok",
            f"{', '.join(rules.hosts)}: sockets refused until unlock(reason) — an in-process guard against "
            "mistakes, not enforcement: a firewall rule keeps them out of reach (docs/safety.md)",
        )
    columns = [column for column, _ in listing(rules, tables_of(ctx.models.values(), ctx.metadata))]
    if not columns:
        yield (
            "protected data",
            "WARN",
            f"profile {settings.profile.name} protects data, but no "
            "column of the app is protected (see appshell protected)",
        )
        return
    from appshell.safety.readonly_role import read_only_url

    url = (read_only_url(settings) if settings.read_only else None) or ctx.engine.url.render_as_string(
        hide_password=False
    )
    enforced, message = prove_column_grants(url, columns)
    yield "protected data", "ok" if enforced else "WARN", message
