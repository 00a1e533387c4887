"""doctor: does the database hold what the models map? (issue 13 item 11)

Two checks: every mapped table exists in the database; and, where the project
has an Alembic environment (``alembic.ini``), the database's revision is the
scripts' head. Alembic is imported only when an environment is found, and
only if installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appshell.boot.context import AppContext
    from appshell.config.settings import Settings

__all__ = ["check_migrations", "find_alembic_ini", "missing_tables"]

Row = tuple[str, str, str]


def find_alembic_ini(settings: Settings, cwd: Path | None = None) -> Path | None:
    """alembic.ini in the working directory or the project root (where `alembic` itself is run from)."""
    for folder in (cwd or Path.cwd(), settings.project_root):
        if folder is not None and (folder / "alembic.ini").is_file():
            return folder / "alembic.ini"
    return None


def missing_tables(ctx: AppContext) -> tuple[list[str], int]:
    """The mapped tables the database does not have, and how many mapped tables there are."""
    from sqlalchemy import inspect as sa_inspect

    tables: dict[str, Any] = {}
    for cls in ctx.models.values():
        for tbl in getattr(sa_inspect(cls), "tables", []):
            tables.setdefault(tbl.fullname, tbl)
    with ctx.engine.connect() as conn:
        inspector = sa_inspect(conn)
        missing = [name for name, tbl in sorted(tables.items()) if not inspector.has_table(tbl.name, schema=tbl.schema)]
    return missing, len(tables)


def _tables(ctx: AppContext) -> Row:
    missing, total = missing_tables(ctx)
    if missing:
        return (
            "mapped tables",
            "FAIL",
            f"{len(missing)} of {total} missing from the database: {', '.join(missing)} "
            "— run the migrations (alembic upgrade head) or create them",
        )
    return ("mapped tables", "ok", f"all {total} exist in the database")


def _alembic(ctx: AppContext, ini: Path) -> Row:
    try:
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory
    except ModuleNotFoundError:
        return ("migrations", "info", f"{ini} found, but alembic is not installed in this environment")
    config = Config(str(ini))
    location = config.get_main_option("script_location")
    if location and not Path(location).is_absolute() and ":" not in location:
        config.set_main_option("script_location", str(ini.parent / location))  # relative to the ini, not to the cwd
    heads = sorted(ScriptDirectory.from_config(config).get_heads())
    with ctx.engine.connect() as conn:
        current = sorted(MigrationContext.configure(conn).get_current_heads())
    shown = ", ".join(heads) or "(no revisions)"
    if current == heads:
        return ("migrations", "ok", f"at head {shown} ({ini})")
    if not current:
        return (
            "migrations",
            "FAIL",
            f"the database has no Alembic revision; the head is {shown} — run alembic upgrade head (or alembic stamp "
            "head if the schema is already there)",
        )
    return (
        "migrations",
        "FAIL",
        f"the database is at {', '.join(current)}, the head is {shown} — run alembic upgrade head",
    )


def check_migrations(ctx: AppContext, settings: Settings) -> Iterator[Row]:
    """Rows for doctor: mapped tables present, Alembic revision at head."""
    yield _tables(ctx)
    ini = find_alembic_ini(settings)
    if ini is None:
        yield ("migrations", "info", "no Alembic environment (alembic.ini) in the working directory or project root")
    else:
        yield _alembic(ctx, ini)
