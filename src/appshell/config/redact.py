"""Masking of secrets, without erasing evidence (docs/audit.md: redaction, threat model).

Two kinds of masking live here:

* :func:`mask_url` finds every URL in a text and masks its password and its
  password-like query parameters, parsing each URL with SQLAlchemy's
  ``make_url`` — one function for the banner, ``settings``, doctor, error
  messages and the audit records.
* :class:`Redactor` masks known secret *values* in audit records. Its values
  come from secret-named variables and the profile's regexes, and it must not
  become an eraser: an operator who sets ``FOO_TOKEN=delete`` or puts the whole
  program into ``FOO_TOKEN`` must not blank out what they ran. The rules that
  keep the evidence are in :func:`keeps_evidence` and :func:`is_secret_value`;
  docs/audit.md states them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "is_secret_name",
    "mask_url",
    "url_secrets",
    "mask_mapping",
    "keeps_evidence",
    "is_secret_value",
    "sql_keywords",
    "Redactor",
]

MASK = "***"
MIN_SECRET_LENGTH = 8  # shorter values are never masked: "delete", "orders", "id=42" stay readable

_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
_SECRET_PARAMETER = re.compile(r"pwd|pass", re.IGNORECASE)  # URL query only: $PWD is a folder

# -- URLs ----------------------------------------------------------------------------------
# Where a URL starts: a scheme as make_url reads it ([\w+]+) right before "://". A URL ends at
# whitespace, at a quote (so code around a URL inside a string literal is never swallowed) or
# where the next URL starts.
_URL_START = re.compile(r"(?<![\w+])[A-Za-z][\w+]*://")
_URL_END = re.compile(r"[\s'\"`]|(?<![\w+])[A-Za-z][\w+]*://")
# Inside a "password", text that only SQL or a comment would hold: such a span is code
# dressed as a URL (`delete/*a://u:*/from/**/orders/*@h*/`), and masking it would erase it.
_CODE_IN_PASSWORD = ("/*", "*/", "--", "$$")
_QUERY_PARAM = re.compile(r"(?<=[?&;])(?P<name>[^=&;#?\s]+)=(?P<value>[^&;#\s]*)")


def is_secret_name(name: str) -> bool:
    """Is *name* (a variable or a URL query parameter) named like a secret?"""
    return bool(_SECRET_NAME.search(name))


def _secret_parameter(name: str) -> bool:
    return is_secret_name(name) or bool(_SECRET_PARAMETER.fullmatch(name))


def _userinfo_span(url: str, authority: int) -> tuple[int, int] | None:
    """Where the password of *url* is: (start, end), or None without one.

    As make_url reads it, the user name runs to the first ':' (no '/' in it) and the password
    to an '@'. A password may hold any character — '/', '#', '?', ':' and even an unencoded
    '@' — so the password ends at the *last* '@' before the first '/' or '?' that follows its
    first '@'.
    """
    user = re.match(r"[^:/@]*:", url[authority:])
    if user is None:
        return None
    start = authority + user.end()
    first_at = url.find("@", start)
    if first_at < 0:
        return None
    delimiter = re.compile(r"[/?]").search(url, first_at)
    end = url.rfind("@", start, delimiter.start() if delimiter else len(url))
    return start, end


def _mask_one_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None  # not a URL make_url accepts: still mask what stands where a password would
    authority = url.index("://") + 3
    span = _userinfo_span(url, authority)
    if span is not None and (parsed is None or parsed.password is not None):
        start, end = span
        password = url[start:end]
        if password and password != MASK and not any(code in password for code in _CODE_IN_PASSWORD):
            url = url[:start] + MASK + url[end:]
    # Query parameters: make_url decodes them; the raw text is masked where it stands.
    return _QUERY_PARAM.sub(
        lambda m: f"{m['name']}={MASK}" if _secret_parameter(m["name"]) and m["value"] else m.group(), url
    )


def mask_url(text: str) -> str:
    """*text* with the password and password-like query parameters of every URL in it as ***."""
    if "://" not in text:
        return text
    if _URL_START.match(text) and "\n" not in text:
        # The whole text is one URL (a setting, a database field, an argv item): its password
        # may even hold spaces or quotes, which end a URL inside free text.
        return _mask_one_url(text)
    out: list[str] = []
    pos = 0
    for start in _URL_START.finditer(text):
        if start.start() < pos:
            continue  # inside the previous URL
        end = _URL_END.search(text, start.end())
        stop = end.start() if end else len(text)
        out.append(text[pos : start.start()])
        out.append(_mask_one_url(text[start.start() : stop]))
        pos = stop
    out.append(text[pos:])
    return "".join(out)


def url_secrets(text: str) -> list[str]:
    """The password and secret query values of the URL *text*, decoded and raw, if any."""
    from urllib.parse import unquote

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError):
        return []
    found: list[str] = []
    if parsed.password:
        found.append(str(parsed.password))
        span = _userinfo_span(text, text.index("://") + 3)
        if span is not None:
            found.append(unquote(text[span[0] : span[1]]))
    for name, value in parsed.query.items():
        if _secret_parameter(name):
            found.extend([value] if isinstance(value, str) else list(value))
    return [s for s in found if s]


def mask_mapping(values: Mapping[str, object]) -> dict[str, object]:
    """A copy for display: secret-named values as ***, URL passwords masked in the others."""
    masked: dict[str, object] = {}
    for name, value in values.items():
        if is_secret_name(name) and value not in (None, ""):
            masked[name] = MASK
        elif isinstance(value, str):
            masked[name] = mask_url(value)
        else:
            masked[name] = value
    return masked


# -- evidence --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def sql_keywords() -> frozenset[str]:
    """SQL and Python keywords, lower case, from maintained lists (not written by hand here).

    SQLAlchemy's reserved words for its generic compiler, PostgreSQL, MySQL and MariaDB, and
    sqlglot's tokenizer keywords (TRUNCATE, VACUUM, COMMIT, … are reserved nowhere) where
    sqlglot is installed. Loaded only when a candidate secret is a plain word.
    """
    import keyword

    from sqlalchemy.dialects.mysql.reserved_words import RESERVED_WORDS_MARIADB, RESERVED_WORDS_MYSQL
    from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as POSTGRESQL
    from sqlalchemy.sql.compiler import RESERVED_WORDS as GENERIC

    words = {w.lower() for w in (*GENERIC, *POSTGRESQL, *RESERVED_WORDS_MYSQL, *RESERVED_WORDS_MARIADB)}
    words.update(w.lower() for w in (*keyword.kwlist, *keyword.softkwlist))
    try:
        from sqlglot.tokens import Tokenizer
    except ImportError:
        pass
    else:
        words.update(k.lower() for k in Tokenizer.KEYWORDS if re.fullmatch(r"[A-Za-z_]+", k))
    return frozenset(words)


def _reads_as_python(value: str) -> bool:
    """Does *value* parse as Python that does something (a call, an import, a compound statement)?

    A bare name, number or `key=value` does nothing: secrets such as `card=4111…` look so."""
    import ast  # lazily: most runs never need it

    code_nodes = (ast.Call, ast.Lambda, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)
    try:
        tree = ast.parse(value)
    except (SyntaxError, ValueError):
        return False
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr):
            continue
        # `name=value` is how secrets look (`card=4111…`); assigning to an attribute or an
        # item changes an object (`order.status='void'`), and every other statement is code.
        if not (isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets)):
            return True
    return any(isinstance(node, code_nodes) for node in ast.walk(tree))


def keeps_evidence(value: str) -> bool:
    """True where masking *value* would erase evidence, so it is never masked.

    Kept: values shorter than MIN_SECRET_LENGTH; a SQL or Python keyword; text whose words
    include a keyword (`delete from order_lines`); anything that reads as Python code (the
    whole program put into FOO_TOKEN).
    """
    if len(value.strip()) < MIN_SECRET_LENGTH:
        return True
    if re.search(r"\s", value.strip()):
        words = {w.lower() for w in re.findall(r"[A-Za-z_]+", value)}
        if words & sql_keywords():
            return True
    elif re.fullmatch(r"[A-Za-z_]+", value) and value.lower() in sql_keywords():
        return True
    return _reads_as_python(value)


def is_secret_value(value: str) -> bool:
    """May the value of a secret-named variable be masked wherever it occurs?

    Beyond :func:`keeps_evidence`, a secret is one token: a value with whitespace reads as
    text, a value of letters and underscores only reads as a name (`order_lines`,
    `OrderLine`), and digits only read as a number (an id): masking those would hide what a
    statement touched, not a credential. Generated secrets mix letters, digits and signs.
    """
    if not value or re.search(r"\s", value):
        return False
    if re.fullmatch(r"[A-Za-z_]+|[0-9.,+-]+", value):
        return False
    return not keeps_evidence(value)


class Redactor:
    """Masks secrets in free text: URL passwords, known secret values, the profile's regexes."""

    def __init__(self, secrets: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if is_secret_value(s)}, key=len, reverse=True)
        self._patterns = [re.compile(p) for p in patterns]

    @property
    def secrets(self) -> list[str]:
        """The values this redactor masks (for tests and doctor; never print them)."""
        return list(self._secrets)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], patterns: Iterable[str] = ()) -> Redactor:
        """Secret-named variables of *environ*, and the passwords of URLs among its values."""
        secrets: list[str] = []
        for name, value in environ.items():
            if not value:
                continue
            if is_secret_name(name):
                secrets.append(value)
            if "://" in value:
                secrets.extend(url_secrets(value))
        return cls(secrets, patterns)

    def _pattern_match(self, match: re.Match[str]) -> str:
        return match.group() if keeps_evidence(match.group()) else MASK

    def known(self, text: str) -> str:
        """*text* with only the secret values appshell itself read (config, environment) masked."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def __call__(self, text: str) -> str:
        text = mask_url(text)
        text = self.known(text)
        for pattern in self._patterns:
            text = pattern.sub(self._pattern_match, text)
        return text
