"""What a SQL string does, read with a real parser per dialect (sqlglot; docs/safety.md).

One function, :func:`classify`, serves the destructive guard, the sandbox
(its refusals and its dry-run accounting) and read-only: it splits a string
into statements with the dialect's tokenizer (so comments — MySQL's ``#``
included — and semicolons inside strings are read as the database reads
them), reads transaction control from each statement's leading keywords, and
parses the rest to find every table an ``INSERT``/``UPDATE``/``DELETE``
writes, data-modifying CTEs included. sqlglot is imported on the first call
only, and results are cached per string: SQLAlchemy sends the same text again
and again.

Where sqlglot cannot parse a statement, the answer leans to caution: a
statement that mentions ``DELETE``/``UPDATE``/``DROP``/``TRUNCATE`` is then
treated as destructive. What the parser cannot read at all — MySQL/MariaDB
executable comments (``/*! … */``, ``/*M! … */``: the server runs them), ``DO``,
``EXECUTE``/``PREPARE``, ``CALL``, ``MERGE``, ``COPY``, unicode-escaped names
(``U&"…"``), anything sqlglot reads as a ``Command`` — is marked ``opaque``: the
guard asks about it, the sandbox and read-only refuse it where it could end the
transaction or change the setting, and they ask the database afterwards
(docs/safety.md, "What the parser cannot read").

The parser reads SQL as the servers' defaults do. A statement that would change that — PostgreSQL's
``standard_conforming_strings`` and friends, MySQL's ``sql_mode``, ``SET NAMES`` — is marked ``lexing``, and
every session that reads SQL refuses it: after it, the parser would read the next statements differently from
the server (issue 25). MySQL/MariaDB executable comments are read both ways (run and skipped), and MariaDB's
``SET STATEMENT … FOR`` as the statement after ``FOR``.
"""
# Over 350 lines: one SQL reader per dialect; its rules are one table the guard, sandbox and read-only ask.

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "LEXING_REASON",
    "Statement",
    "classify",
    "proven_harmless",
    "server_text",
    "sqlglot_dialect",
    "SANDBOX_SAVEPOINT",
]

SANDBOX_SAVEPOINT = "appshell_sandbox"

_SQLGLOT = {"sqlite": "sqlite", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}

# Quick screen: a string with none of these words is a plain read, and is not parsed at all.
_WORTH_PARSING = re.compile(
    r"\b(insert|update|delete|replace|merge|create|alter|drop|truncate|rename|commit|end|rollback|abort|release|savepoint|"
    r"begin|start|set|reset|discard|pragma|prepare|xa|lock|unlock|analyze|optimize|repair|check|flush|grant|revoke|load|"
    r"cache|install|uninstall|call|handler|do|set_config|execute|exec|copy|explain)\b|u&|/\*m?!",
    re.I,
)
# The statement heads whose effect the parser cannot read, per dialect (MySQL's CALL/EXECUTE/PREPARE are
# refused in a sandbox anyway: they are not on the transactional allow-list below).
_OPAQUE_HEADS = {
    "postgresql": {"DO", "EXECUTE", "CALL", "MERGE", "COPY", "PREPARE"},
    "mysql": {"CALL", "EXECUTE", "PREPARE"},
    "mariadb": {"CALL", "EXECUTE", "PREPARE"},
    "sqlite": set(),
}
# MySQL/MariaDB run what is inside /*! … */ and /*M! … */ (optionally from a version number on).
_EXECUTABLE_COMMENT = re.compile(r"/\*M?!\d*", re.I)
# MySQL/MariaDB commit implicitly before (and after) most statements that are not these:
# in a sandbox, everything else is refused (an allow-list: a new statement type is refused, not missed).
_MYSQL_TRANSACTIONAL = {
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "WITH",
    "SAVEPOINT",
    "RELEASE",
    "ROLLBACK",
    "SET",
    "SHOW",
    "DESCRIBE",
    "DESC",
    "EXPLAIN",
    "DO",
    "VALUES",
    "TABLE",
    "(",
    "USE",
}
_PARAMS = re.compile(r"%\(\w+\)s|%s")
_OPS = {"Insert": "inserted", "Update": "updated", "Delete": "deleted"}


