"""Protected data, unit by unit: which columns are protected and why, how values are masked
(appshell.console.protect)."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appshell.config.profiles import load_profile
from appshell.console import protect
from appshell.console.protect import Protection, Rules, mask, mask_parameters, mask_source
from appshell.console.unlock import UnlockRefused, check_reason
from appshell.errors import ConfigError


class StringEncryptedType:  # named as sqlalchemy-utils names it: told by its class name, not imported
    pass


class EncryptedType:
    pass


class AesEncrypted(EncryptedType):  # a subclass of one is encrypted too
    pass


DEFAULT = Rules(enabled=True)
EMAIL = Rules(enabled=True, columns=("customers.email",))

# (rules, table, column, info, type, protected, why contains)
REASONS = [
    (DEFAULT, "users", "password_hash", None, None, True, "name pattern '*password*'"),
    (DEFAULT, "users", "api_token", None, None, True, "name pattern '*token*'"),
    (DEFAULT, "users", "ssn", None, None, True, "name pattern 'ssn'"),
    (DEFAULT, "people", "spouse_ssn", None, None, True, "name pattern '*_ssn'"),
    (DEFAULT, "accounts", "iban", None, None, True, "name pattern 'iban'"),
    (DEFAULT, "payments", "card_number", None, None, True, "name pattern '*card_number*'"),
    (DEFAULT, "apps", "client_secret", None, None, True, "name pattern '*secret*'"),
    (DEFAULT, "lessons", "lesson", None, None, False, ""),  # "ssn" inside a word is not an ssn
    (DEFAULT, "customers", "email", None, None, False, ""),  # personal, but not by name: the profile or the model says
    (EMAIL, "customers", "email", None, None, True, "protect.columns 'customers.email'"),
    (EMAIL, "CUSTOMERS", "Email", None, None, True, "protect.columns"),  # names compare as the database folds them
    (EMAIL, "orders", "email", None, None, False, ""),
    (Rules(True, columns=("*.email",)), "orders", "email", None, None, True, "protect.columns '*.email'"),
    (
        Rules(True, columns=("billing.invoices.*",)),
        "billing.invoices",
        "total",
        None,
        None,
        True,
        "'billing.invoices.*'",
    ),
    (DEFAULT, "notes", "body", {"protected": True}, None, True, 'info["protected"]'),
    (DEFAULT, "users", "password", {"protected": False}, None, False, ""),  # the model says no
    (
        Rules(True, columns=("users.password",)),
        "users",
        "password",
        {"protected": False},
        None,
        True,
        "protect.columns",
    ),  # the profile wins
    (Rules(True, default_names=False), "users", "password", None, None, False, ""),
    (Rules(True, exclude=("users.tokens_used",)), "users", "tokens_used", None, None, False, ""),
    (Rules(True, exclude=("*.*",)), "notes", "body", {"protected": True}, None, False, ""),
    (DEFAULT, "users", "phone", None, StringEncryptedType(), True, "encrypted type StringEncryptedType"),
    (DEFAULT, "users", "phone", None, AesEncrypted(), True, "encrypted type AesEncrypted"),
]


@pytest.mark.parametrize("rules, table, column, info, type_, protected, why", REASONS)
def test_what_is_protected_and_why(
    rules: Rules, table: str, column: str, info: dict[str, Any] | None, type_: Any, protected: bool, why: str
) -> None:
    reasons = rules.reasons(table, column, info, type_)
    assert bool(reasons) is protected, reasons
    assert why in "; ".join(reasons)


MASKS = [
    ("john@example.com", "j***@e***.com"),
    ("customer1@mail.example.org", "c***@m***.org"),
    ("hunter22", "h*******"),  # a string keeps its length
    ("abc", "***"),  # a short one shows no letter at all
    ("", ""),
    (None, None),  # NULL stays NULL: "has none" is told apart from "has one"
    (42, "<int>"),
    (decimal.Decimal("9.99"), "<Decimal>"),
    (datetime.date(1990, 1, 31), "<date>"),
    (b"\x00\x01\x02", "<3 bytes>"),
]


@pytest.mark.parametrize("value, masked", MASKS)
def test_masks_keep_shape(value: Any, masked: Any) -> None:
    assert mask(value) == masked


@pytest.fixture
def protecting() -> Iterator[Protection]:
    """A session's protection, customers.email protected: active for the test, then off."""
    from sqlalchemy import Column, Integer, MetaData, String, Table

    metadata = MetaData()
    customers = Table(
        "customers", metadata, Column("id", Integer, primary_key=True), Column("email", String), Column("name", String)
    )
    users = Table("users", metadata, Column("id", Integer, primary_key=True), Column("password_hash", String))
    protection = Protection(EMAIL, lambda: [customers, users])
    protect.activate(protection)
    try:
        yield protection
    finally:
        protect.deactivate()


