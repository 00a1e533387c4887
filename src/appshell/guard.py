"""The destructive-statement guard (SPEC §5, ``access.confirm_destructive``).

``DELETE``/``UPDATE`` without ``WHERE``, ``DROP`` and ``TRUNCATE`` — from raw
SQL or from ORM bulk operations alike, since it looks at the SQL the database
is about to run — are shown and asked about at a terminal, and refused
without one unless ``--yes``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["destructive", "DestructiveStatementRefused", "install_guard"]

_STRINGS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)


class DestructiveStatementRefused(RuntimeError):
    """Raised in the user's code: the statement was not run."""


def destructive(statement: str) -> str | None:
    """What makes *statement* destructive, or None."""
    sql = _STRINGS.sub("''", _COMMENTS.sub(" ", statement)).strip()
    head = sql.split(None, 1)[0].upper() if sql else ""
    has_where = re.search(r"\bWHERE\b", sql, re.I) is not None
    if head == "DELETE" and not has_where:
        return "DELETE without WHERE"
    if head == "UPDATE" and not has_where:
        return "UPDATE without WHERE"
    if head in ("DROP", "TRUNCATE"):
        return head
    return None


def _ask_tty(reason: str, statement: str) -> bool:
    print(f"\nappshell: {reason} — this statement would change every row or remove data:\n\n    "
          + statement.strip().replace("\n", "\n    ") + "\n", file=sys.stderr)
    try:
        answer = input("Run it? Type 'yes' to run, anything else to refuse: ")
    except EOFError:
        return False
    return answer.strip().lower() == "yes"


def install_guard(engine: Engine, assume_yes: bool, ask: Callable[[str, str], bool] | None = None) -> None:
    from sqlalchemy import event

    interactive = sys.stdin.isatty()
    ask = ask or _ask_tty

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        reason = destructive(statement)
        if reason is None or assume_yes:
            return
        if interactive and ask(reason, statement):
            return
        how = "answered no" if interactive else "no terminal to confirm at; pass --yes to allow it"
        raise DestructiveStatementRefused(f"{reason} refused ({how}); the statement was not run")

    event.listen(engine, "before_cursor_execute", before)