@dataclass(frozen=True)
class Statement:
    """One statement of a SQL string, as appshell's safety needs to know it."""

    text: str
    head: str  # the leading keyword, upper case ("" for an empty statement)
    writes: tuple[
        tuple[str, str, bool], ...
    ] = ()  # (table, inserted|updated|deleted, counted by the cursor's rowcount)
    ddl: str | None = None  # "CREATE TABLE scratch": schema changes, for the dry-run summary
    destructive: str | None = None  # why the guard asks, e.g. "DELETE without WHERE"
    savepoint: tuple[str, str] | None = None  # (begin|release|rollback, name)
    escapes: str | None = None  # why this would end or change the sandbox's transaction
    read_write: str | None = None  # why this would switch a read-only session to read-write
    opaque: str | None = None  # why the parser cannot read what it does: the database is asked afterwards
    lexing: str | None = None  # why this would change how the server reads SQL (quotes, escapes, encoding)


def sqlglot_dialect(kind: str) -> str | None:
    return _SQLGLOT.get(kind)


def classify(sql: str, kind: str) -> tuple[Statement, ...]:
    """The statements of *sql* on a *kind* database (sqlite, postgresql, mysql, mariadb)."""
    if not _WORTH_PARSING.search(sql):
        return (Statement(text=sql, head="SELECT"),)
    if kind in ("mysql", "mariadb"):
        served = server_text(sql)
        if served != sql:
            return _worst_of_both(sql, _executable_comments(served, kind), kind)
    return _classify(sql, kind)


def _worst_of_both(sql: str, served: tuple[Statement, ...], kind: str) -> tuple[Statement, ...]:
    """A versioned executable comment (``/*M!999999 WHERE id = 1 */``) runs or not by the server's version: the
    guard reads the string both ways — its contents kept, and skipped as a plain comment — and takes the worst
    (issue 25, F9: a WHERE the server never saw)."""
    from dataclasses import replace

    if any(one.destructive for one in served):
        return served
    skipped = next((one.destructive for one in _classify(sql, kind) if one.destructive), None)
    if skipped is None or not served:
        return served
    return (replace(served[0], destructive=f"{skipped} (where the server skips an executable comment)"), *served[1:])


# Heads whose statements cannot switch a session setting, and the words before "(" that are SQL syntax or
# built-in functions, not user functions. Writes are not on the list: in a read-only session one that succeeds
# is itself news (the setting was lifted behind the parser's back — by the driver's own execute(), say).
_SETTING_SAFE_HEADS = {"SELECT", "WITH", "(", "VALUES", "TABLE", "SHOW", "DESCRIBE", "DESC", "SAVEPOINT", "RELEASE"}
_CALL = re.compile(r"([A-Za-z_][\w$]*)\s*\(")
_NOT_A_USER_FUNCTION = frozenset(
    (
        "in exists any all some values as over from join on and or not "
        "where select filter within using cast case when then else "
        "into by partition table is returning set "
        "count sum min max avg coalesce nullif greatest least lower "
        "upper length char_length octet_length substr substring trim "
        "ltrim rtrim concat replace round abs floor ceil ceiling now "
        "date time timestamp extract date_trunc current_timestamp "
        "row_number rank dense_rank lag lead first_value last_value "
        "array_agg string_agg group_concat json_object json_array "
        "jsonb_build_object json_build_object to_char to_date position "
        "strftime datetime julianday ifnull iif decimal numeric "
        "varchar char interval"
    ).split()
)


@lru_cache(maxsize=2048)  # SQLAlchemy sends the same text again and again
def proven_harmless(sql: str, parsed: tuple[Statement, ...]) -> bool:
    """Can *sql* be shown, without asking the database, to leave the session's settings as they were?
    False for what the parser cannot read, for settings statements, and for calls of functions that are not
    SQL's own (a user function may call set_config()): after those, guarded read-only asks the database."""
    if any(one.opaque or one.read_write or one.writes or one.head not in _SETTING_SAFE_HEADS for one in parsed):
        return False
    return all(name.lower() in _NOT_A_USER_FUNCTION for name in _CALL.findall(_STRINGS.sub("''", sql)))


