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

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from appshell.errors import Refused

if TYPE_CHECKING:
    from appshell.record.journal import Journal
    from appshell.config.profiles import Profile

__all__ = [
    "INFO_KEY", "DEFAULT_NAMES", "Rules", "Protection", "UnlockRefused", "active", "activate", "deactivate",
    "mask", "mask_rows", "mask_mapping", "mask_parameters", "mask_source", "origins_of",
    "check_reason", "make_unlock", "listing", "tables_of", "report", "prove_column_grants", "doctor_rows",
    "NOT_READ", "unreadable", "leave_out", "narrowed", "RoleSwitch", "role_switch", "HostRefused", "host_patterns", "guard_hosts",
]

INFO_KEY = "protected"  # Column(..., info={"protected": True})
# Column names that are secret or personal wherever they appear (glob patterns on the lower-cased name).
DEFAULT_NAMES: tuple[str, ...] = (
    "*password*", "*passwd*", "*passphrase*", "*secret*", "*token*", "*api_key*", "*apikey*", "*private_key*",
    "ssn", "*_ssn", "*social_security*", "iban", "*_iban", "*card_number*", "*cardnumber*", "*credit_card*",
    "cvv", "cvc", "*_cvv", "*_cvc",
)
_ENCRYPTED = ("EncryptedType", "StringEncryptedType")  # sqlalchemy-utils' encrypted types (and subclasses)
_ANY_TABLE = "\x00"  # the table of a column known by name only: matched by a "*.name" pattern, by no table's name
MIN_REASON = 12  # characters; and at least two words


class UnlockRefused(Refused):
    """unlock() was refused (no reason worth recording, an unknown column): nothing was unlocked."""


class HostRefused(Refused):
    """A connection to a protected host (``protect.hosts``) while protected data is locked."""

    def format(self) -> str:
        return f"appshell: refused: {self}"


def _encrypted(type_: Any) -> str | None:
    for klass in type(type_).__mro__:
        if klass.__name__ in _ENCRYPTED:
            return type(type_).__name__
    return None


class Rules:
    """What the profile's ``[protect]`` section says. (A plain class: a dataclass costs start-up time.)"""

    __slots__ = ("enabled", "columns", "default_names", "exclude", "column_grants", "hosts")

    def __init__(self, enabled: bool = False, columns: tuple[str, ...] = (), default_names: bool = True, exclude: tuple[str, ...] = (),
                 column_grants: bool = False, hosts: tuple[str, ...] = ()) -> None:
        self.enabled, self.columns, self.default_names, self.exclude = enabled, columns, default_names, exclude
        self.column_grants = column_grants  # the session's role cannot read them: never loaded
        self.hosts = hosts  # protect.hosts: sockets to them are refused until unlock(reason)

    def __repr__(self) -> str:
        return (f"Rules(enabled={self.enabled}, columns={self.columns}, default_names={self.default_names}, exclude={self.exclude}, "
                f"column_grants={self.column_grants}, hosts={self.hosts})")

    @classmethod
    def of(cls, profile: Profile) -> Rules:
        section = profile.protect
        return cls(section.enabled, tuple(section.columns), section.default_names, tuple(section.exclude), section.column_grants,
                   tuple(section.hosts))

    def reasons(self, table: str, name: str, info: Mapping[str, Any] | None = None, type_: Any = None) -> tuple[str, ...]:
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
        except Exception:  # noqa: BLE001 - not an expression: known by name, then
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
_active: Protection | None = None


def active() -> Protection | None:
    """The running session's protection, or None (no session, or its profile protects nothing)."""
    return _active


