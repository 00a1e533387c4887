"""Rows and objects as plain-text tables, for people (SPEC §2 show())."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Rows", "table", "tabulate"]

_MAX_CELL = 60


def _cell(value: Any, limit: int) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None, max_cell: int = _MAX_CELL) -> str:
    """A boxed table; numbers right-aligned; a footer counting the rows."""
    body = [[_cell(v, max_cell) for v in row] for row in rows]
    raw = list(rows) if not isinstance(rows, list) else rows
    widths = [len(h) for h in headers]
    for row in body:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    numeric = [
        bool(raw) and all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in raw if r[i] is not None)
        for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
        return "│ " + " │ ".join(parts) + " │"

    rule = "─┼─".join("─" * w for w in widths)
    out = [] if title is None else [title]
    out.append("┌─" + "─┬─".join("─" * w for w in widths) + "─┐")
    out.append(line(list(headers)))
    out.append("├─" + rule + "─┤")
    out.extend(line(row) for row in body)
    out.append("└─" + "─┴─".join("─" * w for w in widths) + "─┘")
    out.append(f"({len(body)} row{'s' if len(body) != 1 else ''})")
    return "\n".join(out)


def _columns_of(item: Any) -> list[str] | None:
    from sqlalchemy import inspect as sa_inspect

    if hasattr(item, "_fields") and hasattr(item, "_mapping"):  # a Row
        return list(item._fields)
    if isinstance(item, dict):
        return list(item)
    state = sa_inspect(item, raiseerr=False)
    if state is not None and hasattr(state, "mapper"):
        return [attr.key for attr in state.mapper.column_attrs]
    return None


def tabulate(items: Iterable[Any]) -> str:
    """Rows, mappings, ORM objects or plain values as one table."""
    items = list(items)
    if not items:
        return "(0 rows)"
    columns = _columns_of(items[0])
    if columns is None:
        return table(["value"], [[item] for item in items])
    rows: list[list[Any]] = []
    for item in items:
        if isinstance(item, dict):
            rows.append([item.get(c) for c in columns])
        elif hasattr(item, "_mapping"):
            rows.append(list(item))
        else:
            rows.append([getattr(item, c, None) for c in columns])
    title = type(items[0]).__name__ if _is_orm(items[0]) else None
    return table(columns, rows, title)


def _is_orm(item: Any) -> bool:
    from sqlalchemy import inspect as sa_inspect

    state = sa_inspect(item, raiseerr=False)
    return state is not None and hasattr(state, "mapper")


class Rows(list):  # type: ignore[type-arg]
    """A list of results that shows itself as a table wherever it is printed."""

    def __repr__(self) -> str:
        return tabulate(self)

    __str__ = __repr__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython's display hook
        printer.text(tabulate(self))
