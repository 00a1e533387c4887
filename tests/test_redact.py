"""Masking: URL passwords parsed with make_url, and redaction that cannot erase evidence."""

from __future__ import annotations

import pytest

from appshell.config.redact import MASK, Redactor, is_secret_value, keeps_evidence, mask_mapping, mask_url, url_secrets

# (text, masked). Passwords may hold any character; the rest of the text stays as it was.
MASK_URL = [
    ("postgresql://bob:pa55word@db/x", "postgresql://bob:***@db/x"),
    ("postgresql+psycopg://bob:pa/ss@db/x", "postgresql+psycopg://bob:***@db/x"),
    ("postgresql+psycopg://bob:pa#ss@db:5432/x", "postgresql+psycopg://bob:***@db:5432/x"),
    ("postgresql+psycopg://bob:pa?ss@db/x?sslmode=require", "postgresql+psycopg://bob:***@db/x?sslmode=require"),
    ("postgresql://bob:pa:ss@db/x", "postgresql://bob:***@db/x"),
    ("postgresql://bob:p@ss@db/x", "postgresql://bob:***@db/x"),  # an unencoded '@'
    ("postgresql://bob:p/a#s?s:w@rd@db/x?x=1", "postgresql://bob:***@db/x?x=1"),
    ("postgresql://bob:pa%2Fss@db/x", "postgresql://bob:***@db/x"),
    ("postgresql://:onlypass@db/x", "postgresql://:***@db/x"),
    ("postgresql://bob:pa ss'w\"d@db/x", "postgresql://bob:***@db/x"),  # a whole value: spaces and quotes too
    ("postgresql://u@db/x?password=s3cret", "postgresql://u@db/x?password=***"),
    (
        "postgresql://u@db/x?sslmode=require&sslpassword=abc&token=zz",
        "postgresql://u@db/x?sslmode=require&sslpassword=***&token=***",
    ),
    (
        "mysql+pymysql://u@h/d?passwd=a1&pwd=b2&charset=utf8mb4",
        "mysql+pymysql://u@h/d?passwd=***&pwd=***&charset=utf8mb4",
    ),
    ("https://api.example.com/v1?access_token=abc123&page=2", "https://api.example.com/v1?access_token=***&page=2"),
    # free text: each URL found and masked, the words around it untouched
    ("x = 'postgresql://bob:pa55word@db/x'; y = 1", "x = 'postgresql://bob:***@db/x'; y = 1"),
    ("--database-url=postgresql://u:p#w@h/d", "--database-url=postgresql://u:***@h/d"),
    ("cannot connect to postgresql://u:a/b@h:1/x (refused)", "cannot connect to postgresql://u:***@h:1/x (refused)"),
    ('"postgresql://a:one1@h/x","postgresql://b:two2@h/y"', '"postgresql://a:***@h/x","postgresql://b:***@h/y"'),
    ("see https://medium.com/@user", "see https://medium.com/@user"),
    # nothing to mask
    ("mysql+pymysql://root@127.0.0.1:3306/test", "mysql+pymysql://root@127.0.0.1:3306/test"),
    ("sqlite:////tmp/app.db", "sqlite:////tmp/app.db"),
    ("postgresql://db:5432/x", "postgresql://db:5432/x"),
    ("Engine(postgresql://bob:***@db/x)", "Engine(postgresql://bob:***@db/x)"),
    ("no url here: a:b@c", "no url here: a:b@c"),
    # SQL dressed as a URL inside a comment is code, not a password: masking it would erase it
    ("delete/*a://u:*/from/**/orders/*@h*/", "delete/*a://u:*/from/**/orders/*@h*/"),
]


@pytest.mark.parametrize(("text", "masked"), MASK_URL)
def test_mask_url(text: str, masked: str) -> None:
    assert mask_url(text) == masked


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("postgresql://bob:pa%2Fss@db/x", {"pa/ss"}),
        ("postgresql://bob:pa/ss#x@db/x?password=two2two2", {"pa/ss#x", "two2two2"}),
        ("postgresql://bob@db/x", set()),
        ("not a url", set()),
    ],
)
def test_url_secrets(url: str, secrets: set[str]) -> None:
    assert set(url_secrets(url)) == secrets


