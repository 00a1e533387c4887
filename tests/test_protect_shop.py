"""Protected data in the example shop (its production profile protects customers.email and .name):
masked in every helper's table and in reprs, shown after unlock(reason), which is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.audit import audit_records
from support.harness import run
from support.terminal import leave, spawn_shell

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

PRODUCTION = ["--profile", "production", "--reason", "INC-7 refund check"]
REAL, MASKED = "customer1@example.com", "c***@e***.com"


def session(shop: Path, code: str, *flags: str) -> str:
    result = run([*(flags or PRODUCTION), "-c", code], cwd=shop)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    "code",
    [
        "print(where(Customer, limit=2))",
        "show(Customer, limit=2)",
        "print(first(Customer))",  # the shop's own __repr__ shows the e-mail: masked in it
        "print(find(Customer, 1))",
        "show(find(Customer, 1))",
        "print([find(Customer, 1)])",
        "print(sql('SELECT id, email FROM customers ORDER BY id LIMIT 2'))",  # text(): by the column's name
        "show('SELECT id, email FROM customers ORDER BY id LIMIT 2')",
        # by its origin, whatever its label
        "show(select(Customer.id, Customer.email.label('contact')).order_by(Customer.id).limit(2))",
        "show(select(Customer.id, func.upper(Customer.email)).order_by(Customer.id).limit(2))",  # an expression over it
        "show(select(Customer).order_by(Customer.id).limit(2))",
    ],
)
def test_protected_columns_are_masked_in_every_helper(shop: Path, code: str) -> None:
    out = session(shop, code)
    assert "@example.com" not in out.lower()
    assert "c***@e***.com" in out or "C***@E***.COM" in out


def test_the_name_is_masked_and_other_columns_shown(shop: Path) -> None:
    out = session(shop, "print(where(Customer, limit=1))")
    assert "C*********" in out and "Customer 1" not in out  # customers.name: same length
    assert "│ FR " in out  # country is not protected


def test_equality_filters_still_find_the_row(shop: Path) -> None:
    out = session(shop, f"print(where(Customer, email='{REAL}')); print(count(Customer, email='{REAL}'))")
    assert f"│  1 │ {MASKED}" in out and "(1 row)" in out
    assert REAL not in out
    assert out.rstrip().endswith("1")


def test_development_shows_everything(shop: Path) -> None:
    out = session(shop, "print(first(Customer)); print(where(Customer, limit=1))", "--profile", "development")
    assert out.count(REAL) == 2


def test_unlock_with_a_reason_shows_values_and_is_recorded_until_lock(shop: Path) -> None:
    code = "\n".join(
        [
            "print(first(Customer))",
            "unlock('INC-42: customer asked for a copy of their data')",
            "print(first(Customer)); print(where(Customer, limit=1))",
            "lock()",
            "print(first(Customer))",
        ]
    )
    result = run([*PRODUCTION, "-c", code], cwd=shop)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"<Customer 1 {MASKED}>"
    assert lines[1] == f"<Customer 1 {REAL}>"
    assert f"│  1 │ {REAL} │ Customer 1 │" in result.stdout
    assert lines[-1] == f"<Customer 1 {MASKED}>"
    assert (
        "unlocked customers.email, customers.name until lock() or the session's end — recorded as sensitive access"
        in result.stderr
    )
    records = audit_records(shop / ".appshell" / "audit.jsonl")
    access = [r for r in records if r.get("kind") == "sensitive_access"]
    assert len(access) == 1
    assert access[0]["reason"] == "INC-42: customer asked for a copy of their data"
    assert access[0]["columns"] == ["customers.email", "customers.name"]
    assert access[0]["user"] and access[0]["ts"] and access[0]["parent"] == 1
    assert [r["kind"] for r in records if r.get("kind", "").startswith("sensitive_access_end")] == [
        "sensitive_access_end"
    ]


def test_unlock_one_column(shop: Path) -> None:
    out = session(shop, "unlock('INC-43: checking one address', Customer.email); print(where(Customer, limit=1))")
    assert f"│  1 │ {REAL} │ C********* │" in out
    records = audit_records(shop / ".appshell" / "audit.jsonl")
    assert [r["columns"] for r in records if r.get("kind") == "sensitive_access"] == [["customers.email"]]


@pytest.mark.parametrize("call", ["unlock()", "unlock('')", "unlock('fix')", "unlock('INC-42')"])
def test_unlock_without_a_real_reason_is_refused_in_one_line(shop: Path, call: str) -> None:
    result = run([*PRODUCTION, "-c", f"{call}\nprint(first(Customer))"], cwd=shop)
    assert result.exit_code == 1
    assert (
        "UnlockRefused: unlock() needs a reason of a few words, which is "
        'recorded: unlock("INC-42: customer asked for a copy of their data")' in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert REAL not in result.stdout
    assert not [r for r in audit_records(shop / ".appshell" / "audit.jsonl") if r.get("kind") == "sensitive_access"]


def test_unlock_an_unprotected_column_names_the_protected_ones(shop: Path) -> None:
    result = run([*PRODUCTION, "-c", "unlock('INC-44: look at the countries', 'customers.country')"], cwd=shop)
    assert result.exit_code == 1
    assert "no protected column matches — these are: customers.email, customers.name" in result.stderr


def test_protected_lists_what_is_protected_and_why(shop: Path) -> None:
    result = run(["protected", "--profile", "production"], cwd=shop)
    assert result.exit_code == 0, result.output
    assert "customers.email │ protect.columns 'customers.email'" in result.stdout
    assert "customers.name  │ protect.columns 'customers.name' " in result.stdout
    assert "a guard against accidental exposure, not enforcement" in result.stdout
    off = run(["protected"], cwd=shop)
    assert "(0 rows)" in off.stdout and "protect.enabled is off" in off.stdout


@pytest.mark.subprocess
def test_a_production_terminal_session_masks_and_unlocks(shop: Path) -> None:
    child = spawn_shell(shop, "--shell", "python", *PRODUCTION)
    child.expect(r"\[shop PRODUCTION\]")
    child.sendline("where(Customer, limit=2)")
    child.expect(r"│  2 │ c\*\*\*@e\*\*\*\.com │ C\*{9} │")
    child.expect(r"\[shop PRODUCTION\]")
    child.sendline("unlock()")  # at a terminal, the reason is asked for
    child.expect(r"Why do you need to see protected data\? ")
    child.sendline("INC-42: customer asked for a copy of their data")
    child.expect("unlocked customers.email, customers.name")
    child.expect(r"\[shop PRODUCTION\]")
    child.sendline("first(Customer)")
    child.expect(r"<Customer 1 customer1@example\.com>")
    child.expect(r"\[shop PRODUCTION\]")
    leave(child)
    records = audit_records(shop / ".appshell" / "audit.jsonl")
    assert [r["reason"] for r in records if r.get("kind") == "sensitive_access"] == [
        "INC-42: customer asked for a copy of their data"
    ]


@pytest.mark.subprocess
@pytest.mark.parametrize("shell, file", [("ipython", "ipython.sqlite"), ("ptpython", "ptpython"), ("python", "python")])
def test_history_keeps_the_strings_given_for_protected_columns_masked(shop: Path, shell: str, file: str) -> None:
    import sqlite3

    child = spawn_shell(shop, "--shell", shell, "-q", *PRODUCTION)
    child.expect(r"\[shop PRODUCTION\]")
    child.sendline(f"print('found', count(Customer, email='{REAL}'))")
    child.expect("found 1")  # the filter used the real value
    child.expect(r"\[shop PRODUCTION\]")
    leave(child)
    path = shop / ".appshell" / "history" / file
    if shell == "ipython":
        with sqlite3.connect(path) as conn:
            text = "\n".join(row[0] for row in conn.execute("select source_raw from history"))
    else:
        text = path.read_text()
    assert f"count(Customer, email='{MASKED}')" in text and REAL not in text, text


def test_audit_log_shows_the_typed_values_masked(shop: Path) -> None:
    out = session(shop, f"count(Customer, email='{REAL}')\nshow(audit_log())")
    assert f"count(Customer, email='{MASKED}')" in out and REAL not in out


def test_a_changed_object_is_never_written_with_its_masks(shop: Path) -> None:
    """The app's own repr runs with the masks in place of the values: never on an object with changes
    a flush would write (appshell's own repr then), and never with autoflush on."""
    code = "\n".join(
        [
            "c = find(Customer, 1); c.name = 'Renamed Customer'",
            "print(repr(c))",
            "print(c.orders[0].customer is c)",  # a lazy load: autoflush writes the change, not a mask
            "print(tuple(sql('SELECT name, email FROM customers WHERE id = 1')[0])); "
            "unlock('INC-9: check what was written'); "
            "print(tuple(sql('SELECT name, email FROM customers WHERE id = 1')[0]))",
        ]
    )
    result = run(["--profile", "production", "--reason", "INC-9 rename", "--write", "-c", code], cwd=shop)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert (
        lines[0] == "<Customer id=1 email='c***@e***.com' name='R***************' country='FR'>"
    )  # appshell's repr: the object changed
    assert lines[-1] == "('Renamed Customer', 'customer1@example.com')"


def test_the_sql_echo_masks_the_parameters_bound_to_protected_columns(shop: Path) -> None:
    result = run([*PRODUCTION, "--echo-sql", "-c", f"print(count(Customer, email='{REAL}'))"], cwd=shop)
    assert result.exit_code == 0, result.output
    assert "-- parameters:" in result.stderr and REAL not in result.stderr and MASKED in result.stderr, result.stderr


def test_doctor_says_how_protected_data_holds(shop: Path) -> None:
    import json

    result = run([*PRODUCTION, "doctor", "--json"], cwd=shop)
    checks = {c["check"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)["checks"]}
    assert checks["protected data"] == (
        "WARN",
        "SQLite has no column grants: protected data is masked in Python only (guarded)",
    )
    development = run(["doctor", "--json"], cwd=shop)
    assert "protected data" not in {
        c["check"] for c in json.loads(development.stdout)["checks"]
    }  # nothing protected: no row


@pytest.mark.parametrize(
    "code",
    ["first(Customer)", "where(Customer, limit=2)", "sql('SELECT id, email FROM customers ORDER BY id LIMIT 2')"],
)
def test_json_masks_protected_columns(shop: Path, code: str) -> None:
    result = run([*PRODUCTION, "--json", "-c", code], cwd=shop)
    assert result.exit_code == 0, result.output
    assert REAL not in result.stdout and MASKED in result.stdout, result.stdout
    unlocked = run(
        [*PRODUCTION, "--json", "-c", f"unlock('INC-7: customer asked for a copy of their data'); {code}"], cwd=shop
    )
    assert REAL in unlocked.stdout, unlocked.output
