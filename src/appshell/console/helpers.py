"""The helpers preloaded in every shell (docs/usage.md); each has a one-line docstring.

They hold at production sizes: ``where()`` and ``show()`` fetch only the rows
they show (``ROW_LIMIT`` unless told otherwise) and count the rest in the
database; iterating a ``where()`` streams in batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from appshell.console.render import ROW_LIMIT, orm_state, pick_columns, table, take
from appshell.console.results import Results, batches
from appshell.console.rows import Rows, tabulate
from appshell.hooks.aio import greenlets, sync_io

if TYPE_CHECKING:
    from appshell.boot.context import AppContext
    from appshell.record.journal import Journal

__all__ = ["make_helpers", "helper_listing", "Plan"]


class Plan(str):
    """A query plan: printed whole, each line as the database wrote it (never cut)."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def _mapper_of(model: Any, helper: str) -> Any:
    from sqlalchemy import inspect as sa_inspect

    mapper = sa_inspect(model, raiseerr=False) if isinstance(model, type) else None
    if mapper is None or not hasattr(mapper, "primary_key"):
        raise TypeError(f"{helper}() takes a mapped class first, such as {helper}(Order, …); got {model!r}")
    return mapper


def _order_terms(model: Any, order_by: Any) -> list[Any]:
    if order_by is None:
        return list(_mapper_of(model, "where").primary_key)  # a stable order: the first rows are always the same
    terms = list(order_by) if isinstance(order_by, (list, tuple)) else [order_by]
    out = []
    for term in terms:
        if isinstance(term, str):  # "name" or "-created_at" (descending), like Django's order_by
            column = getattr(model, term.lstrip("-"))
            out.append(column.desc() if term.startswith("-") else column)
        else:
            out.append(term)
    return out


def _select_of(model: Any, criteria: Iterable[Any], filters: dict[str, Any], helper: str) -> Any:
    from sqlalchemy import select

    _mapper_of(model, helper)
    stmt = select(model)
    criteria = list(criteria)
    if criteria:
        stmt = stmt.where(*criteria)
    return stmt.filter_by(**filters) if filters else stmt


def _as_statement(query: Any) -> Any:
    from sqlalchemy import text

    return text(query) if isinstance(query, str) else query


def _single_entity(stmt: Any) -> bool:
    """select(Order) (objects), as opposed to select(Order.id, Order.status) (rows)."""
    described = getattr(stmt, "column_descriptions", None) or []
    return len(described) == 1 and isinstance(described[0].get("expr"), type)


def _plan_text(dialect: str, rows: list[Any]) -> str:
    if dialect == "sqlite":  # (id, parent, notused, detail): indent each step under its parent
        depth: dict[Any, int] = {0: -1}
        lines = []
        for row in rows:
            depth[row[0]] = depth.get(row[1], -1) + 1
            lines.append("  " * depth[row[0]] + str(row[3]))
        return "\n".join(lines)
    if rows and len(rows[0]) == 1:  # PostgreSQL's QUERY PLAN, MySQL's EXPLAIN ANALYZE / FORMAT=TREE
        return "\n".join(str(r[0]) for r in rows)
    return table(list(rows[0]._fields) if rows else ["plan"], rows, max_cell=10**6)


