"""A hostile review of the recorder process (issue 22), on the REAL console script and a sealed copy of the shop.

Each test is one attack by the operator's code at the prompt, run by `appshell --profile production` (audit
required and locked) as a real process, and asserts what docs/audit.md's table ("Who keeps the record")
claims for same-user mode: prevented, detected (`audit verify` exits non-zero, or `audit show`/`audit tail`
flag the session), or neither as documented. A test marked xfail(strict) asserts the behaviour the docs
claim where the code does less today: its reason says what breaks.
"""

from __future__ import annotations

import hashlib
import json
import os
import py_compile
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest
from support.audit import audit_init, audit_records
from support.environment import clean_environ
from support.paths import APPSHELL

pytestmark = pytest.mark.subprocess

# Finds the session's channel to the recorder among the session's own objects.
CHANNEL = 'ch = next(o for o in __import__("gc").get_objects() if type(o).__name__ == "Channel")\n'
UPDATE = 'sql("update products set stock = 0 where id > 0"); commit()\n'
FAKE = "print(count(Product))"


@dataclass
class Shop:
    root: Path
    log: Path
    key: str

    def stock(self) -> int:
        import sqlite3

        with sqlite3.connect(self.root / "var" / "shop.db") as db:
            return int(db.execute("select sum(stock) from products").fetchone()[0])

    def records(self) -> list[dict]:  # type: ignore[type-arg]
        return audit_records(self.log)

    def tool(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [APPSHELL, "audit", *args], cwd=self.root, env=clean_environ(), capture_output=True, text=True, timeout=30
        )

    def verify(self) -> subprocess.CompletedProcess[str]:
        return self.tool("verify", "--log", str(self.log), "--key", self.key)

    def sessions(self) -> list[dict]:  # type: ignore[type-arg]
        done = self.tool("tail", "--json", "--log", str(self.log))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def flags(self, session: str) -> list[str]:
        return next(s["flags"] for s in self.sessions() if s["session"] == session)

    def show(self, session: str) -> str:
        done = self.tool("show", session, "--log", str(self.log))
        assert done.returncode == 0, done.stderr
        return done.stdout


@dataclass
class Ran:
    code: int | None  # None: it did not end in time (and was killed)
    stdout: str
    stderr: str
    seconds: float
    session: str


@pytest.fixture
def sealed(shop: Path) -> Shop:
    log = shop / ".appshell" / "audit.jsonl"
    return Shop(shop, log, audit_init(shop, log))


def appshell(
    shop: Shop, code: str, *, env: dict[str, str] | None = None, timeout: float = 8.0, wrapper: tuple[str, ...] = ()
) -> Ran:
    """`appshell --profile production --write --yes -c CODE`, the real console script; killed (group) if it hangs."""
    before = {r["session"] for r in shop.records()} if shop.log.exists() else set()
    began = time.monotonic()
    proc = subprocess.Popen(
        [*wrapper, APPSHELL, "--profile", "production", "--reason", "hostile review", "--write", "--yes", "-c", code],
        cwd=shop.root,
        env=clean_environ(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGTERM)  # the operator gives up: the recorder is asked to end the session
        try:
            out, err = proc.communicate(timeout=4)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        rc = None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of the attack is left running
        except ProcessLookupError:
            pass
    seconds = time.monotonic() - began
    new = [r["session"] for r in shop.records() if r["session"] not in before and r["event"] == "session_start"]
    return Ran(rc, out, err, seconds, new[-1] if new else "")


def of(shop: Shop, session: str) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in shop.records() if r.get("session") == session]


# -- issue 22's eight attacks, on the real console script --------------------------------------------------------------


def test_1_hashless_lines_appended_by_the_session_are_flagged_and_fail_verify(sealed: Shop) -> None:
    code = (
        UPDATE
        + f"""
import json
recs = [json.loads(l) for l in open({str(sealed.log)!r})]
sid = recs[-1]["session"]
with open({str(sealed.log)!r}, "a") as f:
    for r in ({{"v": 1, "session": sid, "event": "statement", "n": 1, "source": {FAKE!r}, "kind": "command"}},
              {{"v": 1, "session": sid, "event": "result", "n": 1, "status": "ok", "error": None, "sql": []}},
              {{"v": 1, "session": sid, "event": "session_end", "status": "ok", "statements": 1}}):
        f.write(json.dumps(r) + "\\n")
"""
    )
    ran = appshell(sealed, code)
    assert ran.code == 0, ran.stderr
    assert sealed.stock() == 0
    verify = sealed.verify()
    assert verify.returncode not in (0, 2) and "forged" in verify.stdout + verify.stderr  # 3, or 4 (EXIT_CHAIN_BROKEN)
    assert sealed.flags(ran.session)
    assert "update products set stock = 0" in sealed.show(ran.session)