def activate(protection: Protection | None) -> None:
    global _active
    _active = protection if protection is not None and protection.rules.enabled else None


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
            if local and host and tld.isalpha() and len(tld) >= 2 and "@" not in domain and len(value.split(None, 1)) == 1:
                return f"{local[0]}***@{host[0]}***.{tld}"
        return value[:1] + "*" * (len(value) - 1) if len(value) >= 6 else "*" * len(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    return f"<{type(value).__name__}>"


def _hidden_positions(protection: Protection, sample: Any, keys: Sequence[str], origins: Sequence[Any] | None) -> set[int]:
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


def mask_rows(sample: Any, keys: Sequence[str], rows: list[list[Any]], origins: Sequence[Any] | None = None) -> list[list[Any]]:
    """A table's cells, the protected columns' masked (the step before render.table lays them out).

    *sample* is one of the items (an ORM object: its mapper says; a row or a mapping: *origins*, the
    result's columns where SQLAlchemy knows them, in the order of *keys*, else the names)."""
    protection = _active
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
    protection = _active
    values = dict(mapping)
    if protection is None or protection.unlocked_all:
        return values
    from sqlalchemy import inspect as sa_inspect

    from appshell.console.render import orm_state

    state = orm_state(target)
    mapper = state.mapper if state is not None else sa_inspect(target, raiseerr=False) if isinstance(target, type) else None
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
    protection = _active
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
    protection = _active
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
    protection = _active
    if protection is None or protection.unlocked_all or not parameters:
        return parameters

    def hides(name: Any) -> bool:
        return isinstance(name, str) and protection.hides_name(_BIND_SUFFIX.sub("", name))

    if isinstance(parameters, Mapping):
        return {k: mask(v) if hides(k) else v for k, v in parameters.items()}
    if isinstance(parameters, list) or (isinstance(parameters, tuple) and parameters and isinstance(parameters[0], (Mapping, list, tuple))):
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
    except Exception:  # noqa: BLE001 - an odd statement: its results are masked by name
        return None


def mask_source(text: str) -> str:
    """An input line as history keeps it: a string given for a protected column (``email="…"``,
    ``Customer.email == "…"``) masked. Read with Python's tokenizer; what it cannot read is kept."""
    protection = _active
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


# -- unlocking --------------------------------------------------------------------


def check_reason(reason: Any) -> str:
    """The reason, tidied; refused where an auditor could not read why."""
    text = " ".join(str(reason or "").split())
    if len(text) < MIN_REASON or len(text.split()) < 2:
        raise UnlockRefused('unlock() needs a reason of a few words, which is recorded: unlock("INC-42: customer asked for a copy of their data")')
    return text


def _dotted(column: Any) -> str:
    """``"customers.email"``, ``Customer.email`` → the pattern unlock() opens."""
    if isinstance(column, str):
        return column
    expr = getattr(column, "expression", column)
    protection = _active
    dotted = protection.column(expr) if protection is not None else None
    if dotted is None:
        raise UnlockRefused(f"unlock(reason, …): {column!r} is not a protected column — see appshell protected")
    return dotted


def _where(params: Mapping[str, Any]) -> tuple[str, str]:
    host = str(params.get("host") or "localhost").replace("127.0.0.1", "localhost")
    return host, str(params.get("dbname") or params.get("database") or params.get("db") or "")


class RoleSwitch:
    """unlock()'s way to a role that can read the protected columns (``protect.unlock_url_env``), where the
    session's own role cannot (``protect.column_grants``): while it is on, every new connection to that
    database logs in as that role; switching rolls the session back and closes the pooled connections."""

    def __init__(self, url: str, ctx: Any) -> None:
        from sqlalchemy import make_url

        from appshell.safety.engines import on_every_engine

        self.role = make_url(url)
        self.ctx = ctx
        self.on = False
        on_every_engine("do_connect", self._do_connect)  # after the read-only role's: this one wins while on

    def _do_connect(self, dialect: Any, conn_rec: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        if not self.on or dialect.name != self.role.get_backend_name():
            return
        _, wanted = dialect.create_connect_args(self.role.set(drivername=f"{dialect.name}+{dialect.driver}"))
        if _where(cparams) != _where(wanted):
            return  # another database
        for key in ("user", "password", "passwd"):
            cparams.pop(key, None)
        cparams.update({k: v for k, v in wanted.items() if k in ("user", "password", "passwd")})

    def check(self, sandbox: bool) -> None:
        """Refuse a switch that would lose something: a sandbox's transaction, changes not committed."""
        session = self.ctx.session
        if sandbox:
            raise UnlockRefused("unlock() logs in as another role, and the sandbox's transaction lives on this connection: "
                                "open a session without --sandbox to unlock")
        if self.ctx.async_engine is not None:
            raise UnlockRefused("unlock() cannot switch an async app's connections to another role yet: open a session as that role")
        if session.new or session.dirty or session.deleted:
            raise UnlockRefused("the session has changes not committed, and unlock() starts a new connection: commit() or rollback() first")

    def switch(self, on: bool) -> None:
        self.ctx.session.rollback()  # its objects expire: read again as the role now in use
        self.on = on
        self.ctx.engine.dispose()  # pooled connections logged in as the other role are closed


def role_switch(settings: Any, ctx: Any) -> RoleSwitch | None:
    """The role switch, where the profile has column grants and names an unlock role; its variable unset is an error."""
    import os

    from appshell.errors import ConfigError

    section = settings.profile.protect
    if not (section.enabled and section.column_grants and section.unlock_url_env):
        return None
    url = os.environ.get(section.unlock_url_env, "")
    if not url:
        raise ConfigError(f"profile '{settings.profile.name}' sets protect.unlock_url_env = \"{section.unlock_url_env}\", but it is not set",
                          f"set {section.unlock_url_env} to the URL of a role that can read the protected columns")
    return RoleSwitch(url, ctx)


def make_unlock(journal: Journal, profile: str, switch: RoleSwitch | None = None, sandbox: bool = False) -> dict[str, Callable[..., None]]:
    """The namespace's ``unlock`` and ``lock``, recording to *journal*; *switch*: the role unlock() logs in as.

    The session's protected hosts are guarded from here on too: ``unlock(reason)`` opens them, and their
    refusals are recorded to the same *journal*."""
    if _active is not None:
        guard_hosts(_active, journal)

    def unlock(reason: str | None = None, *columns: Any) -> None:
        """Show protected values until lock(), with a reason that is recorded: unlock("INC-42: why")."""
        protection = _active
        if protection is None:
            print(f"appshell: nothing is masked in this session (profile {profile}: protect.enabled is off)", file=sys.stderr)
            return
        if protection.rules.column_grants and switch is None:
            raise UnlockRefused(f"this session's database role may not read the protected columns (profile {profile}: protect.column_grants): "
                                "unlock() cannot show them — name a role that can in protect.unlock_url_env")
        if switch is not None and not switch.on:
            switch.check(sandbox)
        if reason is None and sys.stdin.isatty():
            reason = input("Why do you need to see protected data? ")
        text = check_reason(reason)
        patterns = [_dotted(c) for c in columns]
        everything = protection.everything()
        opened = [d for d in everything if any(fnmatchcase(d.lower(), p.lower()) for p in patterns)] if patterns else everything
        if patterns and not opened:
            raise UnlockRefused(f"unlock(reason, {', '.join(map(repr, patterns))}): no protected column matches — these are: {', '.join(everything)}")
        import getpass

        # Recorded first: where the audit cannot record it, nothing is unlocked.
        role: dict[str, Any] = {"role": switch.role.username} if switch is not None else {}
        if protection.hosts and not patterns:
            role["hosts"] = [entry for *_, entry in protection.hosts]
        journal.nested(f"# unlock: {text}", kind="sensitive_access", reason=text, columns=opened, user=getpass.getuser(), **role)
        if switch is not None and not switch.on:
            switch.switch(True)
            protection.switched = True
        protection.unlock(patterns)
        as_role = f" (the database role {switch.role.username})" if switch is not None else ""
        hosts = ["the protected hosts"] if protection.hosts and not patterns else []
        print(f"appshell: unlocked {', '.join(opened + hosts) or 'nothing'}{as_role} until lock() or the session's end — recorded as sensitive access",
              file=sys.stderr)

    def lock() -> None:
        """Mask protected values again."""
        protection = _active
        if protection is None:
            return
        if switch is not None and switch.on:
            switch.check(sandbox=False)
        if protection.unlocked_all or protection.unlocked:
            journal.nested("# lock", kind="sensitive_access_end")
        if switch is not None and switch.on:
            switch.switch(False)  # back to the session's own role
            protection.switched = False
        protection.lock()
        print("appshell: protected values are masked again", file=sys.stderr)

    return {"unlock": unlock, "lock": lock}


# -- protected hosts ----------------------------------------------------------------
# Python raises an audit event before every socket connect and name lookup, whoever makes it (requests,
# httpx, a driver, the app's own client): one hook per process sees them all (audit hooks cannot be
# removed: it goes quiet where no session protects hosts), and reads the running session's rules.

_hooked = False
_busy = threading.local()  # recording a refusal: what the journal's sinks connect to is not checked again


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


def _port_text(port: Any) -> str | None:
    if port is None:
        return None
    if isinstance(port, bytes):
        port = port.decode("ascii", "replace")
    text = str(port)
    if text.isdigit() or not text:
        return text or None
    import socket

    try:
        return str(socket.getservbyname(text))  # "https" -> 443
    except OSError:
        return text


def _protected(protection: Protection, host: str, port: str | None) -> str | None:
    """The entry of ``protect.hosts`` that *host*:*port* matches, or None. A lookup of a name without a port
    matches whatever port the entry names: the connect after it sees an address, not the name."""
    host = host.lower().strip("[]")
    for host_glob, port_glob, entry in protection.hosts:
        if fnmatchcase(host, host_glob) and (port_glob is None or port is None or fnmatchcase(port, port_glob)):
            return entry
    return None


def _appshells_own(frame: Any) -> bool:
    """Is the connection appshell's own or SQLAlchemy's (the database, an audit sink), not the operator's or the app's?

    The innermost frame outside the libraries decides: appshell or SQLAlchemy let it through; the operator's code,
    the app's, or no one (a thread a library started) does not."""
    from appshell.hooks.frames import is_library_file

    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if name.startswith(("appshell.", "sqlalchemy.")):
            return True
        if not is_library_file(frame.f_code.co_filename):
            return False
        frame = frame.f_back
    return False


_SOCKET_EVENTS = frozenset({"socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.sendmsg"})  # connect_ex's is connect's


def _host_hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _SOCKET_EVENTS:
        return  # every audit event of the process comes here: the others leave at once
    protection = _active
    if protection is None or not protection.hosts or protection.unlocked_all or getattr(_busy, "on", False):
        return
    if protection.journal is None or protection.journal.closed:
        return  # the session is over (its teardown had no chance to deactivate it): quiet, as after deactivate()
    if event != "socket.getaddrinfo":  # an address: a connect's, or a datagram's (sendto, sendmsg: None when connected)
        address = args[1]
        if not isinstance(address, tuple) or len(address) < 2 or not isinstance(address[0], str):
            return  # a Unix socket's path, a netlink address: not a host
        host, port = address[0], _port_text(address[1])
    else:
        host = args[0].decode("ascii", "replace") if isinstance(args[0], bytes) else args[0]
        port = _port_text(args[1])
        if not isinstance(host, str) or not host:
            return
    entry = _protected(protection, host, port)
    if entry is None or _appshells_own(sys._getframe(1)):
        return
    _refuse_host(protection, host, port, entry, event)


def _refuse_host(protection: Protection, host: str, port: str | None, entry: str, event: str) -> None:
    """Record the attempt (a ``protected_host`` statement under the running one), then refuse it in one line."""
    import ipaddress

    where = f"[{host}]:{port}" if ":" in host and port else f"{host}:{port}" if port else host
    if event == "socket.getaddrinfo":
        try:
            ipaddress.ip_address(host)
            event = "socket.connect"  # an address is not looked up: create_connection() asks getaddrinfo() for every connect
        except ValueError:
            pass
    _busy.on = True
    try:
        if protection.journal is not None:
            what = {"socket.getaddrinfo": "look up", "socket.connect": "connect to"}.get(event, "send to")
            protection.journal.nested(f"# refused: {what} {where}", kind="protected_host", host=where, pattern=entry)
    finally:
        _busy.on = False
    raise HostRefused(f"{where} is a protected host (protect.hosts {entry!r}) — unlock(\"reason\") first, which is recorded, "
                      "or open the session with a profile that does not list it")


def guard_hosts(protection: Protection, journal: Journal) -> None:
    """Refuse sockets to ``protect.hosts`` while *protection* is the session's and is locked, recording each
    attempt in *journal*. Nothing is installed where the profile lists no host (start-up)."""
    protection.journal = journal
    if not protection.hosts:
        return
    global _hooked
    if not _hooked:
        _hooked = True
        sys.addaudithook(_host_hook)


# -- appshell protected -------------------------------------------------------------


def listing(rules: Rules, tables: Iterable[Any]) -> list[list[str]]:
    """Every protected column of *tables*, with why: ``[["customers.email", "protect.columns '…'"], …]``."""
    protection = Protection(rules)
    rows = []
    for table in sorted(tables, key=lambda t: str(t.fullname)):
        for name, why in protection.table(table).items():
            rows.append([f"{table.fullname}.{name}", "; ".join(why)])
    return rows


def report(profile: Profile, models: Iterable[type], metadata: Any = None, as_json: bool = False) -> str:
    """``appshell protected``: every protected column of the app, why, and what the profile does with them."""
    rules = Rules.of(profile)
    rows = listing(rules, tables_of(models, metadata))
    if as_json:
        import json

        return json.dumps({"profile": profile.name, "enabled": rules.enabled, "columns": [{"column": c, "why": w} for c, w in rows],
                           "hosts": list(rules.hosts)})
    from appshell.console.render import table

    if rules.enabled and rules.column_grants:
        state = ("the role sessions read with is declared to have no SELECT on them (protect.column_grants): ORM queries leave them out, "
                 "the database refuses the rest — enforced where its grants hold (docs/safety.md)")
    elif rules.enabled:
        state = ("masked in every output until unlock(reason), which is recorded: a guard against accidental exposure, "
                 "not enforcement — Python code in the session can read them (docs/safety.md)")
    else:
        state = "not masked: protect.enabled is off in this profile (a profile that turns it on masks these)"
    if rules.hosts:
        refused = "refused until unlock(reason)" if rules.enabled else "not refused: protect.enabled is off"
        state += f"\nprotected hosts ({refused}): {', '.join(rules.hosts)}"
    return table(["column", "why"], rows, f"protected columns — profile {profile.name}", max_cell=400) + f"\n{state}"


# -- enforced by the database: column grants (doctor) ---------------------------------


def _refused(exc: BaseException) -> bool:
    """The database refused for want of a privilege (PostgreSQL 42501; MySQL/MariaDB 1142, 1143)."""
    orig = getattr(exc, "orig", None)
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    if args and isinstance(args[0], int):  # MySQL/MariaDB drivers: (errno, message)
        return args[0] in (1142, 1143)
    return str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)) == "42501"


