"""Protected data: the columns that hold personal or secret values, masked until ``unlock(reason)``.

What is protected is declared once, read from the places a team already states it
(docs/usage.md, "Protected data"):

- a column's ``info={"protected": True}`` (``False``: not protected by its name or type);
- the profile's ``[protect] columns``: glob patterns on ``table.column`` (``"*.password_hash"``);
- a built-in set of name patterns (:data:`DEFAULT_NAMES`: password, secret, token, ssn, iban,
  card number, …), which ``protect.default_names = false`` turns off;
- encrypted column types (sqlalchemy-utils' ``StringEncryptedType``/``EncryptedType``), told by
  their class name, so sqlalchemy-utils need not be installed;
- and ``protect.exclude`` patterns take columns back out.

Masking happens in this process, on what it shows a person: helper tables, reprs, history (and,
through :func:`mask_parameters` and :func:`mask_mapping`, the SQL echo's parameters and ``--json``,
where those call them). It is a guard against *accidental* exposure, not enforcement: the operator
runs arbitrary Python as the app's user, and reading an attribute (``customer.email``) gives the
real value, as the app's own code needs it. Only a database role without ``SELECT`` on the columns
keeps them from a session (``protect.column_grants``: :func:`leave_out`, :func:`prove_column_grants`,
:class:`RoleSwitch`; docs/safety.md).

Nothing here is computed at start-up: what a table protects is worked out the first time a table
or a repr is drawn, and kept per table and per mapper.
"""
# Over 350 lines: the rules and every masking path (rows, mappings, reprs, parameters) read one Protection.

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from appshell.process import PROCESS

if TYPE_CHECKING:
    from appshell.config.profiles import Profile
    from appshell.record.journal import Journal

__all__ = [
    "INFO_KEY",
    "DEFAULT_NAMES",
    "Rules",
    "Protection",
    "active",
    "activate",
    "deactivate",
    "tables_of",
    "NotRead",
    "NOT_READ",
    "mask",
    "mask_rows",
    "mask_mapping",
    "unreadable",
    "leave_out",
    "narrowed",
    "mask_parameters",
    "origins_of",
    "mask_source",
    "host_patterns",
]


INFO_KEY = "protected"  # Column(..., info={"protected": True})

# Column names that are secret or personal wherever they appear (glob patterns on the lower-cased name).
DEFAULT_NAMES: tuple[str, ...] = (
    "*password*",
    "*passwd*",
    "*passphrase*",
    "*secret*",
    "*token*",
    "*api_key*",
    "*apikey*",
    "*private_key*",
    "ssn",
    "*_ssn",
    "*social_security*",
    "iban",
    "*_iban",
    "*card_number*",
    "*cardnumber*",
    "*credit_card*",
    "cvv",
    "cvc",
    "*_cvv",
    "*_cvc",
)

_ENCRYPTED = ("EncryptedType", "StringEncryptedType")  # sqlalchemy-utils' encrypted types (and subclasses)

_ANY_TABLE = "\x00"  # the table of a column known by name only: matched by a "*.name" pattern, by no table's name


def _encrypted(type_: Any) -> str | None:
    for klass in type(type_).__mro__:
        if klass.__name__ in _ENCRYPTED:
            return type(type_).__name__
    return None