def test_2_no_auditor_journal_sink_or_key_is_in_the_sessions_process(sealed: Shop) -> None:
    code = """
import gc, os
names = {"Auditor", "FileSink", "Sealer", "SqlSink", "SyslogSink"}
found = sorted({type(o).__name__ for o in gc.get_objects() if type(o).__name__ in names})
fds = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") \
if os.path.exists(f"/proc/self/fd/{fd}")]
print("FOUND", found, [f for f in fds if ".appshell" in f])
"""
    ran = appshell(sealed, code)
    assert ran.code == 0, ran.stderr
    assert "FOUND [] []" in ran.stdout
    assert {r["by"] for r in of(sealed, ran.session) if r["event"] in ("statement", "result")} == {"session"}


def test_3_a_url_password_holding_sql_keeps_a_digest_of_what_ran(sealed: Shop) -> None:
    hexed = b"update products set stock = 0 where id > 0".hex()
    code = (
        f'u = "postgresql://report:{hexed}@replica/shop"\n'
        'sql(bytes.fromhex(u.split(":")[2].split("@")[0]).decode()); commit()\n'
    )
    ran = appshell(sealed, code)
    assert ran.code == 0, ran.stderr
    assert sealed.stock() == 0
    statement = next(r for r in of(sealed, ran.session) if r["event"] == "statement" and r.get("parent") is None)
    assert hexed not in statement["source"]  # masked, as a URL's password
    assert statement["redacted"]["source"] == hashlib.sha256(code.encode()).hexdigest()


def test_4_a_doctored_pyc_under_a_benign_source_is_refused_and_recorded(sealed: Shop) -> None:
    evil = 'open("EVIL_RAN", "w").write("x")  # evil\n'
    benign = "VALUE = 1\n"
    benign += "#" * (len(evil) - len(benign) - 1) + "\n"
    source = sealed.root / "helpers_fix.py"
    source.write_text(evil)
    py_compile.compile(str(source), cfile=str(sealed.root / "__pycache__" / f"helpers_fix.{_tag()}.pyc"))
    stat = source.stat()
    source.write_text(benign)
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert source.stat().st_size == stat.st_size
    ran = appshell(sealed, "import helpers_fix")
    assert ran.code != 0 and "BytecodeRefused" in ran.stderr
    assert not (sealed.root / "EVIL_RAN").exists()
    imports = [r for r in of(sealed, ran.session) if r["event"] == "statement" and r.get("kind") == "import"]
    assert imports and imports[0]["files"][0]["refused"]


def _tag() -> str:
    import sys

    return str(sys.implementation.cache_tag)


def test_5_deleting_an_index_line_hides_no_session(sealed: Shop) -> None:
    first = appshell(sealed, UPDATE)
    second = appshell(sealed, FAKE)
    assert first.code == 0 and second.code == 0
    index = sealed.log.parent / "audit.idx"
    lines = index.read_text().splitlines(keepends=True)
    index.write_text("".join(line for line in lines if first.session not in line))
    assert first.session in {s["session"] for s in sealed.sessions()}
    assert "update products set stock = 0" in sealed.show(first.session)
    assert sealed.verify().returncode == 0


def test_6_a_sitecustomize_on_pythonpath_cannot_rewrite_the_record(sealed: Shop, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "try:\n"
        "    import appshell.recorder.channel as c\n"
        "    _o = c.Channel.request\n"
        "    c.Channel.request = lambda self, k, f: _o(self, k, "
        f"{{**f, 'source': {FAKE!r}}} if k == 'statement' else f)\n"
        "except Exception:\n"
        "    pass\n"
    )
    ran = appshell(sealed, UPDATE, env={"PYTHONPATH": str(site)})
    assert ran.code == 0, ran.stderr
    statement = next(r for r in of(sealed, ran.session) if r["event"] == "statement")
    assert statement["source"] == UPDATE
    assert not sealed.flags(ran.session)


