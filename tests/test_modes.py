"""-c, scripts and stdin: real subprocesses on the real example shop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


def test_command_runs_in_app_context(shop: Path) -> None:
    result = run(["-c", "print(count(Customer), count(Order, status='paid'))"], cwd=shop)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["20", "13"]


def test_command_args_are_sys_argv(shop: Path) -> None:
    result = run(["-c", "import sys; print(sys.argv)", "a", "--b"], cwd=shop)
    assert result.stdout.strip() == "['-c', 'a', '--b']"


def test_script_with_args(shop: Path, tmp_path: Path) -> None:
    script = tmp_path / "fix.py"
    script.write_text(
        "import sys\n"
        "order = find(Order, int(sys.argv[1]))\n"
        "print(__name__, Path(__file__).name, order.id, order.status)\n".replace(
            "Path(__file__).name", "__file__.rsplit('/', 1)[-1]"
        )
    )
    result = run([str(script), "7"], cwd=shop)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "__main__ fix.py 7 shipped"


def test_program_on_stdin_without_tty(shop: Path) -> None:
    result = run([], cwd=shop, input="n = count(Product)\nprint('products:', n)\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "products: 8"


def test_dash_reads_stdin_with_args(shop: Path) -> None:
    result = run(["-", "x"], cwd=shop, input="import sys; print(sys.argv)")
    assert result.stdout.strip() == "['-', 'x']"


def test_json_of_last_expression(shop: Path) -> None:
    result = run(["--json", "-c", "where(Customer, country='SE')"], cwd=shop)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == [3, 8, 13, 18]
    assert rows[0]["email"] == "customer3@example.com"


def test_user_error_prints_traceback_exit_1(shop: Path) -> None:
    result = run(["-c", "x = 1\nfind(Order, 1).nope"], cwd=shop)
    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert 'File "<string>", line 2' in result.stderr
    assert "AttributeError" in result.stderr
    assert "appshell/" not in result.stderr  # appshell's own frames are not shown


def test_syntax_error_exit_1(shop: Path) -> None:
    result = run(["-c", "print(("], cwd=shop)
    assert result.exit_code == 1
    assert "SyntaxError" in result.stderr


def test_system_exit_code_passes_through(shop: Path) -> None:
    assert run(["-c", "raise SystemExit(4)"], cwd=shop).exit_code == 4
    assert run(["-c", "import sys; sys.exit()"], cwd=shop).exit_code == 0


def test_keyboard_interrupt_exit_130(shop: Path) -> None:
    result = run(["-c", "raise KeyboardInterrupt"], cwd=shop)
    assert result.exit_code == 130
    assert "KeyboardInterrupt" in result.stderr


def test_uncommitted_changes_are_rolled_back(shop: Path) -> None:
    run(["-c", "session.add(Product(sku='X-1', title='x', price=1, stock=1)); session.flush()"], cwd=shop)
    assert run(["-c", "print(count(Product))"], cwd=shop).stdout.strip() == "8"
    run(["-c", "session.add(Product(sku='X-1', title='x', price=1, stock=1)); commit()"], cwd=shop)
    assert run(["-c", "print(count(Product))"], cwd=shop).stdout.strip() == "9"


def test_missing_script_is_usage_error(shop: Path) -> None:
    result = run(["nope.py"], cwd=shop)
    assert result.exit_code == 2
    assert result.stderr == "appshell: error: cannot open script 'nope.py' (no such file) — check the path\n"