class Rules:
    """What the profile's ``[protect]`` section says. (A plain class: a dataclass costs start-up time.)"""

    __slots__ = ("enabled", "columns", "default_names", "exclude", "column_grants", "hosts")

    def __init__(
        self,
        enabled: bool = False,
        columns: tuple[str, ...] = (),
        default_names: bool = True,
        exclude: tuple[str, ...] = (),
        column_grants: bool = False,
        hosts: tuple[str, ...] = (),
    ) -> None:
        self.enabled, self.columns, self.default_names, self.exclude = enabled, columns, default_names, exclude
        self.column_grants = column_grants  # the session's role cannot read them: never loaded
        self.hosts = hosts  # protect.hosts: sockets to them are refused until unlock(reason)

    def __repr__(self) -> str:
        return (
            f"Rules(enabled={self.enabled}, columns={self.columns}, default_names={self.default_names}, "
            f"exclude={self.exclude}, "
            f"column_grants={self.column_grants}, hosts={self.hosts})"
        )

    @classmethod
    def of(cls, profile: Profile) -> Rules:
        section = profile.protect
        return cls(
            section.enabled,
            tuple(section.columns),
            section.default_names,
            tuple(section.exclude),
            section.column_grants,
            tuple(section.hosts),
        )

    def reasons(
        self, table: str, name: str, info: Mapping[str, Any] | None = None, type_: Any = None
    ) -> tuple[str, ...]:
        """Why the column *table.name* is protected (each place that says so); () where it is not."""
        dotted = f"{table}.{name}".lower()
        if any(fnmatchcase(dotted, p.lower()) for p in self.exclude):
            return ()
        flag = (info or {}).get(INFO_KEY)
        found = [f'info["{INFO_KEY}"]'] if flag is True else []
        found += [f"protect.columns {p!r}" for p in self.columns if fnmatchcase(dotted, p.lower())]
        if flag is False:
            return tuple(found)  # the model says no: its name and type do not protect it, the profile still may
        encrypted = _encrypted(type_) if type_ is not None else None
        if encrypted:
            found.append(f"encrypted type {encrypted}")
        if self.default_names:
            found += [f"name pattern {p!r}" for p in DEFAULT_NAMES if fnmatchcase(name.lower(), p)][:1]
        return tuple(found)


def _table_key(table: Any) -> str | None:
    """A table's name as patterns see it ("customers", "billing.invoices"); None for what is not a table."""
    from sqlalchemy import Table

    return str(table.fullname) if isinstance(table, Table) else None


class Protection:
    """This session's protection: the rules, what each table and mapper protects (worked out when first
    asked, then kept), and what ``unlock()`` has opened."""

    def __init__(self, rules: Rules, tables: Callable[[], Iterable[Any]] = tuple) -> None:
        self.rules = rules
        self._tables = tables  # every table the app maps, asked for only when a name must be looked up
        self._by_table: dict[str, dict[str, tuple[str, ...]]] = {}
        self._by_mapper: dict[Any, dict[str, str]] = {}
        self._names: dict[str, list[str]] | None = None
        self.unlocked_all = False
        self.unlocked: list[str] = []  # patterns on "table.column" unlock() opened
        self.switched = False  # unlock() logged in as the role that can read them (protect.unlock_url_env)
        self.hosts = host_patterns(rules.hosts)  # (host glob, port glob or None, as the profile wrote it)
        self.journal: Journal | None = None  # where a refused connection to a protected host is recorded (guard_hosts)

    # -- what is protected ------------------------------------------------------

    def table(self, table: Any) -> dict[str, tuple[str, ...]]:
        """The protected columns of *table*, by column name, each with why."""
        key = _table_key(table)
        if key is None:
            return {}
        found = self._by_table.get(key)
        if found is None:
            found = {}
            for column in table.columns:
                why = self.rules.reasons(key, column.name, column.info, column.type)
                if why:
                    found[column.name] = why
            self._by_table[key] = found
        return found

    def column(self, column: Any) -> str | None:
        """``table.column`` where *column* is a protected table column, else None."""
        table = getattr(column, "table", None)
        name = getattr(column, "name", None)
        if name is None or not self.table(table).get(name):
            return None
        return f"{_table_key(table)}.{name}"

    def mapper(self, mapper: Any) -> dict[str, str]:
        """A mapper's protected attributes: attribute key → ``table.column``."""
        found = self._by_mapper.get(mapper)
        if found is None:
            found = {}
            for prop in mapper.column_attrs:
                dotted = next((d for d in map(self.column, prop.columns) if d), None)
                if dotted:
                    found[prop.key] = dotted
            self._by_mapper[mapper] = found
        return found

    def names(self) -> dict[str, list[str]]:
        """Protected column names across the app's tables → the ``table.column`` of each."""
        if self._names is None:
            names: dict[str, list[str]] = {}
            for table in self._tables():
                for name in self.table(table):
                    names.setdefault(name.lower(), []).append(f"{_table_key(table)}.{name}")
            self._names = names
        return self._names

    def everything(self) -> list[str]:
        return sorted({d for ds in self.names().values() for d in ds})

    # -- what is masked now -----------------------------------------------------

    def is_unlocked(self, dotted: str) -> bool:
        return self.unlocked_all or any(fnmatchcase(dotted.lower(), p.lower()) for p in self.unlocked)

    def hides(self, dotted: str | None) -> bool:
        return dotted is not None and not self.is_unlocked(dotted)

    def hides_name(self, name: str) -> bool:
        """A value known by its name only (a text() result's column, a bind parameter)."""
        if self.unlocked_all:
            return False
        where = self.names().get(name.lower())
        if where:
            return any(self.hides(d) for d in where)
        if self.rules.reasons(_ANY_TABLE, name):
            return self.hides(f"{_ANY_TABLE}.{name}")
        return False

    def hides_expression(self, expr: Any) -> bool | None:
        """A result column by its origin: True/False where SQLAlchemy knows it, None where it does not."""
        base = [c for c in getattr(expr, "base_columns", ()) if _table_key(getattr(c, "table", None))]
        if base:
            return any(self.hides(self.column(c)) for c in base)
        try:
            from sqlalchemy.sql.visitors import iterate

            inner = [c for c in iterate(expr) if _table_key(getattr(c, "table", None)) and hasattr(c, "name")]
        except Exception:
            return None
        if not inner:
            return None
        # An expression over columns (lower(email), name || email): hidden where a protected column
        # feeds it, unless what it yields is a number (a count or a length of one is not the value).
        import decimal

        try:
            number = getattr(expr.type, "python_type", object) in (int, float, decimal.Decimal, bool)
        except NotImplementedError:
            number = False
        return not number and any(self.hides(self.column(c)) for c in inner)

    def unlock(self, patterns: Sequence[str]) -> None:
        if patterns:
            self.unlocked.extend(patterns)
        else:
            self.unlocked_all = True

    def lock(self) -> None:
        self.unlocked_all = False
        self.unlocked.clear()