def make_helpers(ctx: AppContext, journal: Journal) -> dict[str, Callable[..., Any]]:
    """The helper functions, bound to this context's session and engine."""
    session = ctx.session

    def execute(statement: Any, params: dict[str, Any] | None = None) -> Any:
        statement = _as_statement(statement)
        result: Any = session.execute(statement, params or {})
        # ORM results always return rows; a Core CursorResult says whether it does.
        if not getattr(result, "returns_rows", True):
            return result.rowcount
        from appshell.console.protect import origins_of

        rows = Rows(result.all())
        rows.origins = origins_of(statement)  # protected columns masked by their origin where it is known
        return rows

    def sql(text: str, **params: Any) -> Any:
        """Run raw SQL with :named parameters; rows come back as a table, writes as a row count."""
        return execute(text, params)

    def count(model: Any, *criteria: Any, **filters: Any) -> int:
        """Count rows of a model, optionally filtered: count(Order, status="paid")."""
        from sqlalchemy import func, select

        _mapper_of(model, "count")
        stmt = select(func.count()).select_from(model)
        if criteria:
            stmt = stmt.where(*criteria)
        if filters:
            stmt = stmt.filter_by(**filters)
        return int(session.scalar(stmt) or 0)

    def find(model: Any, pk: Any = None, **key: Any) -> Any:
        """The object with primary key pk (a tuple or keywords for a composite key), or None."""
        mapper = _mapper_of(model, "find")
        columns = [c.key for c in mapper.primary_key]
        if key:
            pk = key
        if len(columns) > 1 and not isinstance(pk, (tuple, list, dict)):
            need = ", ".join(columns)
            example = ", ".join(f"{c}=…" for c in columns)
            raise TypeError(
                f"{model.__name__}'s primary key has {len(columns)} columns ({need}): "
                f"find({model.__name__}, ({need})) or find({model.__name__}, {example})"
            )
        return session.get(model, pk)

    def where(
        model: Any, *criteria: Any, order_by: Any = None, limit: int | None = None, columns: Any = None, **filters: Any
    ) -> Results:
        # helpers() shows the docstring's first line: the backslash-newline folds it in the source, not in __doc__.
        """Objects matching expressions and/or column=value filters, by primary key; shows the first 20 \
(columns=[…]: those)."""
        stmt = _select_of(model, criteria, filters, "where").order_by(*_order_terms(model, order_by))
        if limit is not None:
            stmt = stmt.limit(limit)
        hint = "where(…, limit=N) shows N, show(…, limit=None) shows all, list(…) fetches all"
        return Results(
            session, stmt, hint, limited=limit is not None, columns=[columns] if isinstance(columns, str) else columns
        )

    def first(model: Any, *criteria: Any, order_by: Any = None, **filters: Any) -> Any:
        """The first object of a model by primary key (or order_by), optionally filtered, or None."""
        stmt = _select_of(model, criteria, filters, "first").order_by(*_order_terms(model, order_by)).limit(1)
        return session.scalars(stmt).first()

    def show(rows: Any, limit: int | None = ROW_LIMIT, columns: Any = None, expanded: bool | None = None) -> None:
        # One line in __doc__ (helpers() shows the first), folded in the source by the backslash-newline.
        """Print rows, objects or a query's results as a table that fits the terminal (limit=None, columns=[…], \
expanded=True)."""
        from sqlalchemy.sql import Executable, Select

        hint = "show(…, limit=N) shows N, limit=None shows all"
        if isinstance(rows, type):
            rows = Results(session, where(rows).statement, hint, limited=False)
        if isinstance(rows, Select):
            rows = (
                Results(session, rows, hint, limited=False)
                if _single_entity(rows)
                else _RowResults(session, rows, hint, limited=False)
            )
        if isinstance(rows, (Results, _RowResults)):
            print(rows.render(limit, columns, expanded))
            return
        if isinstance(rows, (str, Executable)):
            print(_stream_table(session, _as_statement(rows), limit, hint, columns, expanded))
            return
        state = orm_state(rows)
        if state is not None:  # one object: a vertical table
            keys = [c.key for c in state.mapper.column_attrs]
            keys = keys if columns is None else pick_columns(keys, columns)
            from appshell.console.protect import mask_mapping, unreadable

            unread = unreadable(rows)  # what the session's role may not read is not loaded
            values = mask_mapping(
                rows,
                {key: unread[key] if key in unread and key not in vars(rows) else getattr(rows, key) for key in keys},
            )
            print(table(["column", "value"], [[key, value] for key, value in values.items()], type(rows).__name__))
            return
        if isinstance(rows, dict) or not isinstance(rows, Iterable):
            rows = [rows]
        shown, more = take(rows, limit)
        print(tabulate(shown, more=more, hint=hint, columns=columns, expanded=expanded))

    def describe(model: Any) -> None:
        """Print a model's columns (the database's own types), indexes, constraints and relationships."""
        from appshell.console.describe import describe_model

        print(describe_model(_mapper_of(model, "describe"), session.connection()))

    def explain(query: Any, analyze: bool = False, **params: Any) -> Plan:
        """The database's query plan, whole; analyze=True runs it (PostgreSQL, rolled back)."""
        from appshell.safety.connection import dialect_kind

        bind = session.get_bind()
        dialect = dialect_kind(bind.dialect)  # MariaDB by its own name, not as "mysql"
        if analyze and dialect != "postgresql":
            raise ValueError(
                f"explain(…, analyze=True) runs EXPLAIN ANALYZE on PostgreSQL only (this database is {dialect})"
            )
        prefix = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN ANALYZE " if analyze else "EXPLAIN "}.get(
            dialect, "EXPLAIN "
        )
        statement = _as_statement(query)
        if params:
            statement = statement.bindparams(**params)
        compiled = statement.compile(dialect=bind.dialect)
        bound: Any = compiled.params
        if compiled.positional:
            bound = tuple(compiled.params[name] for name in compiled.positiontup or ())
        connection = session.connection()
        if not analyze:
            return Plan(_plan_text(dialect, list(connection.exec_driver_sql(prefix + str(compiled), bound))))
        # EXPLAIN ANALYZE runs the statement: inside a savepoint that is always rolled back,
        # so an UPDATE or DELETE being explained changes nothing.
        savepoint = connection.begin_nested()
        try:
            rows = list(connection.exec_driver_sql(prefix + str(compiled), bound))
        finally:
            savepoint.rollback()
        return Plan(
            _plan_text(dialect, rows) + "\n(analyze: the statement ran inside a transaction that was rolled back)"
        )

    def commit() -> None:
        """Commit the session's pending changes to the database."""
        session.commit()

    def rollback() -> None:
        """Discard the session's uncommitted changes."""
        session.rollback()

    def audit_log() -> Rows:
        """This session's statements: number, status, duration, source."""
        shown = _masking_source()  # strings given for protected columns, masked as the history keeps them
        return Rows(
            {"n": e.n, "status": e.status, "ms": e.duration_ms, "sql": len(e.sql), "source": shown(e.source.strip())}
            for e in journal.entries
        )

    found: dict[str, Callable[..., Any]] = {
        f.__name__: f for f in (sql, count, find, where, first, show, describe, explain, commit, rollback, audit_log)
    }

    def helpers() -> None:
        """List the helpers and what each does."""
        print(helper_listing(found))

    if greenlets():  # an async app: each helper's IO runs inside SQLAlchemy's greenlet, on the session's loop
        found = {name: _in_greenlet(func) for name, func in found.items()}
    found["helpers"] = helpers
    return found


