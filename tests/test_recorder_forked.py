"""record_forked: the session forked before the record is opened,
the record kept by the recorder (issue 22 items 1, 2, 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pexpect
import pytest

DRIVER = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    from appshell.audit.auditor import Auditor
    from appshell.audit.sinks import FileSink
    from appshell.config.redact import Redactor
    from appshell.recorder.forked import record_forked

    log, behaviour, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

    def open_writer():
        if behaviour == "sink-fails":
            raise OSError("the disk is gone")
        return Auditor([FileSink(log)], required=True, redact=Redactor())

    def main(channel):
        marker.write_text(json.dumps({"pid": os.getpid(),
                                      "fds": sorted(os.readlink(f"/proc/self/fd/{fd}") \
for fd in os.listdir("/proc/self/fd")
                                                    if os.path.exists(f"/proc/self/fd/{fd}")),
                                      "url": os.environ.get("APPSHELL_AUDIT_URL")}))
        if behaviour == "die-early":
            os._exit(9)
        channel.request("session_start", {"app": "demo"})
        channel.request("statement", {"n": 1, "source": "print(1)", "kind": "code"})
        if behaviour == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if behaviour == "terminal":
            print("typed:", input("> "), flush=True)
        channel.request("result", {"n": 1, "status": "ok", "error": None, "duration_ms": 1.0, "sql": []})
        channel.request("session_end", {"status": "ok"})
        return 5

    sys.exit(record_forked(main, open_writer, {"mode": "command", "argv": ["-c", "print(1)"]},
                           terminal=behaviour == "terminal", record_output=True))
""")


def _run(tmp_path: Path, behaviour: str) -> tuple[subprocess.CompletedProcess[str], list[dict], Path]:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    log, marker = tmp_path / "audit.jsonl", tmp_path / "marker.json"
    env = {**os.environ, "APPSHELL_AUDIT_URL": "postgresql://audit:secret@localhost/audit"}
    done = subprocess.run(
        [sys.executable, str(driver), str(log), behaviour, str(marker)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, records, marker


def test_the_record_is_opened_after_the_fork_and_ended_by_the_recorder(tmp_path: Path) -> None:
    done, records, marker = _run(tmp_path, "ok")
    assert done.returncode == 5, done.stderr
    assert [(r["event"], r["by"]) for r in records] == [
        ("session_start", "recorder"),
        ("statement", "session"),
        ("result", "session"),
        ("session_end", "recorder"),
    ]
    start = records[0]
    assert start["app"] == "demo" and start["session_reported"] == ["app"] and start["mode"] == "command"
    assert records[-1]["exit_code"] == 5 and records[-1]["reported"] == {"status": "ok"}
    seen = json.loads(marker.read_text())
    assert not any(str(tmp_path / "audit.jsonl") in fd or "audit.seal" in fd for fd in seen["fds"]), seen["fds"]
    assert seen["url"] is None  # the sinks' credentials are not in the session's environment


def test_a_session_killed_mid_statement_is_ended_by_the_recorder(tmp_path: Path) -> None:
    done, records, _ = _run(tmp_path, "kill")
    assert done.returncode == 128 + 9
    assert [r["event"] for r in records] == ["session_start", "statement", "session_end"]
    assert records[-1]["status"] == "killed" and records[-1]["signal"] == "SIGKILL" and records[-1]["by"] == "recorder"


def test_a_record_that_cannot_be_opened_runs_nothing(tmp_path: Path) -> None:
    done, records, marker = _run(tmp_path, "sink-fails")
    assert done.returncode != 0 and "the disk is gone" in done.stderr
    assert not marker.exists() and records == []


def test_at_a_terminal_what_is_typed_is_recorded(tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    log, marker = tmp_path / "audit.jsonl", tmp_path / "marker.json"
    child = pexpect.spawn(
        sys.executable, [str(driver), str(log), "terminal", str(marker)], encoding="utf-8", timeout=30
    )
    child.expect("> ")
    child.sendline("hello recorder")
    child.expect("typed: hello recorder")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5
    records = [json.loads(line) for line in log.read_text().splitlines()]
    typed = "".join(r["data"] for r in records if r["event"] == "io" and r["stream"] == "i")
    shown = "".join(r["data"] for r in records if r["event"] == "io" and r["stream"] == "o")
    assert "hello recorder" in typed and "typed: hello recorder" in shown
    start = records[0]
    assert start["event"] == "session_start" and start["terminal"] == {"relay": True, "output_recorded": True}
    assert records[-1]["event"] == "session_end" and records[-1]["exit_code"] == 5


def test_a_session_that_dies_before_reporting_its_start_still_has_start_and_end(tmp_path: Path) -> None:
    done, records, _ = _run(tmp_path, "die-early")
    assert done.returncode == 9
    assert [(r["event"], r["by"]) for r in records] == [("session_start", "recorder"), ("session_end", "recorder")]
    assert records[0]["session_reported"] is None and records[0]["mode"] == "command"
    assert records[1]["exit_code"] == 9 and records[1]["reported"] is None


def _sleeping(shop: Path, *args: str) -> subprocess.Popen[bytes]:
    """The console script running `-c` that says go and sleeps a minute, once it has said go."""
    from support.environment import clean_environ
    from support.paths import APPSHELL

    proc = subprocess.Popen(
        [APPSHELL, *args, "-c", "print('go', flush=True); import time; time.sleep(60)"],
        cwd=shop,
        env=clean_environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
    return proc


def test_a_session_whose_recorder_is_killed_ends_too(shop: Path) -> None:
    """SIGKILL of the recorder (it cannot be caught) ends the session with SIGTERM, as a terminal's hang-up
    would (PR_SET_PDEATHSIG): left alone it would go on unrecorded, holding its transaction."""
    import time

    proc = _sleeping(shop)
    try:
        session = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        proc.kill()
        proc.wait(timeout=10)
        for _ in range(100):
            if not Path(f"/proc/{session}").exists() or "Z" in Path(f"/proc/{session}/stat").read_text().split()[2]:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the session outlived its recorder")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_the_record_says_which_signal_to_the_recorder_ended_the_session(shop: Path, signum: signal.Signals) -> None:
    proc = _sleeping(shop, "--audit-log", str(shop / "audit.jsonl"))
    proc.send_signal(signum)
    assert proc.wait(timeout=20) == 128 + signum
    end = json.loads((shop / "audit.jsonl").read_text().splitlines()[-1])
    assert (end["event"], end["by"], end["status"], end["stopped_by"]) == (
        "session_end",
        "recorder",
        "terminated",
        signum.name,
    ), end
