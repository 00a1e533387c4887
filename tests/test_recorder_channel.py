"""The recorder and its channel, with real processes: a recorder process holding a real Auditor on a
sealed file sink, and small real session scripts speaking the protocol with appshell's client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from appshell.audit.seal import init_state
from appshell.audit.verify import verify_files
from appshell.errors import AuditFailure
from appshell.recorder.channel import HEADER, Channel, encode
from appshell.recorder.server import Frames, Oversize, Recorder
from appshell.recorder.spawn import scrubbed_env

# The recorder process of the tests: a real Auditor on a FileSink, run_recorded, exit code as appshell's.
DRIVER = """
import json, os, sys
from pathlib import Path
from appshell.audit.auditor import Auditor
from appshell.audit.sinks import FileSink
try:
    from appshell.config.redact import Redactor
except ImportError:  # before the move of issue 23
    from appshell.redact import Redactor
from appshell.errors import AppshellError
sys.path.insert(0, {tests!r})
from support.recorder import run_recorded

log, child, opts = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
auditor = Auditor([FileSink(log)], required=True, redact=Redactor())
if opts.get("unlink_before_start"):
    log.unlink()
try:
    code = run_recorded([sys.executable, child, str(log)], os.environ, auditor, {"argv": [child], "mode": "script"},
                        grace=opts.get("grace", 2.0), hardened=opts.get("hardened", True),
                        max_message=opts.get("max_message", 4 * 1024 * 1024))
except AppshellError as exc:
    print(exc.format(), file=sys.stderr)
    sys.exit(exc.exit_code)
sys.exit(code)
"""

# What every session script starts with: the channel from the environment, and `report`, which prints
# what became of each request (the test reads the session's stdout).
HEAD = """
import os, signal, socket, struct, sys, time
from appshell.errors import AuditFailure
sys.path.insert(0, {tests!r})
from support.recorder import channel_from_env
ch = channel_from_env()
LOG = sys.argv[1]

def report(kind_, **fields):
    try:
        ch.request(kind_, fields)
    except AuditFailure as exc:
        print("refused", kind_, exc.what, flush=True)
        return False
    print("ok", kind_, flush=True)
    return True

def raw(body):
    # A frame the client would never send, straight onto the socket; the recorder's answer.
    ch.sock.sendall(struct.pack(">I", len(body)) + body)
    reply = ch._read_reply()
    print("raw", "ok" if reply.get("ok") else "refused", reply.get("what"), flush=True)
