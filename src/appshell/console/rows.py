"""Rows, mappings, ORM objects or plain values as one table, protected columns masked (appshell.console.protect).

Tables are capped (``ROW_LIMIT`` rows by default): the footer says how many
rows were left out and how to see them, so that printing a big table never
fetches or formats more than it shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from appshell.console.render import ROW_LIMIT, columns_of, orm_state, pick_columns, table, take

__all__ = ["Rows", "tabulate"]


def tabulate(
    items: Iterable[Any],
    *,
    more: int | None = None,
    hint: str = "",
    columns: Sequence[str] | None = None,
    expanded: bool | None = None,
    origins: Sequence[Any] | None = None,
) -> str:
    """Rows, mappings, ORM objects or plain values as one table (*columns*: only these, in this order).

    Protected columns are masked before the table is laid out (appshell.console.protect): an object's by its
    mapper, a row's by *origins* (its result's columns, where SQLAlchemy knows them), else by name."""
    items = list(items)
    if not items:
        return "(0 rows)"
    found = columns_of(items[0])
    if found is None:
        return table(["value"], [[item] for item in items], more=more, hint=hint, expanded=expanded, wrap=False)
    picked = found if columns is None else pick_columns(found, columns)
    from appshell.console.protect import (
        mask_rows,
        unreadable,
    )  # lazily: a session that protects nothing never imports it

    unread = unreadable(items[0])  # protected columns the session's role may not read: never loaded for a table
    rows: list[list[Any]] = []
    for item in items:
        if isinstance(item, dict):
            rows.append([item.get(c) for c in picked])
        elif hasattr(item, "_mapping"):
            rows.append([item._mapping[c] for c in picked])
        else:
            rows.append([unread[c] if c in unread and c not in vars(item) else getattr(item, c, None) for c in picked])
    if origins is not None:  # in the order of the columns shown; None where they do not line up (a row of objects)
        origins = [origins[found.index(c)] for c in picked] if len(origins) == len(found) else None
    rows = mask_rows(items[0], picked, rows, origins)
    title = type(items[0]).__name__ if orm_state(items[0]) is not None else None
    return table(picked, rows, title, more=more, hint=hint, expanded=expanded, wrap=False)


class Rows(list):  # type: ignore[type-arg]
    """A list of results that shows itself as a table wherever it is printed (the first ROW_LIMIT rows)."""

    origins: Sequence[Any] | None = (
        None  # the result's columns, where SQLAlchemy knows them (protected data is masked by them)
    )

    def __repr__(self) -> str:
        shown, more = take(self, ROW_LIMIT)
        return tabulate(shown, more=more, hint="show(rows, limit=None) prints them all", origins=self.origins)

    __str__ = __repr__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython's display hook
        printer.text(repr(self))