def _masking_source() -> Callable[[str], str]:
    import sys

    protect = sys.modules.get("appshell.console.protect")  # imported where the session protects data
    return protect.mask_source if protect is not None and protect.active() is not None else str


def _in_greenlet(func: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(func)
    def helper(*args: Any, **kwargs: Any) -> Any:
        return sync_io(func, *args, **kwargs)

    return helper


class _RowResults(Results):
    """A Select of columns (rows, not objects): shown and iterated like Results."""

    def __iter__(self) -> Any:
        yield from batches(self._session.execute, self.statement)

    def first(self) -> Any:
        return sync_io(lambda: self._session.execute(self.statement.limit(1)).first())

    def _fetch(self, statement: Any) -> list[Any]:
        return list(self._session.execute(statement))

    def _origins(self) -> list[Any] | None:
        from appshell.console.protect import origins_of

        return origins_of(self.statement)


def _stream_table(
    session: Any, statement: Any, limit: int | None, hint: str, columns: Any = None, expanded: bool | None = None
) -> str:
    """Run a statement once; keep the first *limit* rows, count the rest as they stream past."""
    result = session.execute(statement.execution_options(stream_results=True))
    if not getattr(result, "returns_rows", True):
        return f"({result.rowcount} rows affected)"
    try:
        shown, more = take(result, limit)
    finally:
        result.close()
    from appshell.console.protect import origins_of

    return tabulate(shown, more=more, hint=hint, columns=columns, expanded=expanded, origins=origins_of(statement))


def helper_listing(found: dict[str, Callable[..., Any]]) -> str:
    import inspect

    rows = []
    for name, func in sorted(found.items()):
        try:
            # Names and defaults only: annotations are noise at a prompt.
            bare = inspect.signature(func)
            bare = bare.replace(
                parameters=[p.replace(annotation=inspect.Parameter.empty) for p in bare.parameters.values()],
                return_annotation=inspect.Signature.empty,
            )
            sig = str(bare)
        except (TypeError, ValueError):
            sig = "(…)"
        doc = (inspect.getdoc(func) or "").splitlines()
        rows.append([name + sig, doc[0] if doc else ""])
    return table(["helper", "what it does"], rows, max_cell=400)  # wrapped to the terminal, never cut
