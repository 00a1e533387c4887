"""A query's results that fetch only what is looked at (docs/usage.md, "Big tables").

``where(Order, status="paid")`` on a table of millions returns at once: showing
it fetches ``ROW_LIMIT`` rows and counts the rest in the database, iterating
streams the rows in batches, ``len()`` counts. Nothing is kept between uses, so
the results always show what the database holds now.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from appshell.console.render import ROW_LIMIT
from appshell.console.rows import tabulate
from appshell.hooks.aio import sync_io

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.sql import Select

__all__ = ["Results", "STREAM_BATCH"]

STREAM_BATCH = 1000  # rows fetched at a time while iterating (server-side cursor where there is one)


class Results:
    """The objects a query selects: shown capped, iterated in batches, never all held at once."""

    def __init__(
        self, session: Session, statement: Select[Any], hint: str, limited: bool, columns: Sequence[str] | None = None
    ) -> None:
        self._session = session
        self.statement = statement
        self._hint = hint  # the footer's "how to see more", in the words of the helper that made it
        self._limited = limited  # the user gave limit=: show all of them, not the first ROW_LIMIT
        self._columns = columns  # where(…, columns=[…]): the columns shown (the objects are whole)

    def __iter__(self) -> Iterator[Any]:
        yield from batches(self._session.scalars, self.statement)

    def all(self) -> list[Any]:
        """Every object, as a list (fetches them all)."""
        return list(self)

    def first(self) -> Any:
        """The first object, or None."""
        return sync_io(lambda: self._session.scalars(self.statement.limit(1)).first())

    def count(self) -> int:
        """How many rows the query selects, counted by the database."""
        from sqlalchemy import func, select

        from appshell.console.protect import narrowed

        inner = narrowed(self.statement.order_by(None)).subquery()
        return int(sync_io(self._session.scalar, select(func.count()).select_from(inner)) or 0)

    def __len__(self) -> int:
        return self.count()

    def __bool__(self) -> bool:
        return self.first() is not None

    def __getitem__(self, index: int | slice) -> Any:
        return sync_io(self._item, index)

    def _item(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            if (index.start or 0) < 0 or (index.stop is not None and index.stop < 0) or index.step not in (None, 1):
                raise IndexError("where() results take slices [start:stop] with start, stop ≥ 0")
            stmt = self.statement.offset(index.start or 0)
            if index.stop is not None:
                stmt = stmt.limit(max(index.stop - (index.start or 0), 0))
            return list(self._session.scalars(stmt))
        if index < 0:
            raise IndexError("where() results take indexes ≥ 0 (use .all()[-1] for the last one)")
        found = self._session.scalars(self.statement.offset(index).limit(1)).first()
        if found is None:
            raise IndexError(f"where() results: index {index} out of range")
        return found

    def render(
        self, limit: int | None = ROW_LIMIT, columns: Sequence[str] | None = None, expanded: bool | None = None
    ) -> str:
        """The table: at most *limit* rows (None: all), and a footer saying how many more there are."""
        return sync_io(self._render, limit, columns or self._columns, expanded)

    def _fetch(self, statement: Any) -> list[Any]:
        return list(self._session.scalars(statement))

    def _origins(self) -> list[Any] | None:
        return None  # objects: masked by their mapper (appshell.console.protect)

    def _render(self, limit: int | None, columns: Sequence[str] | None = None, expanded: bool | None = None) -> str:
        if self._limited or limit is None:
            return tabulate(list(self), columns=columns, expanded=expanded, origins=self._origins())
        shown = self._fetch(self.statement.limit(limit + 1))
        more = 0
        if len(shown) > limit:
            shown = shown[:limit]
            more = self.count() - limit
        return tabulate(shown, more=more, hint=self._hint, columns=columns, expanded=expanded, origins=self._origins())

    def __repr__(self) -> str:
        return self.render()

    __str__ = __repr__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython's display hook
        printer.text(self.render())


def batches(run: Any, statement: Any) -> Iterator[Any]:
    """A statement's rows, STREAM_BATCH at a time (a server-side cursor where the driver has one);
    each fetch runs where an async driver's IO can (appshell.hooks.aio.sync_io), so iterating works
    outside the statement too — in a display hook, a generator the operator keeps."""
    result = sync_io(run, statement.execution_options(yield_per=STREAM_BATCH))
    try:
        while batch := sync_io(result.fetchmany, STREAM_BATCH):
            yield from batch
    finally:
        sync_io(result.close)
