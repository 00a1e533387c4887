"""What runs before the session (issue 22 item 10, attack 6).

Python runs code before appshell's first line: a ``sitecustomize.py`` on
PYTHONPATH, the user site, ``.pth`` files, modules PYTHONWARNINGS names. Such
code can rewrite the record of every statement that follows. session_start
records what could have done it; a profile that locks the audit re-executes
the session in an isolated interpreter (``python -I``), where none of it runs.
Real processes: only the interpreter's own start-up runs a sitecustomize.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import textwrap
from pathlib import Path

import pytest
from support.audit import audit_records
from support.harness import run
from support.paths import APPSHELL

pytestmark = pytest.mark.subprocess

PRODUCTION = ["--profile", "production", "--reason", "INC-6 before the session"]
# Attack 6: a sitecustomize that makes every statement's record read as a harmless one.
REWRITER = textwrap.dedent("""
    from appshell.record.journal import Journal

    _begin = Journal.begin

    def begin(self, source, kind="code", **extra):
        return _begin(self, "print(count(Product))", kind, **extra)

    Journal.begin = begin
""")
UPDATE = "sql('update products set stock = 0 where id = 1'); commit()"


def stock(shop: Path, product: int) -> int:
    with sqlite3.connect(shop / "var" / "shop.db") as conn:
        return int(conn.execute("select stock from products where id = ?", (product,)).fetchone()[0])


@pytest.fixture
def rewriter(tmp_path: Path) -> Path:
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(REWRITER)
    return folder


def session_of(log: Path) -> tuple[dict, list[dict]]:  # type: ignore[type-arg]
    records = audit_records(log)
    start = next(r for r in records if r["event"] == "session_start")
    return start, [r for r in records if r["event"] == "statement"]


def test_a_sitecustomize_cannot_rewrite_the_record_of_a_locked_session(shop: Path, rewriter: Path) -> None:
    """Attack 6: PYTHONPATH=/x with a sitecustomize wrapping Journal.begin recorded `print(count(Product))`
    while an UPDATE ran. Under the locked production profile the session runs isolated: the UPDATE is recorded."""
    result = run([*PRODUCTION, "--write", "-c", UPDATE], cwd=shop, env={"PYTHONPATH": str(rewriter)})
    assert result.exit_code == 0, result.output
    assert stock(shop, 1) == 0  # it ran
    start, statements = session_of(shop / ".appshell" / "audit.jsonl")
    assert [s["source"] for s in statements] == [UPDATE]
    assert start["python_flags"]["isolated"] == 1
    assert start["python_env"]["PYTHONPATH"] == str(rewriter)
    neutralised = " | ".join(start["isolated"]["neutralised"])
    assert (
        "PYTHONPATH is set" in neutralised
        and f"sitecustomize was imported from {rewriter / 'sitecustomize.py'}" in neutralised
    )
    # Nothing from PYTHONPATH ran in the session (what the venv's own .pth files import still may: see docs/audit.md).
    assert start["preloaded"]["outside"] == []


def test_what_ran_before_an_unlocked_session_is_recorded(shop: Path, rewriter: Path, tmp_path: Path) -> None:
    """Unlocked (development), the sitecustomize runs — and session_start names it, with its sha256,
    beside the PYTHON* variables (secret-named ones masked), sys.path, the flags and the interpreter."""
    log = tmp_path / "audit.jsonl"
    env = {"PYTHONPATH": str(rewriter), "PYTHON_KEYRING_TOKEN": "s3cr3t-value-123"}
    result = run(["--audit-log", str(log), "-c", UPDATE], cwd=shop, env=env)
    assert result.exit_code == 0, result.output
    start, statements = session_of(log)
    assert [s["source"] for s in statements] == ["print(count(Product))"]  # not prevented here: detected
    custom = start["preloaded"]["outside"][0]
    assert custom["name"] == "sitecustomize"
    assert custom["path"] == str(rewriter / "sitecustomize.py")
    assert custom["sha256"] == hashlib.sha256(REWRITER.encode()).hexdigest()
    assert start["python_env"]["PYTHONPATH"] == str(rewriter)
    assert start["python_env"]["PYTHON_KEYRING_TOKEN"] == "***"
    assert "s3cr3t-value-123" not in log.read_text()
    assert str(rewriter) in start["sys_path"]
    assert start["python_flags"]["isolated"] == 0 and "isolated" not in start
    interpreter = start["interpreter"]
    assert interpreter["path"] == str(Path(APPSHELL).with_name("python"))  # the console script's interpreter
    real = os.path.realpath(interpreter["path"])
    assert interpreter["sha256"] == hashlib.sha256(Path(real).read_bytes()).hexdigest()


def test_the_isolated_session_keeps_the_program_on_stdin_and_the_modules_on_pythonpath(
    shop: Path, rewriter: Path
) -> None:
    """The re-executed session reads the same program from stdin; PYTHONPATH's folders still import, from the
    end of sys.path (nothing on them runs at start-up or shadows an installed module)."""
    (rewriter / "opshelpers.py").write_text("ANSWER = 42\n")
    program = (
        "import sys, opshelpers\nprint(opshelpers.ANSWER, sys.flags.isolated, sys.path[-1])\nprint(count(Product))\n"
    )
    result = run(PRODUCTION, cwd=shop, env={"PYTHONPATH": str(rewriter)}, input=program)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"42 1 {rewriter}", "8"]
    _, statements = session_of(shop / ".appshell" / "audit.jsonl")
    assert statements[0]["source"] == program


def test_a_locked_session_with_nothing_to_neutralise_is_not_reexecuted(shop: Path) -> None:
    result = run([*PRODUCTION, "-c", "import sys; print(sys.flags.isolated)"], cwd=shop)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "0"
    start, _ = session_of(shop / ".appshell" / "audit.jsonl")
    assert "isolated" not in start and start["python_flags"]["isolated"] == 0


def test_only_variables_that_change_what_runs_count() -> None:
    from appshell.runtime.reexec import influences

    assert (
        influences(
            {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8", "HOME": "/root"}
        )
        == []
    )
    assert influences({"PYTHONWARNINGS": "ignore::mod.Warning", "PYTHONPYCACHEPREFIX": "/tmp/b"}) == [
        "PYTHONPYCACHEPREFIX is set",
        "PYTHONWARNINGS is set",
    ]
