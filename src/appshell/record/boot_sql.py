"""SQL the app runs while it boots, kept for the ``session_start`` record (``boot_sql``).

The journal records statements from the session's first statement on; the app boots before
that. An app module that queries at import time (a cache warmed, a setting read) or an UPDATE
someone added to one would otherwise leave no trace in the record. From the moment the boot
starts until it ends, a class-level listener on every Engine keeps each statement's text —
not its parameters, which may be protected values — and the session_start carries them.

Like every record the session reports, this is the session process's word: an operator who can
edit the app's code as its OS user can also keep this list empty (docs/audit.md, "Who keeps
the record"). It is a trace for the honest case and for mistakes, not a barrier.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

__all__ = ["BootSql", "MAX_STATEMENTS", "MAX_CHARS"]

MAX_STATEMENTS = 50  # kept one by one; beyond, counted
MAX_CHARS = 2000  # of one statement's text; the rest is cut with a mark


class BootSql:
    """``with BootSql() as seen: boot(...)``; then ``seen.fields()`` for the session_start."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.more = 0

    def __enter__(self) -> BootSql:
        from sqlalchemy import Engine, event

        event.listen(Engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        from sqlalchemy import Engine, event

        event.remove(Engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if _appshells_own(sys._getframe(1)):
            return  # appshell's connection check, its reading of the database's settings
        if len(self.statements) >= MAX_STATEMENTS:
            self.more += 1
            return
        text = str(statement)
        self.statements.append(text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + " …[cut]")

    def fields(self) -> dict[str, Any]:
        """``boot_sql`` (and ``boot_sql_more``, how many beyond the cap) where the boot ran any SQL."""
        if not self.statements:
            return {}
        return {"boot_sql": self.statements, **({"boot_sql_more": self.more} if self.more else {})}


def _appshells_own(frame: Any) -> bool:
    """Whether the first frame below SQLAlchemy's (and the event system's) is appshell's."""
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if not name.startswith("sqlalchemy"):
            return name.startswith("appshell.")
        frame = frame.f_back
    return False
