"""SQL the app runs while it boots is in the session_start (``boot_sql``); appshell's own is not."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.audit import audit_records
from support.harness import run

from appshell.record.boot_sql import MAX_CHARS, MAX_STATEMENTS

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


def _start(shop: Path, *args: str) -> dict:  # type: ignore[type-arg]
    log = shop / "audit.jsonl"
    result = run(["--audit-log", str(log), *args, "-c", "print(count(Product))"], cwd=shop)
    assert result.exit_code == 0, result.output
    return next(r for r in audit_records(log) if r["event"] == "session_start")


def _at_import(shop: Path, code: str) -> None:
    with (shop / "shop" / "db.py").open("a") as f:
        f.write(f"\nwith engine.begin() as _c:\n{code}")


def test_an_app_that_runs_no_sql_while_it_boots_has_no_boot_sql(shop: Path) -> None:
    assert "boot_sql" not in _start(shop)  # appshell's own connection check is not the app's SQL


def test_sql_an_app_module_runs_at_import_is_recorded(shop: Path) -> None:
    _at_import(shop, '    _c.exec_driver_sql("update products set stock = stock where id = 1")\n')
    start = _start(shop)
    assert start["boot_sql"] == ["update products set stock = stock where id = 1"]
    assert "boot_sql_more" not in start


def test_many_and_long_statements_are_capped_and_counted(shop: Path) -> None:
    long = "select 1 " + "-- padding " * (MAX_CHARS // 10)
    _at_import(
        shop,
        f"    _c.exec_driver_sql({long!r})\n"
        f"    for _ in range({MAX_STATEMENTS + 7}):\n"
        '        _c.exec_driver_sql("select count(*) from products")\n',
    )
    start = _start(shop)
    assert len(start["boot_sql"]) == MAX_STATEMENTS
    assert start["boot_sql"][0].endswith(" …[cut]") and len(start["boot_sql"][0]) == MAX_CHARS + len(" …[cut]")
    assert start["boot_sql_more"] == 8


def test_audit_show_lists_it_before_the_first_statement(shop: Path) -> None:
    _at_import(shop, '    _c.exec_driver_sql("update products set stock = stock where id = 1")\n')
    start = _start(shop)
    shown = run(["audit", "show", start["session"], "--log", str(shop / "audit.jsonl")], cwd=shop)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    at = lines.index("── SQL the app ran while it booted (1; reported by the session)")
    assert lines[at + 1].strip() == "1. update products set stock = stock where id = 1"
    assert at < next(i for i, line in enumerate(lines) if line.startswith("── #1"))