def test_7_a_review_appended_by_the_operator_is_not_verified_and_the_session_stays_pending(sealed: Shop) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from appshell.cli.review_web.app import create_app
    from appshell.cli.review_web.cli import build_config, parser

    code = (
        UPDATE
        + f"""
import hashlib, json, datetime
recs = [json.loads(l) for l in open({str(sealed.log)!r})]
rev = {{"seq": 1, "ts": datetime.datetime.utcnow().isoformat() + "Z", "session": recs[-1]["session"], \
"auditor": "alice",
        "state": "reviewed", "note": "fine", "prev": "0" * 64}}
rev["hash"] = hashlib.sha256(json.dumps(rev, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
open({str(sealed.log.parent / "reviews.jsonl")!r}, "a").write(\
json.dumps(rev, sort_keys=True, separators=(",", ":")) + "\\n")
"""
    )
    ran = appshell(sealed, code)
    assert ran.code == 0, ran.stderr
    token = "alice-token-0123456789"
    config = build_config(parser().parse_args(["--log", str(sealed.log)]), {"APPSHELL_REVIEW_TOKENS": f"alice:{token}"})
    config.warm = False
    client = TestClient(create_app(config), follow_redirects=False)
    headers = {"Authorization": f"Bearer {token}"}
    page = client.get(f"/session/{ran.session}", headers=headers).text
    assert "NOT verified" in page
    assert ran.session in client.get("/?state=pending", headers=headers).text


def test_8_an_absurd_epoch_is_refused_at_once(sealed: Shop) -> None:
    assert appshell(sealed, "print(1)").code == 0
    last = sealed.records()[-1]
    with sealed.log.open("a") as f:
        f.write(json.dumps({**last, "seq": last["seq"] + 1, "epoch": 10**12}) + "\n")
    ran = appshell(sealed, UPDATE)
    assert ran.code not in (0, None) and ran.seconds < 6
    assert "refuses to step the key" in ran.stderr
    assert sealed.stock() > 0


# -- the recorder's own surface -------------------------------------------------------------------------------------


def test_a_forged_report_through_the_sessions_channel_is_flagged(sealed: Shop) -> None:
    code = (
        CHANNEL + f'ch.request("statement", {{"n": 2, "source": {FAKE!r}, "kind": "command"}})\n'
        'ch.request("result", {"n": 2, "status": "ok", "error": None, "duration_ms": 1.0, "sql": []})\n' + UPDATE
    )
    ran = appshell(sealed, code)
    assert ran.code == 0, ran.stderr
    forged = [r for r in of(sealed, ran.session) if r["event"] == "statement" and r["source"] == FAKE]
    assert forged and forged[0]["by"] == "session"  # marked as the session's word (holds)
    assert sealed.flags(ran.session) or sealed.verify().returncode != 0


def test_a_forged_result_makes_the_real_one_a_flagged_refusal(sealed: Shop) -> None:
    code = (
        CHANNEL
        + 'ch.request("result", {"n": 1, "status": "ok", "error": None, "duration_ms": 1.0, "sql": []})\n'
        + UPDATE
    )
    ran = appshell(sealed, code)
    assert sealed.stock() == 0
    refused = [r for r in of(sealed, ran.session) if r["event"] == "refused_report"]
    assert refused and "update products" in json.dumps(refused[0]["report"])
    assert sealed.flags(ran.session)


def test_a_report_setting_the_recorders_fields_is_refused_and_flagged(sealed: Shop) -> None:
    code = (
        CHANNEL
        + f"""
try:
    ch.request("statement", {{"n": 2, "source": {FAKE!r}, "kind": "command", "by": "recorder"}})
except Exception as exc:
    print("REFUSED", type(exc).__name__)
"""
    )
    ran = appshell(sealed, code)
    assert "REFUSED AuditFailure" in ran.stdout
    assert not [r for r in of(sealed, ran.session) if r["event"] == "statement" and r["source"] == FAKE]
    assert sealed.flags(ran.session)


