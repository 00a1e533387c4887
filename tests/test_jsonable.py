"""--json's conversion (appshell.console.jsonable, issue 25 item 4):
one table of values and the JSON a consumer expects."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
from support.harness import run

from appshell.console.jsonable import to_jsonable

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

UTC = datetime.UTC
PLUS_2 = datetime.timezone(datetime.timedelta(hours=2))


class Colour(enum.Enum):
    RED = "red"
    TWO = 2


class Level(enum.IntEnum):
    HIGH = 3


class Policy(pydantic.BaseModel):
    name: str
    limit: decimal.Decimal
    until: datetime.datetime
    colour: Colour
    tags: set[str] = set()


@dataclasses.dataclass
class Point:
    x: int
    colour: Colour
    at: datetime.date
    policy: Policy | None = None


@dataclasses.dataclass
class Node:
    name: str
    children: list[Any] = dataclasses.field(default_factory=list)


POLICY = Policy(
    name="gold", limit=decimal.Decimal("10.50"), until=datetime.datetime(2024, 5, 1, 12, tzinfo=UTC), colour=Colour.RED
)
POLICY_JSON = {"name": "gold", "limit": "10.50", "until": "2024-05-01T12:00:00Z", "colour": "red", "tags": []}

# (value, the JSON it becomes): the rules of docs/usage.md, "--json for scripts", in its order.
TABLE: list[tuple[str, object, object]] = [
    ("none", None, None),
    ("bool", True, True),
    ("int", 7, 7),
    ("float", 1.5, 1.5),
    ("nan", float("nan"), None),
    ("infinity", float("inf"), None),
    ("str", "Ann", "Ann"),
    ("enum", Colour.RED, "red"),
    ("enum of a number", Colour.TWO, 2),
    ("int enum", Level.HIGH, 3),
    ("aware datetime", datetime.datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "2024-05-01T12:30:00+00:00"),
    (
        "datetime, +02:00",
        datetime.datetime(2024, 5, 1, 12, 30, 0, 250, tzinfo=PLUS_2),
        "2024-05-01T12:30:00.000250+02:00",
    ),
    ("naive datetime", datetime.datetime(2024, 5, 1, 12, 30), "2024-05-01T12:30:00"),
    ("date", datetime.date(2024, 5, 1), "2024-05-01"),
    ("time", datetime.time(9, 5), "09:05:00"),
    ("aware time", datetime.time(9, 5, tzinfo=UTC), "09:05:00+00:00"),
    ("timedelta", datetime.timedelta(minutes=1, milliseconds=500), 60.5),
    ("decimal", decimal.Decimal("10.50"), "10.50"),
    ("big decimal", decimal.Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
    ("uuid", uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ("bytes", b"\x00\xff", "AP8="),
    ("dict", {"k": (1, {2})}, {"k": [1, [2]]}),
    ("enums in containers", {"a": [Colour.RED, (Level.HIGH,)], "b": {Colour.TWO}}, {"a": ["red", [3]], "b": [2]}),
    (
        "keys made strings",
        {Colour.RED: 1, 2: "two", None: 0, True: 1, datetime.date(2024, 5, 1): "d"},
        {"red": 1, "2": "two", "null": 0, "true": 1, "2024-05-01": "d"},
    ),
    ("set, sorted", {3, 1, 2}, [1, 2, 3]),
    ("set of Decimals, as numbers", {decimal.Decimal("10.00"), decimal.Decimal("9.50")}, ["9.50", "10.00"]),
    ("set of enums, by their JSON text", {Colour.RED, Colour.TWO}, ["red", 2]),
    ("frozenset of strings", frozenset({"b", "a"}), ["a", "b"]),
    ("set of mixed types, by their JSON text", {1, "a"}, ["a", 1]),
    ("generator", (x for x in range(2)), [0, 1]),
    ("pydantic model", POLICY, POLICY_JSON),
    (
        "dataclass",
        Point(1, Colour.TWO, datetime.date(2024, 5, 1)),
        {"x": 1, "colour": 2, "at": "2024-05-01", "policy": None},
    ),
    (
        "dataclass holding a pydantic model",
        Point(1, Colour.RED, datetime.date(2024, 5, 1), POLICY),
        {"x": 1, "colour": "red", "at": "2024-05-01", "policy": POLICY_JSON},
    ),
    ("pydantic models in a list", [POLICY, POLICY], [POLICY_JSON, POLICY_JSON]),
    ("nested dataclasses", Node("a", [Node("b")]), {"name": "a", "children": [{"name": "b", "children": []}]}),
    ("a class", Colour, str(Colour)),
    ("anything else", Path("/tmp/x"), "/tmp/x"),
]


@pytest.mark.parametrize(("value", "expected"), [(v, e) for _, v, e in TABLE], ids=[name for name, _, _ in TABLE])
def test_to_jsonable(value: object, expected: object) -> None:
    converted = to_jsonable(value)
    assert converted == expected
    assert json.loads(json.dumps(converted, allow_nan=False)) == expected  # plain, valid JSON


def test_attrs_classes() -> None:
    attr = pytest.importorskip("attr")  # attrs is not a dependency: tested where it is installed

    @attr.define
    class Money:
        amount: decimal.Decimal
        currency: Colour

    money = Money(decimal.Decimal("1.10"), Colour.RED)  # type: ignore[call-arg]  # attrs makes __init__
    assert to_jsonable([money]) == [{"amount": "1.10", "currency": "red"}]


def test_an_attrs_like_class_is_read_by_its_fields() -> None:
    """What attrs puts on a class (``__attrs_attrs__``, each with
    a ``name``) is all that is read: attrs is never imported."""

    class Field:
        def __init__(self, name: str) -> None:
            self.name = name

    class Money:
        __attrs_attrs__ = (Field("amount"), Field("currency"))

        def __init__(self) -> None:
            self.amount, self.currency = decimal.Decimal("2.00"), Colour.TWO

    assert to_jsonable(Money()) == {"amount": "2.00", "currency": 2}


def test_a_value_that_contains_itself_is_an_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        to_jsonable(loop)
    shared = [1]
    assert to_jsonable([shared, shared]) == [[1], [1]]  # the same list twice is not a cycle


def test_pydantic_and_attrs_are_never_imported_for_json() -> None:
    code = (
        "import sys, decimal\nfrom appshell.console.jsonable import to_jsonable\n"
        "assert to_jsonable({'a': [decimal.Decimal('1')]}) == {'a': ['1']}\n"
        "print(sorted(m for m in ('pydantic', 'attr', 'attrs') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "[]\n"


# -- end to end: appshell --json -c ----------------------------------------------------------------------


def test_json_of_orm_objects_rows_and_where(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    from test_daily_helpers import setup_types

    root = app_dir("typesapp")
    env = {"DATABASE_URL": sqlite_url}
    setup_types(root, env)
    code = (
        "p = first(Purchase)\n"
        "{'object': p, 'row': sql('select id, price from purchases')[0], 'where': where(Membership),"
        " 'enum_set': {p.status}, 'uuid_is_str': isinstance(p.token, uuid.UUID) if 'uuid' in globals() else True}"
    )
    result = run(["--json", "-c", "import uuid\n" + code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    purchase = found["object"]
    assert (
        purchase["status"] == "paid"
        and purchase["price"] == "10.50"
        and purchase["placed_at"].startswith("2024-05-01T12:00:00")
    )
    assert str(uuid.UUID(purchase["token"])) == purchase["token"]
    assert found["row"]["id"] == 1 and found["row"]["price"] in (
        "10.50",
        "10.5",
        10.5,
    )  # a raw row: as the driver gives it
    assert found["where"] == [{"group_id": 1, "user_id": 2, "role": "admin"}]
    assert found["enum_set"] == ["paid"]


def test_json_of_a_pydantic_value_and_a_dataclass(shop: Path) -> None:
    code = (
        "from pydantic import BaseModel\nfrom dataclasses import dataclass\nimport enum\n"
        "class Tier(enum.Enum):\n    GOLD = 'gold'\n"
        "class Policy(BaseModel):\n    tier: Tier\n    limit: Decimal\n"
        "@dataclass\nclass Report:\n    product: object\n    policy: Policy\n"
        "Report(first(Product), Policy(tier=Tier.GOLD, limit=first(Product).price))"
    )
    result = run(["--json", "-c", code], cwd=shop)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["policy"] == {"tier": "gold", "limit": report["product"]["price"]}  # an object, not a list of pairs
    assert report["product"]["sku"] == "SKU-001"
