"""``--json``: a Python value as the JSON a consumer expects (docs/usage.md, "`--json` for scripts").

The rules, in the order they are tried (each value inside a container by the same rules):

========================================  ==============================================================
``None``, ``bool``, ``int``, ``str``      themselves; a ``float`` too, NaN and ±infinity as ``null``
an ``Enum`` member                        its value (an ``IntEnum`` a number, not its name)
``datetime``, ``date``, ``time``          ISO 8601 strings; an aware datetime keeps its offset
``timedelta``                             seconds, a number
``Decimal``, ``UUID``                     strings: a JSON number would lose a Decimal's digits
``bytes``, ``bytearray``, ``memoryview``  base64 strings
a mapping                                 an object; keys become strings (an enum's value, a date ISO)
a ``Row``, a mapped ORM object            an object of its columns (an ORM object: loaded or not)
a pydantic model                          ``model_dump(mode="json")`` (pydantic's own JSON rules)
a dataclass, an attrs class               an object of its fields
a ``set``/``frozenset``                   a sorted array
any other iterable (list, tuple,          an array; an async stream (``AsyncResult``) is read to its end
``where()``'s results, a generator)
anything else                             ``str(value)``
========================================  ==============================================================

pydantic and attrs are never imported here: a pydantic model is recognised only where the app
imported pydantic already (``sys.modules``), an attrs class by the ``__attrs_attrs__`` attrs puts
on it.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["to_jsonable"]

_SCALARS = (str, int, bool)


def to_jsonable(value: Any) -> Any:
    """*value* as plain JSON data: dicts with string keys, lists, strings, numbers, booleans and None."""
    return _Converter().convert(value)


class _Converter:
    def __init__(self) -> None:
        self.path: set[int] = set()  # the containers being converted: a value holding itself is an error, not a hang

    def convert(self, value: Any) -> Any:
        import enum

        if isinstance(value, enum.Enum):  # before int and str: an IntEnum is an int
            return self.convert(value.value)
        if value is None or isinstance(value, _SCALARS):
            return value
        if isinstance(value, float):
            return value if value == value and value not in (float("inf"), float("-inf")) else None
        simple = _simple(value)
        if simple is not _NOT_SIMPLE:
            return simple
        key = id(value)
        if key in self.path:
            raise ValueError(f"--json: a {type(value).__name__} that contains itself cannot be written as JSON")
        self.path.add(key)
        try:
            return self._compound(value)
        finally:
            self.path.discard(key)

    def _compound(self, value: Any) -> Any:
        from collections.abc import Iterable, Mapping

        if isinstance(value, Mapping):
            return {self.key(k): self.convert(v) for k, v in value.items()}
        from appshell.console.protect import mask_mapping, unreadable

        if hasattr(value, "_mapping") and not isinstance(value, type):  # a Row: protected columns masked by name
            return {str(k): self.convert(v) for k, v in mask_mapping(None, value._mapping).items()}
        from appshell.console.render import orm_state

        state = orm_state(value)
        if state is not None:
            # Protected columns masked (issue 24); under column grants, those the role cannot read are not loaded.
            unread = unreadable(value)
            values = {
                a.key: unread[a.key] if a.key in unread and a.key not in state.dict else getattr(value, a.key)
                for a in state.mapper.column_attrs
            }
            return {k: self.convert(v) for k, v in mask_mapping(value, values).items()}
        fields = _fields(value)
        if fields is not None:
            return {name: self.convert(getattr(value, name)) for name in fields}
        dumped = _pydantic(value)
        if dumped is not _NOT_SIMPLE:
            return self.convert(dumped)
        if isinstance(value, (set, frozenset)):
            return self._sorted(value)
        if isinstance(value, Iterable) and not isinstance(value, type):  # lists, tuples, where() results, generators
            return [self.convert(v) for v in value]
        if hasattr(value, "__aiter__") and not isinstance(value, type):  # an awaited stream: AsyncResult and the like
            from appshell.hooks import aio

            return [self.convert(v) for v in aio.run(_collect(value))]
        return str(value)

    def _sorted(self, members: Any) -> list[Any]:
        """A set's members in a stable order: by value where they compare (Decimals as numbers), else by JSON text."""
        try:
            return [self.convert(v) for v in sorted(members)]
        except TypeError:
            import json

            return sorted((self.convert(v) for v in members), key=lambda v: json.dumps(v, sort_keys=True))

    def key(self, key: Any) -> str:
        """A JSON object's key: a string, as json.dumps writes one (1 → "1", True → "true", None → "null")."""
        import json

        converted = self.convert(key)
        return converted if isinstance(converted, str) else json.dumps(converted, sort_keys=True)


_NOT_SIMPLE = object()


def _simple(value: Any) -> Any:
    """Values with one obvious JSON spelling: dates and times, durations, Decimals, UUIDs, bytes."""
    import datetime
    import decimal
    import uuid

    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date: "2024-05-01T12:00:00+00:00"
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    return _NOT_SIMPLE


def _fields(value: Any) -> list[str] | None:
    """The field names of a dataclass or attrs instance (not of the class itself); None for anything else."""
    if isinstance(value, type):
        return None
    attrs = getattr(type(value), "__attrs_attrs__", None)
    if attrs is not None:
        return [a.name for a in attrs]
    if hasattr(type(value), "__dataclass_fields__"):
        import dataclasses

        return [f.name for f in dataclasses.fields(value)]
    return None


def _pydantic(value: Any) -> Any:
    """A pydantic model's own JSON-mode dump, where the app has imported pydantic; else _NOT_SIMPLE."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    v1 = sys.modules.get("pydantic.v1")
    if v1 is not None and isinstance(value, v1.BaseModel):
        import json

        return json.loads(value.json())
    return _NOT_SIMPLE


async def _collect(stream: Any) -> list[Any]:
    return [item async for item in stream]
