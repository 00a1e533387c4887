"""The names every shell has without an import, like shell_plus's (issue 13 item 2).

The set is fixed and documented (docs/usage.md); the profile key
``namespace.vocabulary = false`` turns it off. A model or a name the app
provides always wins over a vocabulary name: the collision is said once.
Cheap to load: SQLAlchemy and its ORM are already imported by the app's models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SQLALCHEMY_NAMES", "ORM_NAMES", "STDLIB_NAMES", "vocabulary", "add_vocabulary"]

SQLALCHEMY_NAMES = (
    "select",
    "func",
    "and_",
    "or_",
    "not_",
    "text",
    "insert",
    "update",
    "delete",
    "case",
    "cast",
    "exists",
    "literal",
    "desc",
    "asc",
)
ORM_NAMES = ("joinedload", "selectinload", "aliased")
STDLIB_NAMES = ("datetime", "date", "timedelta", "timezone", "Decimal", "uuid")


def vocabulary(sqlmodel: bool = False) -> dict[str, Any]:
    """The names, SQLModel's ``select`` where the models are SQLModel
    tables (so ``session.exec(select(Hero))`` yields Heroes)."""
    import datetime as dt
    import uuid
    from decimal import Decimal

    import sqlalchemy
    import sqlalchemy.orm

    names: dict[str, Any] = {name: getattr(sqlalchemy, name) for name in SQLALCHEMY_NAMES}
    names.update({name: getattr(sqlalchemy.orm, name) for name in ORM_NAMES})
    names.update(
        datetime=dt.datetime, date=dt.date, timedelta=dt.timedelta, timezone=dt.timezone, Decimal=Decimal, uuid=uuid
    )
    if sqlmodel:
        import sqlmodel as sm

        names["select"] = sm.select
    return names


def add_vocabulary(namespace: dict[str, Any], app_names: Mapping[str, Any], sqlmodel: bool = False) -> list[str]:
    """Put the vocabulary into *namespace* under every name the app does not use; returns the names the app kept."""
    kept = []
    for name, value in vocabulary(sqlmodel).items():
        if name in app_names and app_names[name] is not value:
            kept.append(name)
            continue
        namespace[name] = value
    return sorted(kept)
