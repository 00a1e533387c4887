"""Protected data masked in every helper on each database the docs name (issue 24 item 6): the example shop
seeded on SQLite, PostgreSQL and MariaDB, its production profile protecting customers.email and .name.

Each database returns its own types and result columns (MariaDB's text() columns, PostgreSQL's case
folding): the masking must hold on each, by a column's origin and by its name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.harness import run, run_module

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

PRODUCTION = ["--profile", "production", "--reason", "INC-7 refund check"]
REAL, MASKED = "customer1@example.com", "c***@e***.com"
HELPERS = [
    "print(where(Customer, limit=2))",
    "show(Customer, limit=2)",
    "print(first(Customer))",
    "print(find(Customer, 1))",
    "show(find(Customer, 1))",
    "print([find(Customer, 1)])",
    "print(sql('SELECT id, email FROM customers ORDER BY id LIMIT 2'))",  # text(): by the column's name
    "show('SELECT id, email FROM customers ORDER BY id LIMIT 2')",
    "show(select(Customer.id, Customer.email.label('contact')).order_by(Customer.id).limit(2))",  # by its origin
    "show(select(Customer.id, func.upper(Customer.email)).order_by(Customer.id).limit(2))",  # an expression over it
    "show(select(Customer).order_by(Customer.id).limit(2))",
]
MARK = "----"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def shop_on(request: pytest.FixtureRequest, shop: Path) -> tuple[Path, dict[str, str], str]:
    """The shop on each database: (its folder, the environment that points it there, the dialect's name)."""
    if request.param == "sqlite":
        return shop, {}, "sqlite"
    env = {"DATABASE_URL": str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "mariadb_url"))}
    run_module("shop.seed", shop, env)
    return shop, env, "postgresql" if request.param == "postgresql" else "mysql"


def test_every_helper_masks_the_protected_columns(shop_on: tuple[Path, dict[str, str], str]) -> None:
    shop, env, dialect = shop_on
    code = f"\nprint({MARK!r})\n".join(HELPERS)
    result = run([*PRODUCTION, "-c", f"print(engine.dialect.name)\n{code}"], cwd=shop, env=env)
    assert result.exit_code == 0, result.output
    used, _, rest = result.stdout.partition("\n")
    assert used in (dialect, "mariadb")  # the database the test means, not the shop's SQLite file
    outputs = rest.split(MARK + "\n")
    assert len(outputs) == len(HELPERS)
    for helper, out in zip(HELPERS, outputs):
        assert "@example.com" not in out.lower(), (helper, out)
        assert MASKED in out or MASKED.upper() in out, (helper, out)


def test_filters_find_the_row_unlock_shows_it_and_the_echo_and_json_stay_masked(
    shop_on: tuple[Path, dict[str, str], str],
) -> None:
    shop, env, _ = shop_on
    code = "\n".join(
        [
            f"print(count(Customer, email='{REAL}'))",
            f"print(where(Customer, email='{REAL}'))",
            "unlock('INC-42: customer asked for a copy of their data')",
            "print(first(Customer))",
            "lock()",
        ]
    )
    result = run([*PRODUCTION, "--echo-sql", "-c", code], cwd=shop, env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "1"
    assert f"│  1 │ {MASKED}" in result.stdout and "(1 row)" in result.stdout
    assert REAL in lines[-1]  # after unlock(): the real value
    assert REAL not in "\n".join(lines[:-1])
    assert "-- parameters:" in result.stderr and REAL not in result.stderr and MASKED in result.stderr
    as_json = run(
        [
            *PRODUCTION,
            "--json",
            "-c",
            "[first(Customer), sql('SELECT id, email FROM customers ORDER BY id LIMIT 1')[0]]",
        ],
        cwd=shop,
        env=env,
    )
    assert as_json.exit_code == 0, as_json.output
    first, row = json.loads(as_json.stdout)
    assert first["email"] == MASKED and row["email"] == MASKED
