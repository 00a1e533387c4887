"""A readable repr for mapped classes that have none of their own (issue 13 item 9).

``<Customer id=3 email='a@x'>``: the primary key and a few short columns,
read only from what the object already holds (its ``__dict__``), so showing an
object never runs SQL: relationships, deferred and expired columns are left out.
Classes whose own code (or their base's) defines ``__repr__`` keep it; where the session protects
data (appshell.console.protect), the protected values either shows are masked — the app's own repr's
by the loaded values it contains.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["install_reprs", "mapped_repr", "scrub_repr"]

_MAX_COLUMNS = 3  # besides the primary key
_MAX_VALUE = 30  # characters of a value's repr; longer values are left out


def _short(value: Any) -> str | None:
    import datetime
    import decimal
    import enum
    import uuid

    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, (bool, int, float, str, decimal.Decimal, datetime.date, uuid.UUID)):
        text = str(value) if isinstance(value, (decimal.Decimal, datetime.date, uuid.UUID)) else repr(value)
        return text if len(text) <= _MAX_VALUE else None
    return None


def mapped_repr(obj: Any) -> str:
    """``<Class pk=… col=…>`` from the loaded state only; never loads anything."""
    try:
        from sqlalchemy import inspect as sa_inspect

        state = sa_inspect(obj)
        mapper = state.mapper
        loaded = state.dict
        pk_keys = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
        identity = state.identity or ()
        hidden = _hidden(mapper)
        parts = []
        for i, key in enumerate(pk_keys):
            value = loaded.get(key, identity[i] if i < len(identity) else None)
            parts.append(f"{key}={_masked(value) if key in hidden else repr(value)}")
        extra = 0
        for prop in mapper.column_attrs:
            if extra == _MAX_COLUMNS:
                break
            if prop.key in pk_keys or prop.key not in loaded:
                continue
            short = _masked(loaded[prop.key]) if prop.key in hidden else _short(loaded[prop.key])
            if short is not None:
                parts.append(f"{prop.key}={short}")
                extra += 1
        return f"<{type(obj).__name__} {' '.join(parts)}>"
    except Exception:
        return object.__repr__(obj)


mapped_repr.appshell = True  # type: ignore[attr-defined]  # marks the repr as ours


def _hidden(mapper: Any) -> set[str]:
    """The mapper's attributes whose values are masked now (protected, not unlocked)."""
    from appshell.console.protect import active

    protection = active()
    if protection is None or protection.unlocked_all:
        return set()
    return {key for key, dotted in protection.mapper(mapper).items() if protection.hides(dotted)}


def _masked(value: Any) -> str:
    from appshell.console.protect import mask

    shown = mask(value)
    return repr(shown) if isinstance(value, str) else str(shown)


def scrub_repr(obj: Any, own: Callable[[Any], str]) -> str:
    """An app's own ``__repr__`` of *obj* (*own*), the protected values it shows masked.

    The repr runs with the masks of the loaded protected values in the object's ``__dict__`` (put
    back at once, bypassing SQLAlchemy's events: nothing is marked changed), so it shows the masks
    where it would show the values. A repr that cannot run so (it does arithmetic on a masked
    number, or reads a column the session's role may not read) gives way to appshell's own."""
    from appshell.console.protect import active, mask
    from appshell.console.render import orm_state

    protection = active()
    state = orm_state(obj) if protection is not None and not protection.unlocked_all else None
    if state is None:
        return own(obj)
    assert protection is not None
    loaded = state.dict
    hidden = [
        k for k, d in protection.mapper(state.mapper).items() if loaded.get(k) is not None and protection.hides(d)
    ]
    if not hidden and not protection.rules.column_grants:
        return own(obj)
    session = state.session
    if session is not None and state.modified:
        return mapped_repr(obj)  # a flush while the masks stand in would write them: no swap on a changed object
    saved = {k: loaded[k] for k in hidden}
    try:
        with (
            session.no_autoflush if session is not None else contextlib.nullcontext()
        ):  # a lazy load in the repr flushes nothing
            loaded.update((k, mask(saved[k])) for k in hidden)
            return own(obj)
    except Exception:
        loaded.update(saved)
        return mapped_repr(obj)
    finally:
        loaded.update(saved)


def _scrubbing(own: Any) -> Any:
    """The class's own ``__repr__``, its output's protected values masked (while the session protects any)."""

    def __repr__(self: Any) -> str:
        from appshell.console.protect import active

        return own(self) if active() is None else scrub_repr(self, own)

    __repr__.appshell_scrubs = own  # type: ignore[attr-defined]
    return __repr__


def _has_own_repr(cls: type) -> bool:
    for klass in cls.__mro__:
        if "__repr__" in vars(klass):
            return klass is not object and not getattr(vars(klass)["__repr__"], "appshell", False)
    return False


def install_reprs(models: Iterable[type], protect: bool = False) -> list[type]:
    """Give each mapped class without a ``__repr__`` of its own (or its bases') the readable one;
    with *protect*, wrap each own one so that the protected values it shows are masked."""
    changed = []
    for cls in models:
        if not _has_own_repr(cls):
            cls.__repr__ = mapped_repr  # type: ignore[assignment,method-assign]
            changed.append(cls)
        elif protect and not hasattr(cls.__repr__, "appshell_scrubs"):
            cls.__repr__ = _scrubbing(cls.__repr__)  # type: ignore[method-assign]
    return changed
