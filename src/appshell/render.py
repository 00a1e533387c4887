"""Rows and objects as plain-text tables, for people (docs/usage.md).

Tables are capped (``ROW_LIMIT`` rows by default): the footer says how many
rows were left out and how to see them, so that printing a big table never
fetches or formats more than it shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

__all__ = ["Rows", "table", "tabulate", "orm_state", "take", "ROW_LIMIT"]

_MAX_CELL = 60
ROW_LIMIT = 20  # rows a helper shows unless told otherwise (Django's QuerySet repr shows 20 too)


def orm_state(value: Any) -> Any:
    """The SQLAlchemy InstanceState of a mapped object, or None for anything else."""
    if isinstance(value, (type, str, int, float, bytes, list, tuple, dict)) or value is None:
        return None  # the common cases, without asking SQLAlchemy
    from sqlalchemy import inspect as sa_inspect

    state = sa_inspect(value, raiseerr=False)
    return state if state is not None and hasattr(state, "mapper") and hasattr(state, "obj") else None


def _cell(value: Any, limit: int) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_number(value: Any) -> bool:
    from numbers import Number

    return isinstance(value, Number) and not isinstance(value, bool)


def _plural(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    title: str | None = None,
    max_cell: int = _MAX_CELL,
    *,
    more: int | None = None,
    hint: str = "",
) -> str:
    """A boxed table; numbers right-aligned; a footer counting the rows.

    *more* is how many rows were left out (a capped table); *hint* says how to see them.
    """
    raw = [list(r) for r in rows]  # once: a generator can be read only once
    body = [[_cell(v, max_cell) for v in row] for row in raw]
    widths = [len(h) for h in headers]
    for row in body:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    numeric = [
        any(r[i] is not None for r in raw) and all(_is_number(r[i]) for r in raw if r[i] is not None)
        for i in range(len(headers))
    ]

    def line(cells: Sequence[str], align: Sequence[bool]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, align)]
        return "│ " + " │ ".join(parts) + " │"

    rule = "─┼─".join("─" * w for w in widths)
    out = [] if title is None else [title]
    out.append("┌─" + "─┬─".join("─" * w for w in widths) + "─┐")
    out.append(line(list(headers), numeric))
    out.append("├─" + rule + "─┤")
    out.extend(line(row, numeric) for row in body)
    out.append("└─" + "─┴─".join("─" * w for w in widths) + "─┘")
    out.append(footer(len(body), more, hint))
    return "\n".join(out)


def footer(shown: int, more: int | None, hint: str = "") -> str:
    """``(4 rows)``, or for a capped table how many more there are and how to get them."""
    if not more:
        return f"({_plural(shown)})"
    text = f"({_plural(shown)} shown of {shown + more}; {more} more"
    return text + (f": {hint})" if hint else ")")


def take(items: Iterable[Any], limit: int | None) -> tuple[list[Any], int]:
    """The first *limit* items and how many more there were (counted, not kept)."""
    if limit is None:
        return list(items), 0
    if isinstance(items, Sequence):
        return list(items[:limit]), max(len(items) - limit, 0)
    it: Iterator[Any] = iter(items)
    first = list(islice(it, limit))
    return first, sum(1 for _ in it)


def _columns_of(item: Any) -> list[str] | None:
    if hasattr(item, "_fields") and hasattr(item, "_mapping"):  # a Row
        return list(item._fields)
    if isinstance(item, dict):
        return list(item)
    state = orm_state(item)
    if state is not None:
        # A deferred column not loaded is left out: reading it would run one SELECT per row shown.
        return [attr.key for attr in state.mapper.column_attrs if not attr.deferred or attr.key in state.dict]
    return None


def tabulate(items: Iterable[Any], *, more: int | None = None, hint: str = "") -> str:
    """Rows, mappings, ORM objects or plain values as one table."""
    items = list(items)
    if not items:
        return "(0 rows)"
    columns = _columns_of(items[0])
    if columns is None:
        return table(["value"], [[item] for item in items], more=more, hint=hint)
    rows: list[list[Any]] = []
    for item in items:
        if isinstance(item, dict):
            rows.append([item.get(c) for c in columns])
        elif hasattr(item, "_mapping"):
            rows.append(list(item))
        else:
            rows.append([getattr(item, c, None) for c in columns])
    title = type(items[0]).__name__ if orm_state(items[0]) is not None else None
    return table(columns, rows, title, more=more, hint=hint)


class Rows(list):  # type: ignore[type-arg]
    """A list of results that shows itself as a table wherever it is printed (the first ROW_LIMIT rows)."""

    def __repr__(self) -> str:
        shown, more = take(self, ROW_LIMIT)
        return tabulate(shown, more=more, hint="show(rows, limit=None) prints them all")

    __str__ = __repr__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython's display hook
        printer.text(repr(self))