SOURCES = [
    ('where(Customer, email="ann@example.com")', "where(Customer, email='a***@e***.com')"),
    ("where(Customer, Customer.email == 'ann@example.com')", "where(Customer, Customer.email == 'a***@e***.com')"),
    ('find(User, 1).password_hash == "s3cretvalue"', "find(User, 1).password_hash == 's**********'"),
    ('x = "not protected"', 'x = "not protected"'),
    ('where(Customer, name="Ann")', 'where(Customer, name="Ann")'),  # name is not protected here
    ('where(Customer, email="ann@example.com"', 'where(Customer, email="ann@example.com"'),  # unreadable input: kept
    (
        'for c in where(Customer,\n        email="ann@example.com"):\n    print(c)',
        "for c in where(Customer,\n        email='a***@e***.com'):\n    print(c)",
    ),
]


@pytest.mark.parametrize("source, kept", SOURCES)
def test_history_keeps_a_mask_of_the_strings_given_for_protected_columns(
    protecting: Protection, source: str, kept: str
) -> None:
    assert mask_source(source) == kept


def test_history_is_masked_after_unlock_too(protecting: Protection) -> None:
    protecting.unlock([])  # the history file outlives the unlock
    assert mask_source('where(Customer, email="ann@example.com")') == "where(Customer, email='a***@e***.com')"


class _Compiled:
    positiontup = ["email_1", "id_1"]


class _Context:
    compiled = _Compiled()


PARAMETERS = [
    ({"email_1": "ann@example.com", "id_1": 3}, None, {"email_1": "a***@e***.com", "id_1": 3}),
    ({"email": "ann@example.com", "name": "Ann"}, None, {"email": "a***@e***.com", "name": "Ann"}),  # an INSERT's
    (("ann@example.com", 3), _Context(), ("a***@e***.com", 3)),  # positional: named by the compiled statement
    (("ann@example.com", 3), None, ("ann@example.com", 3)),  # which value is which is not known here: shown as it is
    (
        [{"email": "a@example.com"}, {"email": "b@example.com"}],
        None,
        [{"email": "a***@e***.com"}, {"email": "b***@e***.com"}],
    ),
    ({"password_hash_1": "x1y2z3w4"}, None, {"password_hash_1": "x*******"}),  # protected by its name
]


@pytest.mark.parametrize("parameters, context, shown", PARAMETERS)
def test_sql_echo_parameters(protecting: Protection, parameters: Any, context: Any, shown: Any) -> None:
    assert mask_parameters(parameters, context) == shown


def test_nothing_is_masked_without_a_protecting_session() -> None:
    assert protect.active() is None
    assert mask_parameters({"email": "ann@example.com"}) == {"email": "ann@example.com"}
    assert mask_source('where(Customer, email="ann@example.com")') == 'where(Customer, email="ann@example.com")'


def test_unlock_one_column_leaves_the_others_masked(protecting: Protection) -> None:
    protecting.unlock(["customers.email"])
    assert mask_parameters({"email": "ann@example.com", "password_hash": "abcdefgh"}) == {
        "email": "ann@example.com",
        "password_hash": "a*******",
    }
    protecting.lock()
    assert mask_parameters({"email": "ann@example.com"}) == {"email": "a***@e***.com"}