def test_mask_mapping_masks_names_and_urls() -> None:
    shown = mask_mapping(
        {"SHOP_API_TOKEN": "x", "database_url": "postgresql://u:a/b#c@h/d?password=p", "empty_TOKEN": "", "n": 3}
    )
    assert shown == {
        "SHOP_API_TOKEN": MASK,
        "database_url": "postgresql://u:***@h/d?password=***",
        "empty_TOKEN": "",
        "n": 3,
    }


# (value, kept as evidence) — a kept value is never masked, whatever variable holds it.
EVIDENCE = [
    ("delete", True),  # shorter than 8
    ("orders", True),
    ("truncate", True),  # a SQL keyword (sqlglot's tokens / SQLAlchemy's reserved words)
    ("DISTINCT", True),
    ("current_user", True),
    ("delete from order_lines", True),  # words that include keywords
    ("sql('delete from order_lines'); commit()", True),  # the program itself
    ("print(count(Product))", True),  # code without a single space
    ("x=session.delete(o)", True),
    ("o.status='void'", True),  # a change to an object, recorded cell by cell
    ("rows[0]=12345678", True),
    ("card=4111111111111111", False),  # name=value: how secrets look
    ("tok-abcdef123", False),
    ("sk_live_51HabcDEF", False),
    ("Zm9vYmFyYmF6cXV4", False),
]


@pytest.mark.parametrize(("value", "kept"), EVIDENCE)
def test_keeps_evidence(value: str, kept: bool) -> None:
    assert keeps_evidence(value) is kept


# (value of a secret-named variable, masked wherever it occurs)
SECRET_VALUES = [
    ("tok-abcdef123", True),
    ("pa55word", True),
    ("sk_live_51HabcDEF", True),
    ("d8e8fca2dc0f896fd7cb4cb0031ba249", True),
    ("delete", False),
    ("order_lines", False),  # a name, not a credential
    ("OrderLine", False),
    ("12345678", False),  # a number: an id the statement touched
    ("correct horse battery", False),  # text
    ("sql('delete from order_lines'); commit()", False),
    ("", False),
]


@pytest.mark.parametrize(("value", "secret"), SECRET_VALUES)
def test_is_secret_value(value: str, secret: bool) -> None:
    assert is_secret_value(value) is secret


PROGRAM = "sql('delete from order_lines where customer_id = 12345678'); commit()"

# (environment, patterns, text, recorded)
REDACTOR = [
    ({"API_TOKEN": "tok-abcdef123"}, [], "t = 'tok-abcdef123'", "t = '***'"),
    ({"A_KEY": "delete", "B_KEY": "order_lines"}, [], PROGRAM, PROGRAM),
    ({"FOO_TOKEN": PROGRAM}, [], PROGRAM, PROGRAM),
    ({"FOO_TOKEN": "12345678"}, [], PROGRAM, PROGRAM),
    ({}, [r"card=\d+"], "note = 'card=4111111111111111'", "note = '***'"),
    ({}, [r"\d{4}"], "pin 1234", "pin 1234"),  # a regex match shorter than 8 stays
    ({}, [r".*"], PROGRAM, PROGRAM),  # a regex cannot erase code either
    ({}, [r"(?s).+"], "print(count(Product))", "print(count(Product))"),
    (
        {"DATABASE_URL": "postgresql://u:pa/ss#word@h/d"},
        [],
        "connect(password='pa/ss#word')",
        "connect(password='***')",
    ),
    ({}, [], "create_engine('postgresql://u:pa/ss#word@h/d')", "create_engine('postgresql://u:***@h/d')"),
    ({"LONG_SECRET": "abc-12345-xyz", "SHORT_SECRET": "abc-12345"}, [], "abc-12345-xyz abc-12345", "*** ***"),
]


@pytest.mark.parametrize(("environ", "patterns", "text", "recorded"), REDACTOR)
def test_redactor(environ: dict[str, str], patterns: list[str], text: str, recorded: str) -> None:
    assert Redactor.from_environment(environ, patterns)(text) == recorded


def test_redactor_ignores_pwd_the_folder() -> None:
    assert Redactor.from_environment({"PWD": "/srv/app/current", "OLDPWD": "/srv/app/release-1"}).secrets == []
