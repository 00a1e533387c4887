"""Plain-text tables that fit the terminal, for people (docs/usage.md); rows of data: appshell.console.rows.

Tables are capped (``ROW_LIMIT`` rows by default): the footer says how many
rows were left out and how to see them, so that printing a big table never
fetches or formats more than it shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

__all__ = ["table", "pick_columns", "orm_state", "take", "terminal_width", "footer", "ROW_LIMIT"]

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


_EXPANDED_CELL = 1000  # what a value may show in the expanded display (wrapped), where a table cell shows _MAX_CELL
_WHOLE_WORD = 20  # a wrapped column keeps words up to this long whole (ids, timestamps); longer ones (URLs) may break
_MIN_WIDTH = 6  # a column is not squeezed below this; a row that still cannot fit is shown expanded


def terminal_width() -> int:
    """The width to fit, read at print time: ``COLUMNS``, else the terminal's, else 80."""
    import shutil

    return max(shutil.get_terminal_size((80, 24)).columns, 20)


def _longest_word(texts: Iterable[str]) -> int:
    return max((len(word) for text in texts for word in text.split()), default=0)


def _fit(natural: Sequence[int], headers: Sequence[str], avail: int, words: Sequence[int] = ()) -> list[int] | None:
    """Column widths that fit *avail* characters: the widest columns give way first, none below
    ``_MIN_WIDTH``, its header's longest word (a header stays readable) or *words* (a wrapped column's
    longest word: an id or a timestamp is never broken); None where even that cannot fit — then the
    records are shown expanded, as psql does."""
    if sum(natural) <= avail:
        return list(natural)
    words = words or [0] * len(natural)
    floors = [min(w, max(_MIN_WIDTH, _longest_word([h]), longest)) for w, h, longest in zip(natural, headers, words)]
    if sum(floors) > avail:
        return None
    low, high = 0, max(natural)
    while low < high:  # the largest cap whose capped widths still fit
        mid = (low + high + 1) // 2
        if sum(max(f, min(w, mid)) for f, w in zip(floors, natural)) <= avail:
            low = mid
        else:
            high = mid - 1
    widths = [max(f, min(w, low)) for f, w in zip(floors, natural)]
    left = avail - sum(widths)
    for i, want in enumerate(natural):  # what the cap left over goes to the columns it cut
        if left <= 0:
            break
        if widths[i] < want:
            widths[i] += 1
            left -= 1
    return widths


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _lines(text: str, width: int, wrap: bool) -> list[str]:
    """A cell's text in a column *width* wide: cut with …, or wrapped onto as many lines as it takes."""
    if not wrap or len(text) <= width:
        return [_clip(text, width)]
    import textwrap

    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [
        ""
    ]  # a word breaks only where it is wider than the column


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    title: str | None = None,
    max_cell: int = _MAX_CELL,
    *,
    more: int | None = None,
    hint: str = "",
    width: int | None = None,
    expanded: bool | None = None,
    wrap: bool = True,
) -> str:
    """A boxed table that fits *width* (the terminal's, read now); numbers right-aligned; a footer.

    Columns shrink and cells are *wrap*ped (reports, listings: nothing an auditor needs is cut) or,
    with ``wrap=False``, cut with … (rows of data, as psql does) to fit; where a row cannot fit even so,
    each record is shown as a block of ``column │ value`` lines, as psql's ``\\x auto`` does
    (*expanded* True forces that, False never). *more* is how many rows were left out (a capped
    table); *hint* says how to see them.
    """
    width = terminal_width() if width is None else width
    raw = [list(r) for r in rows]  # once: a generator can be read only once
    body = [[_cell(v, max_cell) for v in row] for row in raw]
    natural = [len(h) for h in headers]
    for row in body:
        natural = [max(w, len(c)) for w, c in zip(natural, row)]
    words = [min(_longest_word(row[i] for row in body), _WHOLE_WORD) for i in range(len(headers))] if wrap else []
    widths = None if expanded else _fit(natural, headers, width - 3 * len(headers) - 1, words)
    if widths is None and expanded is not False:
        # A block a record has room for more of each value: up to _EXPANDED_CELL characters, wrapped.
        body = [[_cell(v, max(max_cell, _EXPANDED_CELL)) for v in row] for row in raw]
        return _expanded(headers, body, title, width, footer(len(body), more, hint))
    widths = widths or [min(w, _MIN_WIDTH) for w in natural]
    numeric = [
        any(r[i] is not None for r in raw) and all(_is_number(r[i]) for r in raw if r[i] is not None)
        for i in range(len(headers))
    ]

    def lines(cells: Sequence[str], align: Sequence[bool]) -> list[str]:
        split = [_lines(c, w, wrap) for c, w in zip(cells, widths)]
        out = []
        for k in range(max(len(s) for s in split)):
            parts = [(s[k] if k < len(s) else "") for s in split]
            parts = [p.rjust(w) if num else p.ljust(w) for p, w, num in zip(parts, widths, align)]
            out.append("│ " + " │ ".join(parts) + " │")
        return out

    rule = "─┼─".join("─" * w for w in widths)
    out = [] if title is None else [_clip(title, width)]
    out.append("┌─" + "─┬─".join("─" * w for w in widths) + "─┐")
    out.extend(lines(list(headers) if wrap else [_clip(h, w) for h, w in zip(headers, widths)], numeric))
    out.append("├─" + rule + "─┤")
    for row in body:
        out.extend(lines(row, numeric))
    out.append("└─" + "─┴─".join("─" * w for w in widths) + "─┘")
    out.append(footer(len(body), more, hint))
    return "\n".join(out)


def _expanded(headers: Sequence[str], body: Sequence[Sequence[str]], title: str | None, width: int, foot: str) -> str:
    """One block per record, ``column │ value``, values wrapped to the width (psql's expanded display)."""
    key = min(max((len(h) for h in headers), default=1), max(width // 3, _MIN_WIDTH))
    value = max(width - key - 3, _MIN_WIDTH)
    out = [] if title is None else [_clip(title, width)]
    for n, row in enumerate(body, 1):
        label = f"─[ RECORD {n} ]"
        out.append(label + "─" * max(width - len(label), 0))
        for header, cell in zip(headers, row):
            for k, part in enumerate(_lines(cell, value, wrap=True)):
                out.append(f"{_clip(header, key).ljust(key) if k == 0 else ' ' * key} │ {part}")
    out.append(foot)
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


def columns_of(item: Any) -> list[str] | None:
    if hasattr(item, "_fields") and hasattr(item, "_mapping"):  # a Row
        return list(item._fields)
    if isinstance(item, dict):
        return list(item)
    state = orm_state(item)
    if state is not None:
        # A deferred column not loaded is left out: reading it would run one SELECT per row shown.
        return [attr.key for attr in state.mapper.column_attrs if not attr.deferred or attr.key in state.dict]
    return None


def pick_columns(found: Sequence[str], columns: Sequence[str]) -> list[str]:
    if isinstance(columns, str):
        columns = [columns]
    unknown = [c for c in columns if c not in found]
    if unknown:
        raise ValueError(f"no column {', '.join(map(repr, unknown))} here — the columns are: {', '.join(found)}")
    return list(columns)
