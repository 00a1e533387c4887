"""The sandbox's summary at the end of a dry run: what it saw, through which engines, counted by whom.

Display only: the sandbox (appshell.safety.sandbox) keeps the counts; this module lays them out.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from appshell.console.render import table
from appshell.safety.sandbox import OPS, OTHER_TABLES, SOURCES, Frame, Sandbox

__all__ = ["summary"]


def summary(sandbox: Sandbox) -> str:
    """What the dry run saw, honestly: through which engines, counted by whom, and what it cannot see."""
    total = Frame()
    total.add(sandbox.committed)
    total.add(sandbox.left_open)
    db = sandbox.db_committed + sandbox.db_left_open
    covered = ", ".join(f"{url} ({kind})" for url, kind in sandbox.engines.items()) or "none"
    lines: list[str] = []
    if (
        total.empty()
        and not db
        and not any(sandbox.db_totals.values())
        and not sandbox.db_unknown
        and not sandbox.unread
    ):
        # Broken: what reached the database outside SQLAlchemy may be committed; the error itself comes last (cli).
        rolled = (
            "but the sandbox broke: what may have been committed is unknown"
            if sandbox.broken is not None
            else "all rolled back"
        )
        told = f" (and {', '.join(sorted(sandbox.db_asked))} counted none)" if sandbox.db_asked else ""
        lines.append(
            f"appshell: sandbox — no changes seen through the engines appshell covered{told}; {rolled} ({covered})"
        )
        return "\n".join(lines)
    if sandbox.broken is not None:
        lines.append(
            "appshell: sandbox dry run — these changes were seen; the "
            "sandbox broke, so what may have been committed is unknown:"
        )
    else:
        lines.append("appshell: sandbox dry run — these changes were made, then rolled back:")
    rows = _rows(sandbox, total, db)
    if rows:
        lines.append(table(["table", *OPS, "counted by"], rows))
    for kind, rows_modified in sorted(sandbox.db_totals.items()):
        lines.append(
            f"{kind}: {rows_modified} row(s) modified in all, by the database's count (innodb_trx.trx_rows_modified: "
            "a total over every table, cascades and triggers included — InnoDB keeps no count per table)"
        )
    if total.ddl:
        lines.append("schema changes (rolled back): " + "; ".join(total.ddl))
    if total.unknown:
        lines.append(
            "?: rows changed by a statement whose count the database "
            "does not report (TRUNCATE, REPLACE, a data-modifying CTE, "
            "several statements in one string)"
        )
    if sandbox.unread:
        lines.append(
            "?: statements appshell cannot read ran "
            f"({'; '.join(sorted(sandbox.unread)[:3])}): rows they changed are counted "
            "where the database counts them, but a TRUNCATE or a schema change inside them is not"
        )
    if sandbox.db_unknown:
        lines.append(
            f"?: the database's own counts could not be read on {', '.join(sorted(sandbox.db_unknown))} "
            "(a transaction in error, or a connection lost): what is shown there is what the statements reported"
        )
    if OTHER_TABLES in {t for t, _ in total.rows}:
        lines.append(
            f"{OTHER_TABLES}: rows that cascades and triggers changed, by SQLite's total_changes(), which does not "
            "say in which tables — shown under the operation of the statement that caused them"
        )
    if not sandbox.left_open.empty() or sandbox.db_left_open:
        lines.append(
            "some of these were never committed by the program: a run without --sandbox would not keep those either"
        )
    if any(kind != "sqlite" for kind in sandbox.engines.values()) and (
        any(op == "inserted" for _, op in total.rows)
        or any(op == "inserted" for _, op in total.unknown)
        or any(op == "inserted" and n for (_, op), n in db.items())
        or any(sandbox.db_totals.values())
    ):
        lines.append(
            "sequences: values drawn (serial/identity, nextval(), AUTO_INCREMENT) are not rolled back — "
            "the next ids will skip them"
        )
    if sandbox.broken is not None:
        lines.append("but the sandbox broke: what may have been committed is unknown — appshell could not see it")
    lines.append(f"engines covered: {covered}")
    return "\n".join(lines)


def _rows(sandbox: Sandbox, total: Frame, db: Counter[tuple[str, str]]) -> list[list[Any]]:
    """One row per table: the database's counts (PostgreSQL) beside the statements' own (other backends)."""
    tables = sorted({t for t, _ in total.rows} | {t for t, _ in total.unknown} | {t for t, _ in db})
    out: list[list[Any]] = []
    for name in tables:
        cells: list[Any] = []
        for op in OPS:
            key = (name, op)
            if key in total.unknown:
                cells.append("?")
            else:
                cells.append(db[key] + total.rows[key])
        sources = set(sandbox.sources.get(name, ()))
        if any(t == name for t, _ in db):
            sources.add(SOURCES["postgresql"])
        out.append([name, *cells, ", ".join(sorted(sources)) or "?"])
    return out