def test_a_huge_length_written_to_the_channel_fd_neither_hangs_nor_hides(sealed: Shop) -> None:
    ran = appshell(
        sealed,
        CHANNEL + 'import os, struct\nos.write(ch.fileno(), struct.pack(">I", 0xFFFFFFFF))\n' + UPDATE,
        timeout=5,
    )
    assert ran.code is not None, "the session hung waiting for an acknowledgement that never came"
    assert any(r["event"] == "refused_report" for r in of(sealed, ran.session))


def test_a_half_frame_written_to_the_channel_fd_does_not_hang_the_session(sealed: Shop) -> None:
    ran = appshell(
        sealed,
        CHANNEL + 'import os, struct\nos.write(ch.fileno(), struct.pack(">I", 100) + b\'{"kind":\')\n' + UPDATE,
        timeout=5,
    )
    assert any(r["event"] == "refused_report" for r in of(sealed, ran.session))  # holds: refused and flagged
    assert ran.code is not None, "the session hung waiting for an acknowledgement that never came"


def test_a_raw_frame_written_to_the_channel_fd_is_checked_like_any_report(sealed: Shop) -> None:
    code = (
        CHANNEL
        + """import json, os, struct
b = json.dumps({"kind": "statement", "fields": {"n": 0, "source": "x", "kind": "command"}}).encode()
os.write(ch.fileno(), struct.pack(">I", len(b)) + b)
"""
        + UPDATE
    )
    ran = appshell(sealed, code)
    assert ran.code is not None
    refused = [r for r in of(sealed, ran.session) if r["event"] == "refused_report"]
    assert refused and "not a positive integer" in refused[0]["reason"]
    assert sealed.flags(ran.session)


def test_sigkill_of_the_recorder_is_detected_as_a_session_without_its_end(sealed: Shop) -> None:
    ran = appshell(sealed, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + UPDATE)
    assert ran.code == -signal.SIGKILL  # the console script's own process, killed
    time.sleep(0.5)  # the orphaned session finds its recorder gone
    records = of(sealed, ran.session)
    assert [r["event"] for r in records] == ["session_start", "statement"]
    assert any("no session_end" in flag for flag in sealed.flags(ran.session))


def test_sigstop_of_the_recorder_loses_nothing(sealed: Shop) -> None:
    code = (
        """import os, signal, subprocess
pp = os.getppid()
subprocess.Popen(["sh", "-c", f"sleep 1; kill -CONT {pp}"], start_new_session=True)
os.kill(pp, signal.SIGSTOP)
"""
        + UPDATE
    )
    ran = appshell(sealed, code)
    assert ran.code == 0, ran.stderr
    assert [r["event"] for r in of(sealed, ran.session)] == ["session_start", "statement", "result", "session_end"]
    assert any("update products" in s for r in of(sealed, ran.session) if r["event"] == "result" for s in r["sql"])
    assert sealed.verify().returncode == 0


def test_the_recorder_cannot_be_ptraced_nor_its_memory_or_descriptors_read(sealed: Shop) -> None:
    # Same-user mode: run without the capabilities root would use to pass the non-dumpable check.
    wrapper: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("setpriv is needed to drop CAP_SYS_PTRACE as root")
        caps = "-sys_ptrace,-dac_override,-dac_read_search"
        wrapper = ("setpriv", "--bounding-set", caps, "--inh-caps", caps)
    code = """import ctypes, os
pp = os.getppid()
out = []
try:
    with open(f"/proc/{pp}/mem", "rb") as f:
        f.seek(0x400000); f.read(16); out.append("mem read")
except OSError:
    out.append("mem denied")
try:
    [os.readlink(f"/proc/{pp}/fd/{n}") for n in os.listdir(f"/proc/{pp}/fd")]; out.append("fd read")
except OSError:
    out.append("fd denied")
libc = ctypes.CDLL(None, use_errno=True)
out.append("ptrace denied" if libc.ptrace(16, pp, None, None) != 0 else "ptrace attached")
print("PROBE", out)
"""
    ran = appshell(sealed, code, wrapper=wrapper)
    assert ran.code == 0, ran.stderr
    assert "PROBE ['mem denied', 'fd denied', 'ptrace denied']" in ran.stdout