_STRINGS = re.compile(r"'(?:[^']|'')*'")


def server_text(sql: str) -> str:
    """*sql* as a MySQL/MariaDB server of the newest version reads it: the markers of executable comments
    (``/*!50000 … */``, ``/*M! … */``) dropped, their contents kept. Quoted text and plain comments stay."""
    out: list[str] = []
    at, n, depth = 0, len(sql), 0
    while at < n:
        c = sql[at]
        if c in "'\"`":
            end = at + 1
            while end < n and sql[end] != c:
                end += 2 if sql[end] == "\\" and c != "`" else 1
            out.append(sql[at : end + 1])
            at = end + 1
        elif sql.startswith("/*", at):
            opener = _EXECUTABLE_COMMENT.match(sql, at)
            if opener is not None:
                out.append(" ")
                depth += 1
                at = opener.end()
            else:
                end = sql.find("*/", at + 2)
                end = n if end < 0 else end + 2
                out.append(sql[at:end])
                at = end
        elif depth and sql.startswith("*/", at):
            out.append(" ")
            depth -= 1
            at += 2
        elif c == "#" or sql.startswith("-- ", at):
            end = sql.find("\n", at)
            end = n if end < 0 else end
            out.append(sql[at:end])
            at = end
        else:
            out.append(c)
            at += 1
    return "".join(out)


def _executable_comments(served: str, kind: str) -> tuple[Statement, ...]:
    """What the server runs out of executable comments is classified as the statement it is, and is opaque:
    a version number decides whether it runs, and the sandbox and read-only refuse it (the worst case)."""
    from dataclasses import replace

    why = "an executable comment (/*! … */: the server runs what a parser reads as a comment)"
    return tuple(
        replace(
            one,
            opaque=why,
            escapes=f"{one.escapes}, in {why}" if one.escapes else why,
            read_write=f"{one.read_write}, in {why}" if one.read_write else why,
        )
        for one in _classify(served, kind)
    )


@lru_cache(maxsize=2048)
def _classify(sql: str, kind: str) -> tuple[Statement, ...]:
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.errors import SqlglotError
    from sqlglot.tokens import TokenType

    dialect_name = _SQLGLOT.get(kind, "postgres")
    dialect = Dialect.get_or_raise(dialect_name)
    try:
        tokens = _tokens(dialect, sql)
    except SqlglotError:
        return (_unreadable(sql, kind),)
    out: list[Statement] = []
    chunk: list[Any] = []
    for token in [*tokens, None]:
        if token is None or token.token_type == TokenType.SEMICOLON:
            if chunk:
                out.append(_one(sql[chunk[0].start : chunk[-1].end + 1], chunk, kind, dialect_name))
            chunk = []
        else:
            chunk.append(token)
    return tuple(out) or (Statement(text=sql, head=""),)


def _tokens(dialect: Any, sql: str) -> list[Any]:
    """The dialect's tokens of *sql*, with what sqlglot swallowed into a command's string read as tokens too.

    sqlglot's tokenizer reads a keyword it treats as a "command" (``RELEASE`` since 30.31, ``DO``, ``SHOW``…)
    and then the rest of the statement as one STRING token. Which keywords those are changes between
    releases — 30.31 turned ``RELEASE SAVEPOINT x`` into ``RELEASE`` + ``'SAVEPOINT x'`` and lifted a
    sandbox refusal. So that string is tokenized again, and every statement is read word by word whatever
    the release (tests/test_safety_statements.py pins this for every command keyword)."""
    from sqlglot.tokens import TokenType

    tokens = dialect.tokenize(sql)
    out: list[Any] = []
    for at, token in enumerate(tokens):
        previous = tokens[at - 1] if at else None
        if (
            token.token_type == TokenType.STRING
            and previous is not None
            and previous.token_type in dialect.tokenizer_class.COMMANDS
        ):
            start = sql.find(token.text, previous.end + 1)
            start = start if start >= 0 else previous.end + 1
            for inner in _tokens(dialect, token.text):  # again: EXPLAIN ANALYZE … is two commands in sqlglot 25
                inner.start += start
                inner.end += start
                out.append(inner)
            continue
        out.append(token)
    return out


