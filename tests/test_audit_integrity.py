"""The audit file's integrity (issue 9 items 6–7): whole records on a full disk, torn tails, undecodable input."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.ci import IN_CI
from support.environment import clean_environ
from support.harness import run
from support.paths import APPSHELL

from appshell.audit.auditor import Auditor
from appshell.config.redact import Redactor
from appshell.errors import AuditFailure
from appshell.record.journal import Journal

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


# -- what a failed record says ----------------------------------------------------


class FailingSink:
    """A sink whose every append fails, as a full disk would."""

    name = "file"
    path = Path("/full/audit.jsonl")

    def __init__(self, fail_on: str) -> None:
        self.fail_on = fail_on

    def append(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["event"] == self.fail_on:
            raise OSError(errno.ENOSPC, "No space left on device")
        return body

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("event", "says"),
    [
        ("session_start", "the session was not started"),
        ("statement", "the statement was not run"),
        ("result", "it ran; its outcome could not be recorded"),
        ("session_end", "it ran; its outcome could not be recorded"),
    ],
)
def test_a_failed_record_says_exactly_what_happened(event: str, says: str) -> None:
    auditor = Auditor([FailingSink(event)], required=True, redact=Redactor())  # type: ignore[list-item]
    journal = Journal([auditor])
    ran = []
    with pytest.raises(AuditFailure) as failure:
        auditor.start({"mode": "command"})
        with journal.statement("refund(42)"):
            ran.append(True)
        auditor.end("ok")
    message = failure.value.format()
    assert says in message and "No space left on device" in message and "/full/audit.jsonl" in message
    assert ("not run" in message) == (event == "statement")  # never "not run" for what ran
    assert bool(ran) == (event in ("result", "session_end"))


# -- a full disk: a real small filesystem -------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, mounted for this test (root only)."""
    where = tmp_path / "tiny"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root?'}): the full-disk test needs one"
        if IN_CI and os.geteuid() == 0:
            pytest.fail("CI as root must run the full-disk test: " + reason)
        print(reason)
        pytest.skip(reason)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(fs: Path, leave_pages: int) -> Path:
    """Fill *fs* to the last byte, then free *leave_pages* pages of 4 KiB."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"f" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, size - size % 4096 - 4096 * leave_pages)
    return filler


def prod_profile(shop: Path, log: Path) -> None:
    with (shop / "profiles" / "production.toml").open("a") as f:
        f.write(f'\n[audit]\npath = "{log}"\nrequired = true\n')


def stock(shop: Path) -> int:
    with sqlite3.connect(shop / "var" / "shop.db") as db:
        return int(db.execute("select stock from products where id = 2").fetchone()[0])


def test_full_disk_the_statement_record_fails_whole_and_the_statement_does_not_run(shop: Path, tiny_fs: Path) -> None:
    log = tiny_fs / "audit.jsonl"
    prod_profile(shop, log)
    before = stock(shop)
    # session_start holds argv, the code too (~8 KiB): 3 free pages hold it and a short record, not a second copy
    fill(tiny_fs, leave_pages=3)
    padding = "# " + "refund batch INC-77 " * 400  # ~8 KiB
    code = f"sql('update products set stock=6262 where id=2'); commit()\n{padding}\n"
    result = run(["--profile", "production", "--write", "--reason", "INC-77", "-c", code], cwd=shop)
    assert result.exit_code == 3, result.output
    assert "the statement was not run" in result.stderr and "No space left on device" in result.stderr
    assert stock(shop) == before  # it did not run
    data = log.read_bytes()
    assert data.endswith(b"\n") and all(json.loads(line) for line in data.splitlines())  # no torn bytes
    assert [r["event"] for r in records(log)] == ["session_start", "session_end"]
    assert run(["audit", "verify", "--log", str(log)], cwd=shop).exit_code == 0


def test_full_disk_the_result_record_fails_after_the_statement_ran(shop: Path, tiny_fs: Path) -> None:
    log = tiny_fs / "audit.jsonl"
    prod_profile(shop, log)
    fill(tiny_fs, leave_pages=8)  # room for what the statement records before it fills the disk itself
    # The statement commits, fills the disk, then fails with a long
    # message: its result record needs a page the disk no longer has.
    code = (
        "sql('update products set stock=6262 where id=2'); commit()\n"
        f"f = open({str(tiny_fs / 'filler2')!r}, 'wb', buffering=0)\n"
        "try:\n    while True: f.write(b'x' * 4096)\nexcept OSError: pass\n"
        "raise ValueError('refund failed after commit: ' + 'details ' * 1200)\n"
    )
    result = run(["--profile", "production", "--write", "--reason", "INC-78", "-c", code], cwd=shop)
    assert result.exit_code == 3, result.output
    assert "it ran; its outcome could not be recorded" in result.stderr
    assert "not run" not in result.stderr
    assert stock(shop) == 6262  # it did run: the message says so
    data = log.read_bytes()
    assert data.endswith(b"\n") and all(json.loads(line) for line in data.splitlines())
    assert [r["event"] for r in records(log)][:2] == ["session_start", "statement"]


# -- a torn tail left by a crash ------------------------------------------------------


def three_sessions(shop: Path, log: Path) -> None:
    for code in ("print(1)", "print(2)", "print(3)"):
        assert run(["--audit-log", str(log), "-c", code], cwd=shop).exit_code == 0


def test_a_torn_tail_is_acknowledged_by_the_next_record_and_named_by_verify(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    three_sessions(shop, log)
    torn = b'{"v":1,"seq":13,"ts":"2026-11'
    with log.open("ab") as f:
        f.write(torn)  # a write that a crash cut short
    offset = log.stat().st_size - len(torn)
    assert run(["--audit-log", str(log), "-c", "print(4)"], cwd=shop).exit_code == 0
    lines = lines_of(log)
    assert lines[12] == torn
    ack = json.loads(lines[13])
    assert ack["event"] == "session_start" and ack["seq"] == 13 and ack["prev"] == json.loads(lines[11])["hash"]
    assert ack["torn"] == {"offset": offset, "bytes": len(torn), "sha256": hashlib.sha256(torn).hexdigest()}
    result = run(["audit", "verify", "--log", str(log)], cwd=shop)
    assert result.exit_code == 0, result.output  # acknowledged: ok, with a warning that is never silent
    assert (
        f"audit.jsonl:13: torn write ({len(torn)} bytes): a crash cut this write; acknowledged by {log}:14"
        in result.stdout
    )
    assert "16 records, chain intact" in result.stdout


def test_an_unacknowledged_torn_tail_fails_verify(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    three_sessions(shop, log)
    with log.open("ab") as f:
        f.write(b'{"v":1,"seq":13')
    result = run(["audit", "verify", "--log", str(log)], cwd=shop)
    assert result.exit_code == 4
    assert "audit.jsonl:13: torn write at the end of the file (15 bytes, no end of line)" in result.stderr


def test_torn_bytes_changed_after_the_acknowledgement_fail_verify(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    three_sessions(shop, log)
    with log.open("ab") as f:
        f.write(b'{"v":1,"seq":13,"ts"')
    assert run(["--audit-log", str(log), "-c", "print(4)"], cwd=shop).exit_code == 0
    log.write_bytes(log.read_bytes().replace(b'{"v":1,"seq":13,"ts"', b'{"v":1,"seq":13,"TS"'))
    result = run(["audit", "verify", "--log", str(log)], cwd=shop)
    assert result.exit_code == 4 and "audit.jsonl:13: damaged bytes that differ from the torn write" in result.stderr


def test_a_claimed_torn_write_whose_bytes_were_removed_fails_verify(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    three_sessions(shop, log)
    with log.open("ab") as f:
        f.write(b'{"v":1,"seq":13,"ts"')
    assert run(["--audit-log", str(log), "-c", "print(4)"], cwd=shop).exit_code == 0
    log.write_bytes(log.read_bytes().replace(b'{"v":1,"seq":13,"ts"\n', b""))
    result = run(["audit", "verify", "--log", str(log)], cwd=shop)
    assert (
        result.exit_code == 4
        and "audit.jsonl:13: the record acknowledges a torn write of 20 bytes that is not in the file" in result.stderr
    )


# -- input that is not UTF-8 ------------------------------------------------------------


def run_bytes(
    args: list[bytes], cwd: Path, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [APPSHELL.encode(), *args], cwd=cwd, env=clean_environ(env), input=stdin, capture_output=True, timeout=120
    )


@pytest.mark.parametrize("profile", ["staging", "development"])
def test_undecodable_argv_is_recorded_losslessly_and_blames_no_sink(shop: Path, tmp_path: Path, profile: str) -> None:
    log = tmp_path / "audit.jsonl"
    code = b"name = 'caf\xe9 \\\\ done'; print(len(name))"  # Latin-1 bytes, as a non-UTF-8 terminal sends them
    args = [b"--profile", profile.encode(), b"--audit-log", str(log).encode(), b"--reason", b"INC-9 \xff", b"-c", code]
    result = run_bytes(args, shop)
    # Python cannot compile such a program (exit 1, its own error); what matters is the record of it.
    assert result.returncode == 1 and b"UnicodeEncodeError" in result.stderr
    assert b"sink" not in result.stderr  # no sink was blamed, none dropped
    recs = records(log)
    assert [r["event"] for r in recs] == ["session_start", "statement", "result", "session_end"]  # the sink stayed
    stmt = recs[1]
    assert stmt["source"] == "name = 'caf\\xe9 \\\\\\\\ done'; print(len(name))" and stmt["undecodable"] == ["source"]
    # lossless: the escapes decode back to the exact bytes
    raw = stmt["source"].encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1")
    assert raw == code
    assert "reason" in recs[0]["undecodable"] and recs[0]["reason"] == "INC-9 \\xff"
    assert run(["audit", "verify", "--log", str(log)], cwd=shop).exit_code == 0


def test_undecodable_stdin_is_recorded_losslessly(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    program = b"x = '\xff\xfe'\nprint(len(x))\n"
    result = run_bytes(
        [b"--profile", b"staging", b"--audit-log", str(log).encode(), b"-"], shop, stdin=program, env={"LC_ALL": "C"}
    )
    assert result.returncode == 1 and b"sink" not in result.stderr, result.stderr  # Python's own error, not the audit's
    assert [r["event"] for r in records(log)] == ["session_start", "statement", "result", "session_end"]
    stmt = records(log)[1]
    assert stmt["source"] == "x = '\\xff\\xfe'\nprint(len(x))\n" and stmt["undecodable"] == ["source"]