"""


def records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def start_recorder(tmp: Path, body: str, **opts: Any) -> tuple[subprocess.Popen[str], Path]:
    log = tmp / "audit.jsonl"
    if not log.exists() and not opts.pop("unsealed", False):
        init_state(log)
    tests = str(Path(__file__).resolve().parent)
    (tmp / "driver.py").write_text(DRIVER.replace("{tests!r}", repr(tests)))
    (tmp / "child.py").write_text(HEAD.replace("{tests!r}", repr(tests)) + textwrap.dedent(body))
    env = {**os.environ, "APPSHELL_AUDIT_LOG": str(log), "APPSHELL_AUDIT_URL": "postgresql://audit:s3cret@db/audit"}
    prefix, python = opts.pop("prefix", []), opts.pop("python", sys.executable)
    # A session of its own: no controlling terminal, as under a service manager or ssh without a tty.
    proc = subprocess.Popen(
        [*prefix, python, str(tmp / "driver.py"), str(log), str(tmp / "child.py"), json.dumps(opts)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return proc, log


def record_session(tmp: Path, body: str, **opts: Any) -> tuple[int, str, str, Path]:
    proc, log = start_recorder(tmp, body, **opts)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err, log


def the_end(recs: list[dict[str, Any]]) -> dict[str, Any]:
    ends = [r for r in recs if r["event"] == "session_end"]
    assert len(ends) == 1 and recs[-1] is ends[0], "one session_end, the last record"
    assert ends[0]["by"] == "recorder"
    return ends[0]


# -- a well-behaved session ----------------------------------------------------------------------------


def test_a_session_is_sealed_in_order_and_acknowledged(tmp_path: Path) -> None:
    code, out, err, log = record_session(
        tmp_path,
        """
        print("env", sorted(k for k in os.environ if k.startswith("APPSHELL_")), flush=True)
        report("session_start", app="shop", database="sqlite://")
        report("statement", n=1, source="count(Product)", kind="code")
        report("nested", n=2, source="select 1", kind="sql", parent=1)
        report("result", n=1, status="ok", error=None, duration_ms=1.5, sql=["select 1"])
        report("session_end", status="ok")
    """,
    )
    assert code == 0, err
    # The sinks' configuration and credentials stay with the recorder; the channel's number is taken out at once.
    assert "env []" in out
    assert out.count("ok ") == 5
    recs = records(log)
    assert [(r["event"], r["by"]) for r in recs] == [
        ("session_start", "recorder"),
        ("session_info", "session"),
        ("statement", "session"),
        ("statement", "session"),
        ("result", "session"),
        ("session_end", "recorder"),
    ]
    assert len({r["session"] for r in recs}) == 1
    assert recs[0]["argv"] and recs[0]["mode"] == "script"
    assert [r.get("n") for r in recs[2:5]] == [1, 2, 1] and recs[3]["parent"] == 1
    end = the_end(recs)
    assert (end["status"], end["exit_code"], end["signal"], end["reported"]) == ("ok", 0, None, {"status": "ok"})
    assert (end["statements"], end["refused"]) == (2, 0)
    assert all("mac" in r for r in recs)  # sealed with the forward-secure key
    report = verify_files(log)
    assert report.ok, report.summary


def test_the_channel_client_imports_nothing_heavy() -> None:
    code = (
        "import sys, appshell.recorder.channel, appshell.recorder.spawn; "
        "heavy = [m for m in ('sqlalchemy', 'IPython', 'ptpython', 'appshell.audit.auditor') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- what the recorder refuses ------------------------------------------------------------------------


def test_reports_out_of_order_or_forged_are_recorded_as_refused_never_sealed_as_real(tmp_path: Path) -> None:
    code, out, err, log = record_session(
        tmp_path,
        """
        report("statement", n=1, source="before the start")
        report("session_start", app="shop")
        report("session_start", app="again")
        report("result", n=5, status="ok")
        report("statement", n=1, source="one")
        report("statement", n=1, source="one again")
        report("nested", n=2, source="x", parent=99)
        report("result", n=1, status="ok")
        report("result", n=1, status="error")
        report("statement", n=3, source="forged", hash="0" * 64)
        report("statement", n=3, source="forged", session="someone-else")
        report("statement", n=3, source="forged", by="recorder", seq=1)
        report("statement", n=3, source="x" * 2000)
        raw(b"{not json")
        raw(b'{"kind": "sql", "fields": {}}')
        raw(b'{"kind": "statement", "fields": {"n": 3, "source": "deep", "x": ' + b"[" * 100 + b"]" * 100 + b"}}")
        report("statement", n=3, source="after all that, in frame")
        report("session_end", status="ok")
        report("statement", n=4, source="after the end")
    """,
        max_message=1024,
    )
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "refused",
        "ok",
        "refused",
        "refused",
        "ok",
        "refused",
        "refused",
        "ok",
        "refused",
        "refused",
        "refused",
        "refused",
        "refused",
        "raw",
        "raw",
        "raw",
        "ok",
        "ok",
        "refused",
    ]
    assert all(line.startswith("raw refused") for line in lines if line.startswith("raw"))
    assert "the statement was not run" in lines[0] and "it ran; its outcome could not be recorded" in lines[3]
    recs = records(log)
    refused = [r for r in recs if r["event"] == "refused_report"]
    assert len(refused) == 14 and all(r["by"] == "recorder" for r in refused)
    reasons = [r["reason"] for r in refused]
    assert "before the session reported its start" in reasons[0]
    assert "reported its start already" in reasons[1]
    assert "no statement recorded" in reasons[2]
    assert "not greater than the last one recorded (1)" in reasons[3]
    assert "parent (99)" in reasons[4]
    assert "recorded already" in reasons[5]
    assert "hash" in reasons[6] and "session" in reasons[7] and "by, seq" in reasons[8]
    assert (
        "over the recorder's cap of 1024" in reasons[9]
        and refused[9]["bytes"] > 2000
        and len(refused[9]["sha256"]) == 64
    )
    assert "not JSON" in reasons[10] and refused[10]["preview"] == "{not json"
    assert "'sql' is not one of" in reasons[11]
    assert "nest more than" in reasons[12] and "report" not in refused[12]
    assert "after the session reported its end" in reasons[13]
    # A refused report is kept as it was sent, inside the refusal: its forged fields never become the record's.
    assert (
        refused[6]["report"]["fields"]["hash"] == "0" * 64
        and refused[7]["report"]["fields"]["session"] == "someone-else"
    )
    session = recs[0]["session"]
    assert all(r["session"] == session for r in recs)
    sealed = [(r["n"], r["source"]) for r in recs if r["event"] == "statement"]
    assert sealed == [(1, "one"), (3, "after all that, in frame")]
    assert [r["status"] for r in recs if r["event"] == "result"] == ["ok"]
    end = the_end(recs)
    assert (end["refused"], end["statements"]) == (14, 2)
    assert verify_files(log).ok


# -- how a session ends -------------------------------------------------------------------------------


def test_a_child_that_exits_mid_session_is_ended_by_the_recorder(tmp_path: Path) -> None:
    code, out, err, log = record_session(
        tmp_path,
        """
        report("session_start")
        report("statement", n=1, source="os._exit(7)")
        os._exit(7)
    """,
    )
    assert code == 7, err
    recs = records(log)
    assert [r["event"] for r in recs] == ["session_start", "session_info", "statement", "session_end"]
    end = the_end(recs)
    assert (end["status"], end["exit_code"], end["signal"], end["reported"]) == ("error", 7, None, None)
    assert verify_files(log).ok


def test_a_child_killed_keeps_everything_acknowledged_before_the_kill(tmp_path: Path) -> None:
    code, out, err, log = record_session(
        tmp_path,
        """
        report("session_start")
        for n in range(1, 6):
            report("statement", n=n, source=f"statement {n}")
            report("result", n=n, status="ok")
        os.kill(os.getpid(), signal.SIGKILL)
    """,
    )
    assert code == 128 + signal.SIGKILL, err
    recs = records(log)
    assert [r["n"] for r in recs if r["event"] == "statement"] == [1, 2, 3, 4, 5]
    end = the_end(recs)
    assert (end["status"], end["exit_code"], end["signal"]) == ("killed", None, "SIGKILL")
    assert verify_files(log).ok


def test_a_child_that_never_reports_still_has_a_start_and_an_end(tmp_path: Path) -> None:
    code, out, err, log = record_session(tmp_path, "sys.exit(0)\n")
    assert code == 0, err
    recs = records(log)
    # It exited 0 without its end report: said, since what it ran after its last report is unknown.
    assert [(r["event"], r["by"]) for r in recs] == [
        ("session_start", "recorder"),
        ("channel_closed", "recorder"),
        ("session_end", "recorder"),
    ]
    assert recs[0]["mode"] == "script" and recs[2]["reported"] is None


def test_a_child_that_closes_its_channel_and_runs_on_fails_closed(tmp_path: Path) -> None:
    code, out, err, log = record_session(
        tmp_path,
        """
        report("session_start")
        report("statement", n=1, source="before")
        os.close(ch.sock.detach())  # as the operator's code could: the descriptor itself
        time.sleep(0.6)
        report("statement", n=2, source="after")
        sys.exit(4)
    """,
    )
    assert code == 4, err
    assert out.splitlines()[-1].startswith("refused statement") and "the statement was not run" in out
    recs = records(log)
    assert [r["event"] for r in recs] == ["session_start", "session_info", "statement", "channel_closed", "session_end"]
    assert recs[3]["by"] == "recorder" and "went on running" in recs[3]["reason"]
    assert the_end(recs)["exit_code"] == 4


def test_a_session_whose_recorder_is_gone_fails_closed(tmp_path: Path) -> None:
    proc, log = start_recorder(
        tmp_path,
        """
        report("session_start")
        print("ready", flush=True)
        os.kill(os.getppid(), signal.SIGKILL)  # the recorder, gone without a word
        time.sleep(0.3)
        report("statement", n=1, source="update products set stock = 0")
    """,
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert "ready" in out  # communicate read until the orphaned child, which holds the pipe too, exited
    assert "refused statement the recorder process is gone (its channel is closed); the statement was not run" in out
    assert not [r for r in records(log) if r["event"] == "statement"]


def test_a_failing_sink_refuses_the_statement_when_the_audit_is_required(tmp_path: Path) -> None:
    code, out, err, log = record_session(
        tmp_path,
        """
        report("session_start")
        report("statement", n=1, source="fine")
        os.rename(LOG, LOG + ".moved")  # the file sink finds its file gone at the next record
        if not report("statement", n=2, source="update products set stock = 0"):
            sys.exit(3)
    """,
    )
    assert out.splitlines()[-1].startswith("refused statement the audit file sink")
    assert "the statement was not run" in out.splitlines()[-1]
    assert code == 3 and "appshell: error:" in err  # nor can the session_end be written: the recorder says so
    recs = records(Path(str(log) + ".moved"))
    assert [r["event"] for r in recs] == ["session_start", "session_info", "statement"]


def test_a_session_start_that_cannot_be_sealed_starts_no_child(tmp_path: Path) -> None:
    code, out, err, log = record_session(
        tmp_path,
        """
        open(LOG + ".child-ran", "w").close()
    """,
        unlink_before_start=True,
        unsealed=True,
    )
    assert code == 3 and "appshell: error: the audit file sink" in err and "the session was not started" in err
    assert not Path(str(log) + ".child-ran").exists()


@pytest.mark.parametrize("ignores", [False, True], ids=["child-ends", "child-ignores-sigterm"])
def test_sigterm_to_the_recorder_ends_the_session_without_hanging(tmp_path: Path, ignores: bool) -> None:
    proc, log = start_recorder(
        tmp_path,
        f"""
        report("session_start")
        if {ignores}:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """,
        grace=0.5,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ok session_start"
    assert proc.stdout.readline().strip() == "ready"
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=5)
    assert time.monotonic() - began < 2.0
    expected = signal.SIGKILL if ignores else signal.SIGTERM
    assert proc.returncode == 128 + expected
    end = the_end(records(log))
    assert (end["status"], end["signal"]) == ("killed", expected.name)
    assert verify_files(log).ok


def test_sigint_to_a_recorder_without_a_terminal_reaches_the_session(tmp_path: Path) -> None:
    # At a terminal the tty sends ^C to the child itself; sent to the recorder alone, it is passed on.
    proc, log = start_recorder(
        tmp_path,
        """
        def interrupted(signum, frame):
            report("session_end", status="interrupted")
            sys.exit(130)
        signal.signal(signal.SIGINT, interrupted)
        report("session_start")
        print("ready", flush=True)
        time.sleep(60)
    """,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ok session_start"
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    assert proc.returncode == 130
    end = the_end(records(log))
    assert (end["status"], end["exit_code"], end["reported"]) == ("interrupted", 130, {"status": "interrupted"})


# -- hardening -------------------------------------------------------------------------------------------

PEEK = """
for what in ("mem", "environ"):
    try:
        with open(f"/proc/{os.getppid()}/{what}", "rb") as f:
            f.read(1) if what == "environ" else None
        print(what, "readable", flush=True)
    except OSError as exc:
        print(what, "denied", type(exc).__name__, flush=True)