def _unreadable(sql: str, kind: str) -> Statement:
    """A string the tokenizer rejects: assume the worst of it."""
    words = set(re.findall(r"[a-z_]+", sql.lower()))
    bad = words & {"delete", "update", "drop", "truncate"}
    return Statement(
        text=sql,
        head=(sql.split() or [""])[0].upper(),
        destructive="a statement appshell cannot read" if bad else None,
        escapes="a statement appshell cannot read"
        if words & {"commit", "end", "release", "begin", "start", "autocommit"}
        else None,
        opaque="a statement the tokenizer cannot read",
    )


def _name(token: Any) -> str:
    return str(token.text).strip('"`[]').lower()


def _one(text: str, tokens: list[Any], kind: str, dialect: str) -> Statement:
    words = [str(t.text).upper() for t in tokens]
    head = words[0]
    mysql = kind in ("mysql", "mariadb")
    savepoint: tuple[str, str] | None = None
    escapes = read_write = None

    if head in ("COMMIT", "END", "ABORT"):
        escapes = f"{head} ends the transaction"
    elif head == "ROLLBACK":
        if "TO" in words:
            savepoint = ("rollback", _name(tokens[-1]))
        else:
            escapes = "ROLLBACK ends the transaction"
    elif head == "RELEASE":
        savepoint = ("release", _name(tokens[-1]))
        if savepoint[1] == SANDBOX_SAVEPOINT:
            escapes = "RELEASE of the sandbox's savepoint"
    elif head == "SAVEPOINT":
        savepoint = ("begin", _name(tokens[-1]))
    elif head in ("BEGIN", "START", "XA") or (head == "PREPARE" and "TRANSACTION" in " ".join(words)):
        escapes = f"{head} would start or end a transaction"
        if "WRITE" in words:
            read_write = f"{' '.join(words)} starts a read-write transaction"
    elif head in ("SET", "RESET", "DISCARD"):
        joined = " ".join(words)
        if "AUTOCOMMIT" in joined:
            escapes = "it changes autocommit"
        elif (
            "TRANSACTION" in words
            or "CHARACTERISTICS" in words
            or "ISOLATION" in joined
            or "TRANSACTION_ISOLATION" in joined
        ):
            escapes = "it changes the transaction mode"
        if "READ_ONLY" in joined or "WRITE" in words or (head == "RESET" and "ALL" in words) or head == "DISCARD":
            read_write = "it changes the read-only mode"
    elif head == "PRAGMA" and len(words) > 1 and words[1].lower() == "query_only":
        if len(words) > 2:
            read_write = "PRAGMA query_only changes the read-only mode"
    lexing = None
    lexed = _LEXING.get(kind)
    if head in ("SET", "RESET") and lexed is not None and lexed.search(text):
        lexing = f"{short(text)} changes how SQL is read"
    if "SET_CONFIG" in words:
        at = words.index("SET_CONFIG")
        first = tokens[at + 2] if at + 3 < len(tokens) else None
        name = str(first.text).lower() if first is not None and first.token_type.name == "STRING" else None
        if name is None or tokens[at + 3].token_type.name != "COMMA" or "read_only" in name or "isolation" in name:
            read_write = "set_config() may change the read-only mode"
        if name is None or tokens[at + 3].token_type.name != "COMMA" or (lexed is not None and lexed.search(name)):
            lexing = "set_config() may change how SQL is read"

    implicit = (
        mysql
        and head not in _MYSQL_TRANSACTIONAL
        and not (head in ("CREATE", "DROP") and len(words) > 1 and words[1] == "TEMPORARY")
    )
    if mysql and head == "SET" and escapes:
        implicit = True
    if implicit and escapes is None:
        escapes = f"{head} cannot be rolled back on {kind} (it commits implicitly)"

    if mysql and head == "SET" and len(words) > 2 and words[1] == "STATEMENT" and "FOR" in words[2:]:
        # MariaDB's SET STATEMENT var=value [, …] FOR <statement>: the statement after FOR is what runs (issue 25, F9).
        at = words.index("FOR", 2) + 1
        if at < len(tokens):
            from dataclasses import replace

            inner = _one(text[tokens[at].start - tokens[0].start :], tokens[at:], kind, dialect)
            return replace(
                inner,
                text=text,
                escapes=escapes or inner.escapes,
                read_write=read_write or inner.read_write,
                lexing=lexing or inner.lexing,
            )
    writes, ddl, destructive, parsed = _parse(text, head, words, dialect)
    opaque = _opaque(head, words, tokens, kind, parsed)
    if opaque is not None:
        destructive = destructive or _worst_case(head, words, text, kind)
        if _unicode_name(tokens) and head in ("SET", "RESET", "ALTER"):
            # A name the parser cannot spell may be default_transaction_read_only or transaction_isolation
            # (elsewhere, in a SELECT say, it is re-checked after: it is opaque).
            read_write = read_write or 'a unicode-escaped name (U&"…") may change the read-only mode'
            escapes = escapes or 'a unicode-escaped name (U&"…") may change the transaction mode'
    return Statement(
        text=text,
        head=head,
        writes=writes,
        ddl=ddl,
        destructive=destructive,
        savepoint=savepoint,
        escapes=escapes,
        read_write=read_write,
        opaque=opaque,
        lexing=lexing,
    )


