"""echo_sql(): each SQL statement the database runs, shown on stderr — the operator's line that caused it,
the SQL laid out, its parameters (protected ones masked), and how long it took."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appshell.safety.connection import dialect_kind

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["SqlEcho"]


def _laid_out(text: str, kind: str) -> str:
    """SQLAlchemy's own SQL comes in lines already; a long one-line statement (typed into sql())
    is laid out by sqlglot, when it can read it."""
    if "\n" in text or len(text) <= 80:
        return text
    try:
        import sqlglot

        dialect = {"postgresql": "postgres", "mariadb": "mysql"}.get(kind, kind)
        return ";\n".join(sqlglot.transpile(text, read=dialect, write=dialect, pretty=True))
    except Exception:
        return text


def _operator_line() -> str | None:
    """``file:line`` of the innermost frame of the operator's code (not a library's, not appshell's)."""
    from appshell.hooks.frames import is_library_file

    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not is_library_file(filename):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return None


class SqlEcho:
    """Prints each SQL statement the database runs, on stderr (stdout stays clean for data): the
    line of the operator's code that caused it, the SQL (a long one-line statement laid out),
    its parameters, and afterwards how long it took — as shell_plus's --print-sql-location does."""

    def __init__(self, engine: Engine, enabled: bool) -> None:
        from appshell.safety.engines import on_every_engine

        self.enabled = enabled
        self.color = sys.stderr.isatty()
        on_every_engine("before_cursor_execute", self._show)  # every engine's SQL, not only *engine*'s
        on_every_engine("after_cursor_execute", self._took)

    def _show(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, *args: Any) -> None:
        if not self.enabled:
            return
        text = _laid_out(statement.strip(), dialect_kind(conn.dialect))
        if self.color:
            from pygments import highlight
            from pygments.formatters import TerminalFormatter
            from pygments.lexers import SqlLexer

            text = highlight(text, SqlLexer(), TerminalFormatter()).rstrip()
        where = _operator_line()
        shown = f"-- SQL{f' from {where}' if where else ''}\n{text}"
        if parameters:
            from appshell.console.protect import mask_parameters

            shown += f"\n-- parameters: {mask_parameters(parameters, context)!r}"  # protected columns' values masked
        print(shown, file=sys.stderr)
        if context is not None:
            context._appshell_started = time.perf_counter()

    def _took(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, *args: Any) -> None:
        started = getattr(context, "_appshell_started", None)
        if self.enabled and started is not None:
            rows = getattr(cursor, "rowcount", -1)
            counted = f", {rows} row{'s' if rows != 1 else ''}" if isinstance(rows, int) and rows >= 0 else ""
            print(f"-- {(time.perf_counter() - started) * 1000:.1f} ms{counted}", file=sys.stderr)

    def helper(self) -> Callable[..., None]:
        def echo_sql(on: bool = True) -> None:
            """Print each SQL statement as it runs: echo_sql() to start, echo_sql(False) to stop."""
            self.enabled = bool(on)

        return echo_sql