def prove_column_grants(url: str, columns: Sequence[str]) -> tuple[bool | None, str]:
    """Read each protected column (``table.column``) as the role of *url*: (True, why) where every read is
    refused by the database, (False, which it can read), (None, why it cannot tell) — SQLite has no grants."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import DBAPIError

    from appshell.safety.engines import exempt
    from appshell.config.urls import sync_url

    engine = create_engine(sync_url(url))
    exempt(engine)  # the probe meets the role's own rights, not appshell's session settings
    readable: list[str] = []
    refused: list[str] = []
    unknown: list[str] = []
    try:
        if engine.dialect.name == "sqlite":
            return None, "SQLite has no column grants: protected data is masked in Python only (guarded)"
        quote = engine.dialect.identifier_preparer.quote
        with engine.connect() as conn:
            user = conn.exec_driver_sql("SELECT current_user" if engine.dialect.name == "postgresql" else "SELECT CURRENT_USER()").scalar()
            for dotted in columns:
                *table, column = dotted.split(".")
                try:
                    conn.exec_driver_sql(f"SELECT {quote(column)} FROM {'.'.join(map(quote, table))} WHERE 1 = 0").all()
                    readable.append(dotted)
                except DBAPIError as exc:
                    (refused if _refused(exc) else unknown).append(dotted)
                conn.rollback()
    finally:
        engine.dispose()
    if readable:
        return False, f"role {user} can read {', '.join(readable)}: masked in Python only (guarded) — revoke its SELECT on them (docs/safety.md)"
    if unknown:
        return None, f"role {user}: reading {', '.join(unknown)} failed for another reason than a missing privilege (does the table exist?)"
    return True, f"role {user} cannot read {', '.join(refused)}: the database refuses (enforced)"


def doctor_rows(settings: Any, ctx: Any) -> Iterator[tuple[str, str, str]]:
    """For ``appshell doctor``: the protected hosts, and whether the role a session reads with can read the protected columns."""
    rules = Rules.of(settings.profile)
    if not rules.enabled:
        return
    if rules.hosts:
        yield ("protected hosts", "ok", f"{', '.join(rules.hosts)}: sockets refused until unlock(reason) — an in-process guard against "
               "mistakes, not enforcement: a firewall rule keeps them out of reach (docs/safety.md)")
    columns = [column for column, _ in listing(rules, tables_of(ctx.models.values(), ctx.metadata))]
    if not columns:
        yield "protected data", "WARN", f"profile {settings.profile.name} protects data, but no column of the app is protected (see appshell protected)"
        return
    from appshell.safety.readonly_role import read_only_url

    url = (read_only_url(settings) if settings.read_only else None) or ctx.engine.url.render_as_string(hide_password=False)
    enforced, message = prove_column_grants(url, columns)
    yield "protected data", "ok" if enforced else "WARN", message