def short(text: str) -> str:
    one = " ".join(text.split())
    return one if len(one) <= 60 else one[:57] + "…"


# Settings that change how the server reads SQL — quotes, backslashes, the bytes of the text (issue 25, F2):
# after one, appshell's parser would read the next statements differently from the database.
_MYSQL_LEXING = re.compile(r"sql_mode|\bnames\b|character\s+set|\bcharset\b|character_set_(client|connection)", re.I)
_LEXING: dict[str, re.Pattern[str] | None] = {
    "postgresql": re.compile(
        r"standard_conforming_strings|escape_string_warning|backslash_quote|client_encoding|\bnames\b", re.I
    ),
    "mysql": _MYSQL_LEXING,
    "mariadb": _MYSQL_LEXING,
    "sqlite": None,
}
LEXING_REASON = (
    "it changes how SQL is read: appshell's parser would read the next statements differently from the database"
)


def _unicode_name(tokens: list[Any]) -> bool:
    """``U&"…"`` (PostgreSQL): sqlglot reads a variable U, an ampersand and a name it cannot unescape."""
    return any(
        str(a.text).upper() == "U" and b.token_type.name == "AMP" and c.token_type.name in ("IDENTIFIER", "STRING")
        for a, b, c in zip(tokens, tokens[1:], tokens[2:])
    )


def _opaque(head: str, words: list[str], tokens: list[Any], kind: str, parsed: bool | None) -> str | None:
    """Why the parser cannot read what this statement does, or None where it can."""
    if head == "PREPARE" and "TRANSACTION" in words:
        return None  # two-phase commit: an escape, read as such
    if head in _OPAQUE_HEADS.get(kind, ()):
        return f"{head} runs what appshell cannot read"
    if _unicode_name(tokens):
        return 'a unicode-escaped name (U&"…")'
    if head == "EXPLAIN" and "ANALYZE" in words:
        return "EXPLAIN ANALYZE runs the statement it explains"
    if parsed is False:
        return f"{head}: sqlglot could not parse it"
    return None


def _worst_case(head: str, words: list[str], text: str, kind: str) -> str | None:
    """What the guard asks about a statement the parser cannot read."""
    if head in ("DO", "CALL", "EXECUTE") or (head == "PREPARE" and "TRANSACTION" not in words and kind != "postgresql"):
        return f"{head} runs code appshell cannot read (it may change or remove every row)"
    if head == "PREPARE":
        inner = re.split(r"\bAS\b", text, maxsplit=1, flags=re.I)
        found = _classify(inner[1], kind) if len(inner) > 1 else ()
        reason = next((one.destructive for one in found if one.destructive), None)
        return f"PREPARE of a {reason}" if reason else None
    if head == "MERGE" and {"DELETE", "UPDATE"} & set(words):
        return "MERGE that updates or deletes rows (appshell cannot tell which)"
    if head == "COPY" and "FROM" in words:
        return "COPY … FROM loads rows appshell cannot see"
    if head == "EXPLAIN" and "ANALYZE" in words and {"DELETE", "UPDATE"} & set(words):
        return "EXPLAIN ANALYZE runs the DELETE/UPDATE it explains"
    return None


