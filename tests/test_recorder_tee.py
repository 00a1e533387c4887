"""audit.record_output for program sessions (issue 22 item 3): -c's stdout and stderr pass through the recorder,
unchanged for the operator, and are kept as "o" events — through a pipe, or a pty where the stream is a terminal.

The real console script in a real process (and under pexpect for a terminal): only the recorder process shows it.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pexpect
import pytest
from support.audit import audit_records
from support.environment import clean_environ
from support.paths import APPSHELL

pytestmark = pytest.mark.subprocess

PROGRAM = (
    "import sys, os; print('to stdout', os.isatty(1)); print('to stderr', file=sys.stderr); "
    "print(count(Product)); print('x' * 300)"
)


def _with_output(shop: Path, cap: int | None = None) -> Path:
    profile = shop / "profiles" / "recorded.toml"
    profile.write_text(
        'description = "records output"\n[audit]\nrecord_output = true\n' + (f"output_cap = {cap}\n" if cap else "")
    )
    return shop / ".appshell" / "audit.jsonl"


def _appshell(shop: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real console script, its output captured (pipes: not a terminal)."""
    env = {**clean_environ(), "COLUMNS": "200"}
    return subprocess.run([APPSHELL, *args], cwd=shop, env=env, capture_output=True, text=True, timeout=60)


def _session(log: Path) -> list[dict]:  # type: ignore[type-arg]
    records = audit_records(log)
    last = records[-1]["session"]
    return [r for r in records if r.get("session") == last]


def test_a_commands_output_is_passed_on_and_recorded(shop: Path) -> None:
    log = _with_output(shop)
    done = _appshell(shop, "--profile", "recorded", "-c", PROGRAM)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"to stdout False\n8\n{'x' * 300}\n"  # what the operator gets is unchanged
    assert "to stderr\n" in done.stderr
    recs = _session(log)
    assert recs[0]["output"] == {"recorded": True, "stdout": "pipe", "stderr": "pipe"}
    shown = "".join(r["data"] for r in recs if r["event"] == "io" and r["stream"] == "o")
    assert "to stdout False\n" in shown and "to stderr\n" in shown and "x" * 300 in shown
    assert all(r["by"] == "recorder" for r in recs if r["event"] == "io")
    replay = _appshell(shop, "audit", "replay", recs[0]["session"], "--log", str(log), "--speed", "100")
    assert replay.returncode == 0 and replay.stdout == shown, replay.stderr
    show = _appshell(shop, "audit", "show", recs[0]["session"], "--log", str(log))
    assert "── output: the program's stdout and stderr, as the recorder passed them on" in show.stdout
    assert "terminal: what was typed" not in show.stdout


def test_the_cap_keeps_the_first_bytes_and_says_so(shop: Path) -> None:
    log = _with_output(shop, cap=100)
    done = _appshell(shop, "--profile", "recorded", "-c", PROGRAM)
    assert done.returncode == 0 and "x" * 300 in done.stdout, done.stderr  # the operator still sees everything
    recs = _session(log)
    kept = sum(len(r["data"].encode()) for r in recs if r["event"] == "io" and r["stream"] == "o")
    assert kept == 100
    assert [r["data"] for r in recs if r["event"] == "io" and r["stream"] == "m"] == [
        "output cap reached after 100 bytes"
    ]


def test_at_a_terminal_the_program_still_writes_to_a_terminal(shop: Path) -> None:
    log = _with_output(shop)
    child = pexpect.spawn(
        APPSHELL,
        ["--profile", "recorded", "-c", PROGRAM],
        cwd=str(shop),
        env=clean_environ(),
        encoding="utf-8",
        timeout=60,
        dimensions=(30, 150),
    )
    child.expect("to stdout True")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    recs = _session(log)
    # At a terminal a program goes through the relay, as a shell does: /dev/tty is the recorder's pty too.
    assert recs[0]["terminal"] == {"relay": True, "output_recorded": True} and "output" not in recs[0]
    shown = "".join(r["data"] for r in recs if r["event"] == "io" and r["stream"] == "o")
    assert "to stdout True\r\n" in shown  # as a terminal shows it


def test_a_reader_that_goes_away_ends_the_programs_writes(shop: Path) -> None:
    """`appshell -c … | head -1`: the program's next write fails as without the recorder (no hang)."""
    log = _with_output(shop)
    loop = "import sys\nfor i in range(10**7):\n    print(i)\n"
    done = subprocess.run(
        ["bash", "-c", f"{APPSHELL} --profile recorded -c {shlex.quote(loop)} | head -1"],
        cwd=shop,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout == "0\n"
    end = _session(log)[-1]
    assert end["event"] == "session_end" and end["status"] != "ok", end