"""


ROOT = Path(__file__).resolve().parents[1]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _unprivileged_python() -> str | None:
    """A Python that user 65534 can run appshell with (the venv's may live under /root)."""
    for python in dict.fromkeys(
        [sys.executable, shutil.which("python3") or "", "/usr/bin/python3", "/usr/local/bin/python3"]
    ):
        if not python or not Path(python).exists():
            continue
        probe = subprocess.run(
            [*NOBODY, "env", f"PYTHONPATH={ROOT / 'src'}", python, "-c", "import appshell.audit.auditor"],
            capture_output=True,
            cwd="/",
        )
        if probe.returncode == 0:
            return python
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_DUMPABLE and /proc are Linux's")
def test_a_same_user_child_cannot_read_the_hardened_recorders_memory_or_environment() -> None:
    # Same-user mode is one unprivileged uid for both (root would read any process's memory and files).
    prefix: list[str] = []
    python = sys.executable
    if os.geteuid() == 0:
        found = _unprivileged_python() if shutil.which("setpriv") else None
        if found is None:
            pytest.skip("as root, this needs setpriv (util-linux) and a Python that user 65534 can run")
        prefix, python = [*NOBODY, "env", f"PYTHONPATH={ROOT / 'src'}"], found
    tmp = Path(tempfile.mkdtemp(prefix="appshell-recorder-"))
    try:
        tmp.chmod(0o777)
        seen = {}
        for hardened in (True, False):
            run = tmp / ("hard" if hardened else "soft")
            run.mkdir()
            run.chmod(0o777)
            proc, _ = start_recorder(run, PEEK, hardened=hardened, unsealed=True, prefix=prefix, python=python)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            seen[hardened] = out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert "mem denied" in seen[True] and "environ denied" in seen[True]
    assert "environ readable" in seen[False]  # the control: what the prctl takes away (mem may be Yama's too)


# -- the environment --------------------------------------------------------------------------------------

SCRUB_TABLE = [
    ("APPSHELL_AUDIT_URL", False),
    ("APPSHELL_SYSLOG_ADDRESS", False),
    ("APPSHELL_AUDIT_LOG", False),
    ("APPSHELL_AUDIT_KEY", False),
    ("APPSHELL_AUDIT_ANYTHING_NEW", False),
    ("APPSHELL_SEAL_STATE", False),
    ("APPSHELL_REVIEW_KEY_FILE", False),
    ("APPSHELL_REVIEW_TOKENS", False),
    ("APPSHELL_REVIEW_TOKENS_FILE", False),
    ("APPSHELL_WITNESS_URL", False),
    ("APPSHELL_PROFILE", True),
    ("APPSHELL_APP", True),
    ("APPSHELL_OPERATOR", True),
    ("APPSHELL_KEYBOARD", True),  # a word in a name, not a part of it
    ("DATABASE_URL", True),  # the app's own: the session is the app
    ("PATH", True),
    ("AUDIT_LOG", True),  # not appshell's
]


@pytest.mark.parametrize(("name", "kept"), SCRUB_TABLE)
def test_scrubbed_env(name: str, kept: bool) -> None:
    env = scrubbed_env({name: "value"})
    assert (env.get(name) == "value") is kept


# -- the wire, in-process ------------------------------------------------------------------------------------


def test_frames_come_out_whole_whatever_the_pieces() -> None:
    stream = encode({"a": 1}) + HEADER.pack(50) + b"y" * 50 + encode({"b": "\udcff"})
    frames = Frames(cap=20)
    out: list[bytes | Oversize] = []
    for i in range(len(stream)):
        out += frames.feed(stream[i : i + 1])
    assert out[0] == b'{"a":1}' and isinstance(out[2], bytes)
    assert json.loads(out[2]) == {"b": "\udcff"}  # lone surrogates survive
    assert isinstance(out[1], Oversize) and out[1].size == 50 and out[1].preview == b"y" * 50


class _Writer:
    """A writer that raises what a required sink raises: the recorder's answer is the sink's error."""

    session, required = "s", True

    def __init__(self) -> None:
        self.events: list[str] = []

    def start(self, fields: dict[str, Any]) -> None: ...

    def write(self, event: str, fields: dict[str, Any]) -> None:
        if fields.get("source") == "fail":
            raise AuditFailure("the audit file sink failed: disk full; the statement was not run", "free some space")
        self.events.append(event)

    def close(self) -> None: ...


def test_a_request_interrupted_while_waiting_reads_its_reply_before_the_next() -> None:
    ours, theirs = socket.socketpair()
    writer = _Writer()
    recorder = Recorder(writer, ours)
    ch = Channel(theirs)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set() and recorder.on_readable():
            pass

    ch._send(encode({"kind": "session_start", "fields": {}}))  # sent; the caller "interrupted" before the reply
    ch._owed = 1
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ch.request("statement", {"n": 1, "source": "x"}) == {"ok": True}
    with pytest.raises(AuditFailure, match="disk full; the statement was not run"):
        ch.request("statement", {"n": 2, "source": "fail"})
    assert writer.events == ["session_info", "statement"]
    stop.set()
    ch.close()
    thread.join(5)
    with pytest.raises(AuditFailure, match="this session closed its channel"):
        ch.request("statement", {"n": 3, "source": "x"})


def test_a_session_that_leaves_its_acknowledgements_unread_loses_its_channel_not_the_recorder() -> None:
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer = _Writer()
    recorder = Recorder(writer, ours, reply_timeout=0.2)
    theirs.setblocking(False)
    began = time.monotonic()
    sent = 0
    try:
        while time.monotonic() - began < 5:  # reports, and never a reply read
            theirs.send(encode({"kind": "statement", "fields": {"n": sent + 1, "source": "x"}}))
            sent += 1
            if not recorder.on_readable():
                break
    except (BlockingIOError, BrokenPipeError):
        pass
    while recorder.on_readable():
        pass
    assert time.monotonic() - began < 5
    assert writer.events[-1] == "channel_closed" and not recorder.open