_DDL_HEADS = ("CREATE", "ALTER", "DROP", "TRUNCATE", "RENAME", "COMMENT")


def _parse(
    text: str, head: str, words: list[str], dialect: str
) -> tuple[tuple[tuple[str, str, bool], ...], str | None, str | None, bool | None]:
    """(writes, ddl, destructive, parsed) from sqlglot's tree of one statement (parsed: None where it was not tried)."""
    if head not in ("INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "(", "MERGE", *_DDL_HEADS):
        return (), None, None, None
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        # A parameter cannot change a statement's shape: a NULL literal stands in for it (sqlglot reads
        # pyformat placeholders in some dialects only, and `?::VARCHAR` in none).
        with (
            _quiet_sqlglot()
        ):  # "contains unsupported syntax. Falling back to parsing as a 'Command'" is not the operator's news
            tree = sqlglot.parse_one(_PARAMS.sub("NULL", text), read=dialect)
    except SqlglotError:
        tree = None
    if tree is None or isinstance(tree, exp.Command):
        return (*_by_keywords(head, words), False)
    writes: list[tuple[str, str, bool]] = []
    destructive = None
    for node in tree.find_all(exp.Insert, exp.Update, exp.Delete):
        table = _table_of(node)
        writes.append((table, _OPS[type(node).__name__], node is tree))
        if not isinstance(node, exp.Insert) and node.args.get("where") is None:
            destructive = destructive or f"{type(node).__name__.upper()} without WHERE"
    ddl = None
    if isinstance(tree, exp.Drop):
        kind = str(tree.args.get("kind") or "").upper()
        ddl = destructive = f"DROP {kind} {_table_of(tree)}".replace("  ", " ")
    elif isinstance(tree, exp.TruncateTable):
        ddl = destructive = "TRUNCATE " + ", ".join(t.name for t in tree.expressions if isinstance(t, exp.Table))
    elif isinstance(tree, exp.Alter):
        ddl = f"ALTER {str(tree.args.get('kind') or 'TABLE').upper()} {_table_of(tree)}"
        if any(isinstance(a, exp.Drop) or "Drop" in type(a).__name__ for a in tree.args.get("actions") or []):
            destructive = ddl + " … DROP"
    elif isinstance(tree, exp.Create):
        ddl = f"CREATE {str(tree.args.get('kind') or '').upper()} {_table_of(tree)}"
    return tuple(writes), ddl, destructive, True


@contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    import logging

    logger = logging.getLogger("sqlglot")
    was, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = was


def _table_of(node: Any) -> str:
    from sqlglot import exp

    target = node.this
    if isinstance(target, exp.Schema):
        target = target.this
    if isinstance(target, exp.Table):
        return str(target.name)
    found = node.find(exp.Table)
    return str(found.name) if found is not None else "?"


def _by_keywords(head: str, words: list[str]) -> tuple[tuple[tuple[str, str, bool], ...], str | None, str | None]:
    """A statement sqlglot could not parse: keywords only, leaning to caution."""
    ddl = " ".join(words[:3]) if head in _DDL_HEADS else None
    if head in ("DROP", "TRUNCATE") or (head == "ALTER" and "DROP" in words):
        return (), ddl, " ".join(words[:3])
    writes: tuple[tuple[str, str, bool], ...] = ()
    op = {"INSERT": "inserted", "REPLACE": "inserted", "UPDATE": "updated", "DELETE": "deleted"}.get(head)
    if op is not None:
        after = {"INSERT": "INTO", "REPLACE": "INTO", "UPDATE": "UPDATE", "DELETE": "FROM"}[head]
        at = words.index(after) + 1 if after in words else len(words)
        writes = ((words[at].strip('"`[]').lower(), op, True),) if at < len(words) else ()
    if {"DELETE", "UPDATE"} & set(words) and "WHERE" not in words:
        return writes, ddl, "a DELETE/UPDATE without WHERE (read by keywords: appshell could not parse it)"
    return writes, ddl, None