def test_a_forked_child_writes_no_records(sealed: Shop) -> None:
    code = (
        CHANNEL
        + f"""import os
pid = os.fork()
if pid == 0:
    try:
        ch.request("statement", {{"n": 9, "source": {FAKE!r}, "kind": "command"}})
    except BaseException:
        pass
    try:
        {UPDATE.strip()}
    except BaseException:
        pass
    os._exit(0)
os.waitpid(pid, 0)
"""
    )
    ran = appshell(sealed, code)
    assert ran.code == 0, ran.stderr
    assert sealed.stock() > 0  # holds: the child's SQL is refused
    assert not [r for r in of(sealed, ran.session) if r.get("source") == FAKE] or sealed.flags(ran.session)


def test_a_typed_statement_reported_differently_is_flagged(sealed: Shop) -> None:
    child = pexpect.spawn(
        APPSHELL,
        ["--profile", "production", "--reason", "hostile review", "--write", "--yes", "--shell", "python"],
        cwd=str(sealed.root),
        env={**clean_environ(), "TERM": "dumb"},
        encoding="utf-8",
        timeout=8,
        dimensions=(40, 200),
    )
    try:
        child.expect("PRODUCTION")
        child.sendline(
            "import appshell.recorder.channel as c; o = c.Channel.request; "
            f"c.Channel.request = lambda s, k, f, o=o: o(s, k, {{**f, 'source': {FAKE!r}}} if k == 'statement' else f)"
        )
        child.expect("PRODUCTION")
        child.sendline(UPDATE.strip())
        child.expect("PRODUCTION")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert sealed.stock() == 0
    session = sealed.records()[0]["session"]
    assert "update products set stock = 0" in sealed.show(session)  # holds: the keys are the recorder's
    assert any("reported a statement that was not typed" in f for f in sealed.flags(session)), sealed.flags(session)