def test_mask_mapping_by_table_and_by_name(protecting: Protection) -> None:
    row = {"id": 1, "email": "ann@example.com", "name": "Ann"}
    assert protect.mask_mapping("customers", row) == {"id": 1, "email": "a***@e***.com", "name": "Ann"}
    assert protect.mask_mapping(None, row) == {"id": 1, "email": "a***@e***.com", "name": "Ann"}


@pytest.mark.parametrize("reason", [None, "", "   ", "fix", "INC-42", "look at it", "customer-data-export-request"])
def test_a_reason_must_say_why(reason: str | None) -> None:
    with pytest.raises(
        UnlockRefused, match=r'unlock\(\) needs a reason of a few words, which is recorded: unlock\("INC-42'
    ):
        check_reason(reason)


def test_a_reason_is_kept_tidy() -> None:
    assert check_reason("  INC-42:   customer asked\nfor a copy ") == "INC-42: customer asked for a copy"


@pytest.mark.parametrize(
    "text, words",
    [
        (
            '[protect]\ncolumns = "customers.email"\n',
            "bad value 'customers.email' for 'protect.columns' — use a list of \"table.column\" glob patterns",
        ),
        ('[protect]\ncolumns = ["email"]\n', "bad value ['email'] for 'protect.columns'"),
        ('[protect]\nexclude = [".x"]\n', "bad value ['.x'] for 'protect.exclude'"),
        ('[protect]\nenabled = "yes"\n', "bad value 'yes' for 'protect.enabled' — use true or false"),
        ('[protect]\ncolumn = ["a.b"]\n', "unknown key 'protect.column' (did you mean 'protect.columns'?)"),
    ],
)
def test_a_bad_protect_section_is_an_error_naming_file_key_and_allowed_values(
    tmp_path: Path, text: str, words: str
) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "mine.toml").write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_profile("mine", tmp_path)
    assert str(tmp_path / "profiles" / "mine.toml") in raised.value.format()
    assert words in raised.value.format()


def test_production_protects_and_development_does_not() -> None:
    assert load_profile("production", None).protect.enabled is True
    assert load_profile("development", None).protect.enabled is False
    assert load_profile("development", None).protect.default_names is True


def test_reprs_mask_protected_values_never_loading_anything() -> None:
    from sqlalchemy import Integer, String
    from sqlalchemy.orm import DeclarativeBase, mapped_column

    from appshell.console.reprs import install_reprs

    class Base(DeclarativeBase):
        pass

    class Account(Base):  # no __repr__ of its own: appshell's, masked
        __tablename__ = "accounts"
        id = mapped_column(Integer, primary_key=True)
        login = mapped_column(String(50))
        password_hash = mapped_column(String(100))

    class Card(Base):  # its own __repr__: kept, the protected values it shows masked
        __tablename__ = "cards"
        id = mapped_column(Integer, primary_key=True)
        card_number = mapped_column(String(20))

        def __repr__(self) -> str:
            return f"Card({self.card_number!r})"

    install_reprs([Account, Card], protect=True)
    account, card = (
        Account(id=1, login="ann", password_hash="$2b$12$abcdef"),
        Card(id=2, card_number="4111111111111111"),
    )
    assert repr(account) == "<Account id=1 login='ann' password_hash='$2b$12$abcdef'>"  # no session protects: as it is
    protection = Protection(DEFAULT, lambda: [Account.__table__, Card.__table__])
    protect.activate(protection)
    try:
        assert repr(account) == "<Account id=1 login='ann' password_hash='$************'>"
        assert repr(card) == "Card('4***************')"
        assert card.card_number == "4111111111111111"  # the object itself is untouched
        protection.unlock([])
        assert repr(card) == "Card('4111111111111111')"
    finally:
        protect.deactivate()
