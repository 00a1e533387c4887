"""Did a session write? Word checks first, then appshell's SQL classifier (appshell.safety.statements).

Shared by ``audit tail``/``show`` (appshell.audit.review) and the review page's list
(appshell.audit.queries), so neither imports the other for it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appshell.audit.review import Session

__all__ = ["wrote_sql", "session_wrote", "PARSE_MAX"]


def _dialect(database: Any) -> str:
    scheme = str(database or "").split(":", 1)[0].split("+", 1)[0]
    return {"postgres": "postgresql"}.get(scheme, scheme)


# The first word of a statement that writes (rows or schema): such a statement is "wrote" without a parse.
_WRITE_VERBS = frozenset(
    {
        "insert",
        "update",
        "delete",
        "merge",
        "replace",
        "upsert",
        "create",
        "drop",
        "alter",
        "truncate",
        "rename",
        "grant",
        "revoke",
        "copy",
        "load",
        "comment",
        "reindex",
        "cluster",
        "vacuum",
        "call",
        "do",
        "execute",
        "exec",
        "import",
        "refresh",
    }
)
# A statement holding none of these words (outside nothing: a literal counts too) cannot write: no parse either.
_MAY_WRITE = re.compile(
    r"\b(?:" + "|".join(sorted(_WRITE_VERBS | {"into", "set", "lock", "pragma", "attach", "detach"})) + r")\b",
    re.IGNORECASE,
)
_LEAD = re.compile(r"(?:\s+|--[^\n]*\n?|/\*.*?\*/|\()*([A-Za-z]+)", re.DOTALL)
PARSE_MAX = 64 * 1024  # longer statements than this that the two word checks cannot decide lean to "wrote", unparsed


def _cheap_wrote(text: str) -> bool | None:
    """True or False where two word checks decide it (a write verb first; no writing word anywhere), else None."""
    lead = _LEAD.match(text)
    if lead is not None and lead[1].lower() in _WRITE_VERBS:
        return True
    if _MAY_WRITE.search(text) is None:
        return False
    return None


def wrote_sql(sql: list[str], database: Any) -> bool:
    """Did any of these statements write (rows or schema)? Word checks first, then appshell's SQL classifier.

    A parse of a megabyte INSERT takes seconds (issue 25): a statement whose first word writes is
    "wrote" at once, one with no writing word anywhere is not, and only the rest is parsed — up to
    PARSE_MAX characters; a longer one leans to "wrote" (a review must never miss a write).
    """
    from appshell.safety.statements import classify

    kind = _dialect(database)
    undecided = []
    for text in sql:
        if not isinstance(text, str):
            continue
        cheap = _cheap_wrote(text)
        if cheap:
            return True
        if cheap is None:
            undecided.append(text)
    for text in undecided:
        if len(text) > PARSE_MAX:
            return True
        try:
            if any(st.writes or st.ddl for st in classify(text, kind)):
                return True
        except Exception:  # a classifier bug must not hide the session: lean to "wrote"
            return True
    return False


def session_wrote(s: Session) -> bool:
    database = s.start.get("database")
    return any(wrote_sql(list(r.get("sql") or []), database) for r in s.records if r.get("event") == "result")