@pytest.mark.parametrize("shell", ["python", "ipython", "ptpython"])
def test_an_honest_typed_session_is_not_flagged(sealed: Shop, shell: str) -> None:
    """The check above compares each statement with the typed lines: an honest session in each shell, with a
    backspace, a block of two lines and IPython's auto-indent, matches them."""
    child = pexpect.spawn(
        APPSHELL,
        ["--profile", "production", "--reason", "honest", "--shell", shell],
        cwd=str(sealed.root),
        env={**clean_environ(), "TERM": "xterm"},
        encoding="utf-8",
        timeout=15,
        dimensions=(40, 200),
    )
    try:
        child.expect("PRODUCTION")
        child.send("print(count(Prodx\x7fuct))\r")
        child.expect("8")
        child.send("for i in range(2):\r")
        child.send("print('line', i)\r")
        child.send("\r" if shell != "ptpython" else "\r\r")
        child.expect("line 1")
        child.send("exit()\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    session = sealed.records()[-1]["session"]
    assert sealed.flags(session) == [], sealed.show(session)
    from appshell.audit.review import Log, find_session

    found = find_session(Log(sealed.log), session)
    assert found is not None and found.typed_text_if_plain() is not None  # the check ran: no editing keys


def test_closing_the_channel_then_running_sql_is_flagged(sealed: Shop) -> None:
    ran = appshell(sealed, CHANNEL + "ch.sock.close()\n" + UPDATE + "import time\ntime.sleep(0.5)\n")
    assert sealed.stock() == 0
    assert [r["event"] for r in of(sealed, ran.session)][-2:] == ["channel_closed", "session_end"]
    assert any("channel_closed" in flag for flag in sealed.flags(ran.session))


def test_closing_the_channel_just_before_exiting_is_flagged(sealed: Shop) -> None:
    ran = appshell(sealed, CHANNEL + "ch.sock.close()\nimport os\nos._exit(0)\n")
    assert ran.code == 0, ran.stderr
    # No result; the recorder says the session ended without its end report.
    assert [r["event"] for r in of(sealed, ran.session)] == [
        "session_start",
        "statement",
        "channel_closed",
        "session_end",
    ]
    assert sealed.flags(ran.session)


def test_many_tiny_reports_are_all_sealed_and_the_session_ends(sealed: Shop) -> None:
    code = (
        CHANNEL
        + 'for i in range(2, 302):\n    ch.request("nested", {"n": i, "source": "x", "kind": "nested", "parent": 1})\n'
    )
    ran = appshell(sealed, code, timeout=9)
    assert ran.code == 0, ran.stderr
    records = of(sealed, ran.session)
    assert sum(r["event"] == "statement" for r in records) == 301 and records[-1]["event"] == "session_end"
    assert sealed.verify().returncode == 0


def test_a_report_nested_ten_thousand_deep_is_refused_and_recorded(sealed: Shop) -> None:
    code = (
        CHANNEL
        + """from appshell.recorder.channel import HEADER
body = b'{"kind":"nested","fields":{"n":5,"source":"x","kind":"nested","d":' + b"[" * 10000 + b"]" * 10000 + b"}}"
try:
    ch._exchange("nested", HEADER.pack(len(body)) + body)
except Exception as exc:
    print("REFUSED", type(exc).__name__)
"""
        + UPDATE
    )
    ran = appshell(sealed, code)
    assert ran.code == 0 and "REFUSED AuditFailure" in ran.stdout, ran.stderr
    refused = [r for r in of(sealed, ran.session) if r["event"] == "refused_report"]
    assert refused and refused[0]["sha256"] and refused[0]["bytes"] > 20000
    assert of(sealed, ran.session)[-1]["event"] == "session_end" and sealed.flags(ran.session)


def test_a_hundred_megabyte_report_is_refused_with_its_digest(sealed: Shop) -> None:
    code = (
        CHANNEL
        + """from appshell.recorder.channel import HEADER
body = b"x" * (100 * 1024 * 1024)
try:
    ch._exchange("statement", HEADER.pack(len(body)) + body)
except Exception as exc:
    print("REFUSED", type(exc).__name__)
"""
        + UPDATE
    )
    ran = appshell(sealed, code)
    assert ran.code == 0 and "REFUSED AuditFailure" in ran.stdout, ran.stderr
    refused = [r for r in of(sealed, ran.session) if r["event"] == "refused_report"]
    assert refused and refused[0]["bytes"] == 100 * 1024 * 1024
    assert refused[0]["sha256"] == hashlib.sha256(b"x" * (100 * 1024 * 1024)).hexdigest()
    assert any("update products" in s for r in of(sealed, ran.session) if r["event"] == "result" for s in r["sql"])


def test_sigterm_of_the_recorder_ends_the_session_and_the_record(sealed: Shop) -> None:
    ran = appshell(sealed, "import os, signal, time\nos.kill(os.getppid(), signal.SIGTERM)\ntime.sleep(5)\n" + UPDATE)
    assert ran.code is not None and ran.seconds < 6
    assert sealed.stock() > 0
    end = of(sealed, ran.session)[-1]
    # forwarded to the session, which ends on it ("terminated", 143) — or, past the grace, killed
    assert end["event"] == "session_end" and end["by"] == "recorder"
    assert end["status"] == "terminated" or end["signal"] in ("SIGTERM", "SIGKILL")
    assert sealed.verify().returncode == 0


def test_credentials_in_the_launch_environment_stay_readable_as_documented(sealed: Shop) -> None:
    # docs/audit.md: "reads the sinks' credentials — neither when they come from the operator's own environment
    # (the forked session's /proc/self/environ keeps the launch environment)". os.environ is scrubbed.
    code = (
        'import os\nprint("ENV", os.environ.get("APPSHELL_AUDIT_KEY"), '
        'b"APPSHELL_AUDIT_KEY=kept-secret" in open("/proc/self/environ", "rb").read())\n'
    )
    ran = appshell(sealed, code, env={"APPSHELL_AUDIT_KEY": "kept-secret"})
    assert ran.code == 0, ran.stderr
    assert "ENV None True" in ran.stdout


def test_sql_run_while_the_app_boots_is_recorded(sealed: Shop) -> None:
    with (sealed.root / "shop" / "db.py").open("a") as f:
        f.write('\nwith engine.begin() as _c:\n    _c.exec_driver_sql("update products set stock = 0 where id > 0")\n')
    ran = appshell(sealed, FAKE)
    assert ran.code == 0, ran.stderr
    assert sealed.stock() == 0
    start = next(r for r in of(sealed, ran.session) if r["event"] == "session_start")
    # the session's word (boot_sql: docs/audit.md), as every record the session reports
    assert any("update products set stock = 0" in q for q in start["boot_sql"]), start
    assert "boot_sql" in start["session_reported"]
