"""Top-level `await` in every shell and mode, on one event loop per session (issue 12 item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.audit import audit_records
from support.harness import run
from support.terminal import leave, spawn_shell

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

SHELLS = ["ipython", "ptpython", "python"]
# Two awaits in two statements: the second finds the loop the first ran on (one loop per session).
FIRST = "import asyncio; loop_a = await asyncio.sleep(0, result=asyncio.get_running_loop())"
SECOND = (
    "loop_b = await asyncio.sleep(0, result=asyncio.get_running_loop()); "
    "print('same loop', loop_a is loop_b, count(Product))"
)


@pytest.mark.parametrize("shell", SHELLS)
def test_await_at_the_prompt(shop: Path, tmp_path: Path, shell: str) -> None:
    log = tmp_path / "audit.jsonl"
    child = spawn_shell(shop, "--shell", shell, "--audit-log", str(log), "-q")
    child.expect(r"\[dev\]")
    child.sendline(FIRST)
    child.expect(r"\[dev\]")
    child.sendline(SECOND)
    child.expect("same loop True 8")
    child.expect(r"\[dev\]")
    child.sendline("await asyncio.sleep(0, result='awaited value')")  # an expression's value is shown
    child.expect("awaited value")
    child.expect(r"\[dev\]")
    leave(child)
    results = [r for r in audit_records(log) if r["event"] == "result"]
    assert [r["status"] for r in results] == ["ok", "ok", "ok"]


@pytest.mark.parametrize("mode", ["command", "script", "stdin", "json"])
def test_await_in_programs(shop: Path, tmp_path: Path, mode: str) -> None:
    program = f"{FIRST}\n{SECOND}\n"
    if mode == "command":
        result = run(["-c", program], cwd=shop)
    elif mode == "script":
        script = tmp_path / "job.py"
        script.write_text(program)
        result = run([str(script)], cwd=shop)
    elif mode == "stdin":
        result = run([], cwd=shop, input=program)
    else:
        result = run(
            ["--json", "-c", "import asyncio\nawait asyncio.sleep(0, result={'products': count(Product)})"], cwd=shop
        )
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == '{"products": 8}'
        return
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "same loop True 8"


def test_an_error_inside_awaited_code_is_the_users_traceback(shop: Path) -> None:
    result = run(["-c", "import asyncio\nasync def boom():\n    raise ValueError('inside')\nawait boom()"], cwd=shop)
    assert result.exit_code == 1
    assert "ValueError: inside" in result.stderr and 'File "<string>", line 4' in result.stderr


def test_asyncio_run_inside_a_running_loop_is_asyncios_own_error_with_no_hint(shop: Path) -> None:
    """The hint says the coroutine ran on the session's loop: where asyncio refuses to run it, no hint."""
    program = (
        "import asyncio\n"
        "async def inner():\n    return 1\n"
        "async def outer():\n    c = inner()\n    try:\n        return asyncio.run(c)\n"
        # closed: no warning later
        "    finally:\n        c.close()\n"
        "await outer()\n"
    )
    result = run(["-c", program], cwd=shop)
    assert result.exit_code == 1, result.output
    assert "asyncio.run() cannot be called from a running event loop" in result.stderr, result.output
    assert "appshell: hint" not in result.stderr, result.output
