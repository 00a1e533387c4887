"""The destructive-statement guard (docs/safety.md, ``access.confirm_destructive``).

``DELETE``/``UPDATE`` without ``WHERE`` (in a CTE too), ``DROP``, ``TRUNCATE``
and ``ALTER … DROP`` — from raw SQL or from ORM bulk operations alike, on
every engine in the process, since it reads the SQL the database is about to
run with a parser for its dialect (:mod:`appshell.safety.statements`) — are shown and
asked about at a terminal, and refused without one unless ``--yes``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from appshell.errors import DestructiveStatementRefused

__all__ = ["destructive", "DestructiveStatementRefused", "install_guard"]


def destructive(statement: str, kind: str = "postgresql") -> str | None:
    """What makes *statement* (one or several) destructive on a *kind* database, or None."""
    from appshell.safety.statements import classify

    return next((one.destructive for one in classify(statement, kind) if one.destructive), None)


def _ask_tty(reason: str, statement: str) -> bool:
    print(
        f"\nappshell: {reason} — this statement would change every row or remove data:\n\n    "
        + statement.strip().replace("\n", "\n    ")
        + "\n",
        file=sys.stderr,
    )
    try:
        answer = input("Run it? Type 'yes' to run, anything else to refuse: ")
    except EOFError:
        return False
    return answer.strip().lower() == "yes"


def _quoting_checked(raw: Any, kind: str) -> None:
    """A connection whose server reads quotes otherwise (standard_conforming_strings off, sql_mode with
    NO_BACKSLASH_ESCAPES or ANSI_QUOTES) would be misread by the guard: refused (issue 25, F2)."""
    from appshell.safety.connection import lexing_mismatch
    from appshell.safety.statements import LEXING_REASON

    try:
        what = lexing_mismatch(raw, kind)
    except Exception:
        return
    if what:
        raise DestructiveStatementRefused(
            f"the destructive-statement guard cannot read SQL on this {kind} connection: {what} — "
            f"{LEXING_REASON}; refused — connect with the default setting"
        )


def install_guard(assume_yes: bool, ask: Callable[[str, str], bool] | None = None) -> None:
    from appshell.safety.connection import dialect_kind
    from appshell.safety.engines import on_every_engine

    interactive = sys.stdin.isatty()
    ask = ask or _ask_tty
    checked: dict[int, Any] = {}  # DBAPI connections whose quoting was found the parser's (id -> the connection)

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if assume_yes:
            return
        from appshell.safety.statements import LEXING_REASON, classify

        kind = dialect_kind(conn.dialect)
        raw = conn.connection.dbapi_connection
        if checked.get(id(raw)) is not raw and kind != "sqlite":
            _quoting_checked(raw, kind)  # once per connection: one round trip
            checked[id(raw)] = raw
        lexing = next((one for one in classify(statement, kind) if one.lexing), None)
        if lexing is not None:  # the guard would misread every statement after it (issue 25, F2): never asked, refused
            raise DestructiveStatementRefused(
                f"{lexing.lexing}: {LEXING_REASON} — refused while the destructive-statement "
                "guard is on; the statement was not run"
            )
        reason = destructive(statement, kind)
        if reason is None:
            return
        if interactive and ask(reason, statement):
            return
        how = "answered no" if interactive else "no terminal to confirm at; pass --yes to allow it"
        raise DestructiveStatementRefused(f"{reason} refused ({how}); the statement was not run")

    on_every_engine("before_cursor_execute", before)