# The session's protection: set while a session with protect.enabled runs (namespace.build_namespace),
# cleared by the context's teardown. Reprs and tables are drawn far from the session, so they read it here.
def active() -> Protection | None:
    """The running session's protection, or None (no session, or its profile protects nothing)."""
    return PROCESS.protection  # type: ignore[no-any-return]


def activate(protection: Protection | None) -> None:
    PROCESS.protection = protection if protection is not None and protection.rules.enabled else None


def deactivate() -> None:
    activate(None)


def tables_of(models: Iterable[type], metadata: Any = None) -> list[Any]:
    """The tables an app maps: its models' and its metadata's, each once."""
    from sqlalchemy import inspect as sa_inspect

    seen: dict[str, Any] = {}
    for model in models:
        mapper: Any = sa_inspect(model, raiseerr=False)
        for table in getattr(mapper, "tables", ()):
            key = _table_key(table)
            if key:
                seen.setdefault(key, table)
    for table in getattr(metadata, "sorted_tables", ()):
        seen.setdefault(str(table.fullname), table)
    return list(seen.values())


# -- masking ----------------------------------------------------------------------


class NotRead(str):
    """What a table shows for a column the session's role may not read (column grants): it was never loaded."""


NOT_READ = NotRead("<no access>")


def mask(value: Any) -> Any:
    """A value's mask, which keeps its shape: ``j***@e***.com``, a string's length, another type's name."""
    if value is None or isinstance(value, NotRead):
        return value
    if isinstance(value, str):
        if "@" in value:
            local, _, domain = value.partition("@")
            host, dot, tld = domain.rpartition(".")
            if (
                local
                and host
                and tld.isalpha()
                and len(tld) >= 2
                and "@" not in domain
                and len(value.split(None, 1)) == 1
            ):
                return f"{local[0]}***@{host[0]}***.{tld}"
        return value[:1] + "*" * (len(value) - 1) if len(value) >= 6 else "*" * len(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    return f"<{type(value).__name__}>"


def _hidden_positions(
    protection: Protection, sample: Any, keys: Sequence[str], origins: Sequence[Any] | None
) -> set[int]:
    from appshell.console.render import orm_state

    state = orm_state(sample)
    if state is not None:
        protected = protection.mapper(state.mapper)
        return {i for i, key in enumerate(keys) if protection.hides(protected.get(key))}
    hidden = set()
    for i, key in enumerate(keys):
        known = protection.hides_expression(origins[i]) if origins is not None and i < len(origins) else None
        if known or (known is None and protection.hides_name(key)):
            hidden.add(i)
    return hidden


def mask_rows(
    sample: Any, keys: Sequence[str], rows: list[list[Any]], origins: Sequence[Any] | None = None
) -> list[list[Any]]:
    """A table's cells, the protected columns' masked (the step before render.table lays them out).

    *sample* is one of the items (an ORM object: its mapper says; a row or a mapping: *origins*, the
    result's columns where SQLAlchemy knows them, in the order of *keys*, else the names)."""
    protection = active()
    if protection is None or protection.unlocked_all or not rows:
        return rows
    hidden = sorted(_hidden_positions(protection, sample, keys, origins))
    if not hidden:
        return rows
    masked = []
    for row in rows:
        row = list(row)
        for i in hidden:
            row[i] = mask(row[i])
        masked.append(row)
    return masked


def mask_mapping(target: Any, mapping: Mapping[str, Any]) -> dict[str, Any]:
    """*mapping* (a row's or an object's values by column key) with the protected ones masked.

    *target* says whose values they are: an ORM object, a mapped class or mapper, a Table, a table's
    name; None (a row from text()): by name. For ``--json`` and other outputs that are not tables."""
    protection = active()
    values = dict(mapping)
    if protection is None or protection.unlocked_all:
        return values
    from sqlalchemy import inspect as sa_inspect

    from appshell.console.render import orm_state

    state = orm_state(target)
    mapper = (
        state.mapper if state is not None else sa_inspect(target, raiseerr=False) if isinstance(target, type) else None
    )
    mapper = target if mapper is None and hasattr(target, "column_attrs") else mapper
    if mapper is not None and hasattr(mapper, "column_attrs"):
        protected = protection.mapper(mapper)
        hidden = {k for k in values if protection.hides(protected.get(k))}
    else:
        if isinstance(target, str):
            target = next((t for t in protection._tables() if _table_key(t) == target), None)
        if _table_key(target):
            name = _table_key(target)
            hidden = {k for k in values if k in protection.table(target) and protection.hides(f"{name}.{k}")}
        else:
            hidden = {k for k in values if protection.hides_name(k)}
    return {k: mask(v) if k in hidden else v for k, v in values.items()}


def unreadable(sample: Any) -> dict[str, NotRead]:
    """The protected attributes of *sample*'s class that the session's role may not read (column grants):
    a table shows them as ``<no access>`` where the object has not loaded them, rather than loading them."""
    protection = active()
    if protection is None or not protection.rules.column_grants or protection.switched:
        return {}
    from appshell.console.render import orm_state

    state = orm_state(sample)
    return {key: NOT_READ for key in protection.mapper(state.mapper)} if state is not None else {}


def leave_out(protection: Protection) -> None:
    """Where the session's role has no SELECT on the protected columns (``protect.column_grants``), ORM
    queries of whole objects leave them out (deferred: reading one raises, never a permission error
    mid-table), in every session of the process; a query that names one (``select(Customer.email)``)
    meets the database's refusal. Not while unlock() has switched to a role that can read them."""
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy.orm import Session, defer

    from appshell.safety.engines import on_every_engine

    def do_orm_execute(state: Any) -> None:
        if not state.is_select or protection.switched:
            return
        options = []
        for described in state.statement.column_descriptions:
            entity = described.get("entity")
            if entity is None or described.get("expr") is not entity:
                continue  # a column or an expression, not whole objects: as written
            mapper = sa_inspect(entity, raiseerr=False)
            for key in protection.mapper(getattr(mapper, "mapper", mapper)) if mapper is not None else ():
                options.append(defer(getattr(entity, key), raiseload=True))
        if options:
            state.statement = state.statement.options(*options)

    on_every_engine("do_orm_execute", do_orm_execute, target=Session)  # every session: the app's own too


def narrowed(statement: Any) -> Any:
    """A select of whole objects, for counting: where the session's role may not read the protected
    columns, by the primary key only (a subquery naming a column is a read of it)."""
    protection = active()
    if protection is None or not protection.rules.column_grants or protection.switched:
        return statement
    described = getattr(statement, "column_descriptions", None) or []
    if len(described) != 1 or not isinstance(described[0].get("expr"), type):
        return statement
    from sqlalchemy import inspect as sa_inspect

    return statement.with_only_columns(*sa_inspect(described[0]["entity"]).primary_key, maintain_column_froms=True)


_BIND_SUFFIX = re.compile(r"(_\d+|__\d+)+$")  # email_1, email__0: SQLAlchemy's names for a column's bind parameters


def mask_parameters(parameters: Any, context: Any = None) -> Any:
    """A statement's parameters with those bound to a protected column masked, by the bind
    parameter's name (``email``, ``email_1``): for the SQL echo. *context*: SQLAlchemy's execution
    context, whose compiled statement names positional parameters."""
    protection = active()
    if protection is None or protection.unlocked_all or not parameters:
        return parameters

    def hides(name: Any) -> bool:
        return isinstance(name, str) and protection.hides_name(_BIND_SUFFIX.sub("", name))

    if isinstance(parameters, Mapping):
        return {k: mask(v) if hides(k) else v for k, v in parameters.items()}
    if isinstance(parameters, list) or (
        isinstance(parameters, tuple) and parameters and isinstance(parameters[0], (Mapping, list, tuple))
    ):
        return type(parameters)(mask_parameters(one, context) for one in parameters)  # executemany: each set
    if isinstance(parameters, tuple):
        names = getattr(getattr(context, "compiled", None), "positiontup", None) or ()
        if len(names) != len(parameters):
            return parameters  # which value is which is not known here
        return tuple(mask(v) if hides(n) else v for n, v in zip(names, parameters))
    return parameters


def origins_of(statement: Any) -> list[Any] | None:
    """A statement's result columns as SQLAlchemy knows them (a select's ``selected_columns``), or None (text())."""
    try:
        columns = getattr(statement, "selected_columns", None)
        return list(columns) if columns is not None else None
    except Exception:
        return None


def mask_source(text: str) -> str:
    """An input line as history keeps it: a string given for a protected column (``email="…"``,
    ``Customer.email == "…"``) masked. Read with Python's tokenizer; what it cannot read is kept."""
    protection = active()
    if protection is None or "=" not in text:
        return text
    import ast
    import io
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return text
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    changes = []
    for name, op, value in zip(tokens, tokens[1:], tokens[2:]):
        if name.type == tokenize.NAME and op.string in ("=", "==") and value.type == tokenize.STRING:
            if not protection.rules.enabled or not _protected_name(protection, name.string):
                continue
            try:
                literal = ast.literal_eval(value.string)
            except (ValueError, SyntaxError):
                continue
            if isinstance(literal, str):
                begin = starts[value.start[0] - 1] + value.start[1]
                end = starts[value.end[0] - 1] + value.end[1]
                changes.append((begin, end, repr(mask(literal))))
    for begin, end, new in reversed(changes):
        text = text[:begin] + new + text[end:]
    return text


def _protected_name(protection: Protection, name: str) -> bool:
    """Protected anywhere, unlocked or not: history outlives the unlock."""
    return bool(protection.names().get(name.lower()) or protection.rules.reasons(_ANY_TABLE, name))


def host_patterns(hosts: Iterable[str]) -> tuple[tuple[str, str | None, str], ...]:
    """``protect.hosts`` read: (host glob, port glob or None for any port, the entry) each.

    ``"search.internal:9200"``, ``"*.stripe.com"``, ``"[::1]:5000"``, and URLs (``"https://api.stripe.com/v1"``:
    a socket sees no scheme or path, so its host and the port it writes, if any)."""
    found = []
    for entry in hosts:
        rest = entry.split("://", 1)[1] if "://" in entry else entry
        netloc = rest.split("/", 1)[0]
        if netloc.startswith("["):
            host, _, after = netloc[1:].partition("]")
            port = after[1:] if after.startswith(":") and after[1:] else None
        elif netloc.count(":") == 1:
            host, _, port_ = netloc.partition(":")
            port = port_ or None
        else:
            host, port = netloc, None  # a bare IPv6 address, or no port
        found.append((host.lower(), port, entry))
    return tuple(found)
