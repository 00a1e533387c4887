"""The helpers preloaded in every shell (SPEC §2); each has a one-line docstring."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appshell.render import Rows, table, tabulate

if TYPE_CHECKING:
    from appshell.context import AppContext
    from appshell.journal import Journal

__all__ = ["make_helpers", "helper_listing"]


def _select_of(model: Any, filters: dict[str, Any]) -> Any:
    from sqlalchemy import select

    return select(model).filter_by(**filters) if filters else select(model)


def _as_statement(query: Any) -> Any:
    from sqlalchemy import text

    return text(query) if isinstance(query, str) else query


def make_helpers(ctx: AppContext, journal: Journal) -> dict[str, Callable[..., Any]]:
    """The helper functions, bound to this context's session and engine."""
    session = ctx.session

    def execute(statement: Any, params: dict[str, Any] | None = None) -> Any:
        result: Any = session.execute(_as_statement(statement), params or {})
        # ORM results always return rows; a Core CursorResult says whether it does.
        return Rows(result.all()) if getattr(result, "returns_rows", True) else result.rowcount

    def sql(text: str, **params: Any) -> Any:
        """Run raw SQL with :named parameters; rows come back as a table, writes as a row count."""
        return execute(text, params)

    def count(model: Any, **filters: Any) -> int:
        """Count rows of a model, optionally filtered: count(Order, status="paid")."""
        from sqlalchemy import func, select

        stmt = select(func.count()).select_from(model)
        if filters:
            stmt = stmt.filter_by(**filters)
        return int(session.scalar(stmt) or 0)

    def find(model: Any, pk: Any) -> Any:
        """The object with primary key pk, or None."""
        return session.get(model, pk)

    def where(model: Any, **filters: Any) -> Rows:
        """All objects of a model matching column=value filters, shown as a table."""
        return Rows(session.scalars(_select_of(model, filters)).all())

    def first(model: Any, **filters: Any) -> Any:
        """The first object of a model by primary key (optionally filtered), or None."""
        from sqlalchemy import inspect as sa_inspect

        stmt = _select_of(model, filters).order_by(*sa_inspect(model).primary_key).limit(1)
        return session.scalars(stmt).first()

    def show(rows: Any) -> None:
        """Print rows, objects, a model's rows or a query's results as a table."""
        from sqlalchemy import inspect as sa_inspect
        from sqlalchemy.sql import Executable

        if isinstance(rows, (str, Executable)):
            rows = execute(rows)
            if not isinstance(rows, Rows):
                print(f"({rows} rows affected)")
                return
        elif isinstance(rows, type) and sa_inspect(rows, raiseerr=False) is not None:
            rows = where(rows)
        elif not isinstance(rows, (list, tuple, set)) and not hasattr(rows, "__next__"):
            state = sa_inspect(rows, raiseerr=False)
            if state is not None and hasattr(state, "mapper"):  # one object: a vertical table
                print(table(["column", "value"], [[c.key, getattr(rows, c.key)] for c in state.mapper.column_attrs], type(rows).__name__))
                return
            rows = [rows]
        print(tabulate(rows))

    def describe(model: Any) -> None:
        """Print a model's columns, keys, indexes and relationships."""
        from sqlalchemy import inspect as sa_inspect

        mapper = sa_inspect(model)
        rows = []
        for col in mapper.columns:
            keys = ", ".join(
                filter(None, ["PK" if col.primary_key else "", *(f"FK {fk.target_fullname}" for fk in col.foreign_keys), "unique" if col.unique else "", "index" if col.index else ""])
            )
            rows.append([col.key, str(col.type), "yes" if col.nullable else "no", keys])
        print(table(["column", "type", "nullable", "keys"], rows, f"{mapper.class_.__name__} (table {mapper.persist_selectable})"))
        if mapper.relationships:
            rels = [[r.key, r.direction.name.lower().replace("tomany", "-to-many").replace("toone", "-to-one"), r.mapper.class_.__name__] for r in mapper.relationships]
            print(table(["relationship", "kind", "target"], rels))

    def explain(query: Any) -> Rows:
        """The database's query plan for a Select, a text() or an SQL string."""
        bind = session.get_bind()
        prefix = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN "}.get(bind.dialect.name, "EXPLAIN ")
        compiled = _as_statement(query).compile(dialect=bind.dialect)
        params: Any = compiled.params
        if compiled.positional:
            params = tuple(compiled.params[name] for name in compiled.positiontup or ())
        result = session.connection().exec_driver_sql(prefix + str(compiled), params)
        return Rows(result.all())

    def commit() -> None:
        """Commit the session's pending changes to the database."""
        session.commit()

    def rollback() -> None:
        """Discard the session's uncommitted changes."""
        session.rollback()

    def audit_log() -> Rows:
        """This session's statements: number, status, duration, source."""
        return Rows(
            {"n": e.n, "status": e.status, "ms": e.duration_ms, "sql": len(e.sql), "source": e.source.strip()}
            for e in journal.entries
        )

    found: dict[str, Callable[..., Any]] = {
        f.__name__: f
        for f in (sql, count, find, where, first, show, describe, explain, commit, rollback, audit_log)
    }

    def helpers() -> None:
        """List the helpers and what each does."""
        print(helper_listing(found))

    found["helpers"] = helpers
    return found


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
    return table(["helper", "what it does"], rows, max_cell=100)
