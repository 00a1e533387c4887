"""The audit log: records, chain, verify, durability, concurrency, redaction, sinks, fail-closed."""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pexpect
import pytest
from support.harness import run
from support.processes import started
from support.terminal import end_input, spawn_shell

from appshell.audit.records import digest

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

START_FIELDS = {
    "v",
    "seq",
    "ts",
    "session",
    "event",
    "prev",
    "hash",
    "user",
    "real_user",
    "host",
    "pid",
    "ssh_client",
    "tty",
    "mode",
    "shell",
    "profile",
    "release",
    "app",
    "database",
    "sandbox",
    "read_only",
    "reason",
    "argv",
}
COMMON = {"v", "seq", "ts", "session", "event", "prev", "hash"}


def records(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"


def test_command_session_records(shop: Path, log: Path) -> None:
    result = run(
        ["--audit-log", str(log), "--reason", "INC-1 count", "-c", "print(count(Customer, country='SE'))"],
        cwd=shop,
        env={"APPSHELL_RELEASE": "v9"},
    )
    assert result.exit_code == 0, result.output
    recs = records(log)
    assert [r["event"] for r in recs] == ["session_start", "statement", "result", "session_end"]
    start, stmt, res, end = recs
    assert START_FIELDS <= set(start)
    assert start["mode"] == "command" and start["release"] == "v9" and start["reason"] == "INC-1 count"
    assert start["argv"] == [
        "--audit-log",
        str(log),
        "--reason",
        "INC-1 count",
        "-c",
        "print(count(Customer, country='SE'))",
    ]
    assert start["database"].startswith("sqlite:///") and start["pid"] > 0 and start["tty"] is None
    assert {"n", "source"} <= set(stmt) and stmt["n"] == 1 and stmt["source"] == "print(count(Customer, country='SE'))"
    assert {"n", "status", "error", "duration_ms", "sql"} <= set(res)
    assert res["status"] == "ok" and res["error"] is None
    assert (
        any("count(*)" in s.lower() for s in res["sql"]) and "?" in res["sql"][0] and "'SE'" not in res["sql"][0]
    )  # parameters not recorded
    assert end["status"] == "ok" and end["statements"] == 1 and end["duration_ms"] > 0
    assert {r["session"] for r in recs} == {start["session"]}
    for i, r in enumerate(recs):
        assert COMMON <= set(r) and r["v"] == 1 and r["seq"] == i + 1
        assert r["ts"].endswith("Z") and len(r["ts"]) == len("2026-01-01T00:00:00.000000Z")
        assert r["hash"] == digest(r)
        assert r["prev"] == (recs[i - 1]["hash"] if i else "0" * 64)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_error_and_interrupt_outcomes(shop: Path, log: Path) -> None:
    run(["--audit-log", str(log), "-c", "{}['missing']"], cwd=shop)
    run(["--audit-log", str(log), "-c", "raise KeyboardInterrupt"], cwd=shop)
    results = [r for r in records(log) if r["event"] == "result"]
    assert results[0]["status"] == "error" and results[0]["error"] == "KeyError: 'missing'"
    assert results[1]["status"] == "interrupted"
    ends = [r["status"] for r in records(log) if r["event"] == "session_end"]
    assert ends == ["error", "interrupted"]


def test_script_records_path_sha256_and_text(shop: Path, log: Path, tmp_path: Path) -> None:
    script = tmp_path / "fix.py"
    script.write_text("print(count(Order))\n")
    assert run(["--audit-log", str(log), str(script)], cwd=shop).exit_code == 0
    stmt = next(r for r in records(log) if r["event"] == "statement")
    import hashlib

    assert stmt["path"] == str(script) and stmt["sha256"] == hashlib.sha256(script.read_bytes()).hexdigest()
    assert stmt["source"] == "print(count(Order))\n" and stmt["kind"] == "script"


def test_stdin_program_recorded(shop: Path, log: Path) -> None:
    run(["--audit-log", str(log)], cwd=shop, input="x = 1\nprint(x)\n")
    recs = records(log)
    assert recs[0]["mode"] == "stdin" and recs[1]["source"] == "x = 1\nprint(x)\n"


def test_redaction_everywhere(shop: Path, log: Path, tmp_path: Path) -> None:
    (shop / "profiles" / "development.toml").write_text('[audit]\nredact = ["card=\\\\d+"]\n')
    env = {"SHOP_API_TOKEN": "tok-abcdef123", "APPSHELL_RELEASE": "r1"}
    code = (
        "url = 'postgresql://bob:pa55word@db/x'; t = 'tok-abcdef123'; "
        "note = 'card=4111111111111111'; raise ValueError(t)"
    )
    result = run(["--audit-log", str(log), "--reason", "pw tok-abcdef123", "-c", code], cwd=shop, env=env)
    assert result.exit_code == 1
    text = log.read_text()
    for secret in ("pa55word", "tok-abcdef123", "4111111111111111"):
        assert secret not in text
    stmt = next(r for r in records(log) if r["event"] == "statement")
    assert (
        "postgresql://bob:***@db/x" in stmt["source"] and "card=***" not in stmt["source"] and "***" in stmt["source"]
    )
    assert next(r for r in records(log) if r["event"] == "result")["error"] == "ValueError: ***"
    assert "***" in records(log)[0]["reason"] and "***" in " ".join(records(log)[0]["argv"])
    assert run(["audit", "verify", "--log", str(log)], cwd=shop).exit_code == 0


def _audit_three_sessions(shop: Path, log: Path) -> list[str]:
    for code in ("print(1)", "print(2)", "print(3)"):
        assert run(["--audit-log", str(log), "-c", code], cwd=shop).exit_code == 0
    return log.read_text().splitlines(keepends=True)


@pytest.mark.parametrize(
    ("damage", "line", "words"),
    [
        ("edit", 6, "hash mismatch"),
        ("delete", 5, "chain broken"),
        ("reorder", 5, "chain broken"),
        ("truncate", 12, "torn write at the end of the file"),
        ("garbage", 3, "not a JSON record"),
    ],
)
def test_verify_names_the_first_bad_line(shop: Path, log: Path, damage: str, line: int, words: str) -> None:
    lines = _audit_three_sessions(shop, log)
    ok = run(["audit", "verify", "--log", str(log)], cwd=shop)
    assert ok.exit_code == 0 and "12 records, chain intact" in ok.stdout
    if damage == "edit":
        lines[5] = lines[5].replace('"source":"print(2)"', '"source":"print(9)"')
    elif damage == "delete":
        del lines[4]
    elif damage == "reorder":
        lines[4], lines[5] = lines[5], lines[4]
    elif damage == "truncate":
        lines[-1] = lines[-1][:40]
    elif damage == "garbage":
        lines[2] = "{oops\n"
    log.write_text("".join(lines))
    bad = run(["audit", "verify", "--log", str(log)], cwd=shop)
    assert bad.exit_code == 4
    assert f"audit.jsonl:{line}: {words}" in bad.stderr


def test_appending_after_a_torn_line_keeps_records_whole(shop: Path, log: Path) -> None:
    _audit_three_sessions(shop, log)
    with log.open("a") as f:
        f.write('{"v":1,"seq":13,"ts"')  # a write torn by a crash
    assert run(["--audit-log", str(log), "-c", "print(4)"], cwd=shop).exit_code == 0
    lines = log.read_text().splitlines()
    assert lines[12] == '{"v":1,"seq":13,"ts"'
    assert json.loads(lines[13])["event"] == "session_start"  # whole, on its own line
    acknowledged = run(["audit", "verify", "--log", str(log)], cwd=shop)  # see test_audit_integrity.py
    assert (
        acknowledged.exit_code == 0
        and "audit.jsonl:13: torn write (20 bytes): a crash cut this write" in acknowledged.stdout
    )


def test_sigkill_during_a_long_statement_loses_nothing(shop: Path, log: Path) -> None:
    proc = started(["--audit-log", str(log), "-c", "import time; print('go', flush=True); time.sleep(60)"], shop)
    proc.kill()
    proc.wait(timeout=10)
    recs = records(log)
    assert [r["event"] for r in recs] == ["session_start", "statement"]
    assert "time.sleep(60)" in recs[1]["source"]
    result = run(["audit", "verify", "--log", str(log)], cwd=shop)
    assert result.exit_code == 0, result.output
    shown = run(["audit", "show", recs[0]["session"][:8], "--log", str(log)], cwd=shop)
    assert "no result" in shown.stdout and "still open, or the process was killed" in shown.stdout


def test_sigterm_ends_the_session(shop: Path, log: Path) -> None:
    proc = started(["--audit-log", str(log), "-c", "import time; print('go', flush=True); time.sleep(60)"], shop)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    recs = records(log)
    assert [r["event"] for r in recs][-2:] == ["result", "session_end"]
    assert recs[-1]["status"] == "terminated"


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from appshell.audit.auditor import Auditor
    from appshell.audit.sinks import FileSink
    from appshell.record.journal import Journal
    from appshell.config.redact import Redactor

    auditor = Auditor([FileSink(Path(sys.argv[1]))], required=True, redact=Redactor())
    auditor.start({"mode": "command", "writer": sys.argv[2]})
    journal = Journal([auditor])
    for i in range(200):
        with journal.statement(f"writer {sys.argv[2]} statement {i}"):
            pass
    auditor.end("ok")
""")


def test_concurrent_sessions_keep_one_linear_chain(shop: Path, log: Path) -> None:
    log.parent.mkdir()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(w)]) for w in range(8)]
    assert [w.wait(timeout=120) for w in writers] == [0] * 8
    recs = records(log)
    assert len(recs) == 8 * (2 + 2 * 200)
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    per_session: dict[str, list[int]] = {}
    for r in recs:
        if r["event"] == "statement":
            per_session.setdefault(r["session"], []).append(r["n"])
    assert len(per_session) == 8 and all(ns == list(range(1, 201)) for ns in per_session.values())
    assert run(["audit", "verify", "--log", str(log)], cwd=shop).exit_code == 0


def test_required_audit_refuses_to_start_when_the_sink_cannot_open(shop: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "ro"
    blocked.mkdir()
    (blocked / "audit.jsonl").mkdir()  # a folder where the file should be: cannot be opened, even by root
    result = run(
        ["--profile", "staging", "--audit-log", str(blocked / "audit.jsonl"), "-c", "open('ran', 'w')"], cwd=shop
    )
    assert result.exit_code == 3
    assert result.stderr.startswith("appshell: error: cannot open the audit file sink (IsADirectoryError")
    assert "--audit-log/APPSHELL_AUDIT_LOG/audit.path" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (shop / "ran").exists()


def test_optional_audit_warns_and_goes_on(shop: Path, tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    result = run(["--audit-log", str(tmp_path / "dir.jsonl"), "-c", "print('ran')"], cwd=shop)
    assert result.exit_code == 0 and result.stdout == "ran\n"
    assert "warning: cannot open the audit file sink" in result.stderr


def _ignore_sigxfsz() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, inherited over exec


def _fill_disk_under(child: pexpect.spawn, log: Path) -> None:
    """The disk fills under the running session: its file-size cap (prlimit on the live process) is
    set to the log's size of this moment, so the very next record fails, whatever the records' sizes."""
    import resource

    resource.prlimit(child.pid, resource.RLIMIT_FSIZE, (log.stat().st_size, resource.RLIM_INFINITY))


@pytest.mark.parametrize("shell", ["python", "ipython", "ptpython"])
def test_sink_failing_mid_session_refuses_the_next_statement(shop: Path, tmp_path: Path, shell: str) -> None:
    log = tmp_path / "audit.jsonl"
    # The file-size cap is the process's, not the log's: the shell's own history file (IPython's is an SQLite
    # database, larger than the log) would meet it too, and IPython lost the next input when its history
    # write failed first (a flaky timeout). History off: only the audit sink meets the full disk.
    (shop / "profiles" / "staging.toml").write_text("[shell]\nhistory = false\n")
    child = spawn_shell(
        shop,
        "--shell",
        shell,
        "--profile",
        "staging",
        "--audit-log",
        str(log),
        "-q",
        columns=200,
        preexec_fn=_ignore_sigxfsz,
    )
    prompt = r"\[staging\]"
    child.expect(prompt)
    child.sendline("open('mark1', 'w').close(); print('do' + 'ne', 1)")
    child.expect("done 1")
    child.expect(prompt)
    _fill_disk_under(child, log)
    child.sendline("open('mark2', 'w').close(); print('do' + 'ne', 2)")
    child.expect(r"appshell: error: the audit file sink \(.*audit.jsonl\) failed")
    child.expect(prompt)
    refusal = child.before
    end_input(child)
    assert (shop / "mark1").exists() and not (shop / "mark2").exists()  # the refused statement did not run
    assert "File too large" in refusal and "the statement was not run" in refusal, refusal


def test_sql_sink_sqlite_separate_database(shop: Path, tmp_path: Path) -> None:
    (shop / "profiles" / "development.toml").write_text('[audit]\nsinks = ["file", "sql"]\nrequired = true\n')
    audit_db = f"sqlite:///{tmp_path / 'audit.db'}"
    env = {"APPSHELL_AUDIT_URL": audit_db}
    run(
        [
            "--audit-log",
            str(tmp_path / "a.jsonl"),
            "-c",
            "session.add(Product(sku='Z', title='z', price=1)); session.flush(); rollback()",
        ],
        cwd=shop,
        env=env,
    )
    _check_sql_chain(audit_db, expected_events=4)


def test_sql_sink_postgresql_survives_rollback(app_dir, pg_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = app_dir("plainapp")
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text('[audit]\nsinks = ["sql"]\nrequired = true\n')
    env = {"DATABASE_URL": pg_url}
    code = "metadata.create_all(engine); session.add(Author(name='x')); session.flush(); rollback()"
    assert run(["-c", code], cwd=root, env=env).exit_code == 0
    assert run(["-c", "print(count(Author))"], cwd=root, env=env).stdout.strip() == "0"
    _check_sql_chain(pg_url, expected_events=8)
    ok = run(["audit", "verify", "--url", pg_url], cwd=root)
    assert ok.exit_code == 0 and "8 records in 2 sessions, every session's chain intact" in ok.stdout
    assert (
        "│ command │" in run(["audit", "tail", "--url", pg_url], cwd=root, env={"COLUMNS": "200"}).stdout
    )  # wide: one row a session
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_url)
    with engine.begin() as conn:  # someone edits history in the table
        conn.execute(text("UPDATE appshell_audit SET record = replace(record, 'rollback()', 'pass') WHERE seq = 2"))
    engine.dispose()
    bad = run(["audit", "verify", "--url", pg_url], cwd=root)
    assert bad.exit_code == 4 and "appshell_audit#id=2: hash mismatch" in bad.stderr


def _check_sql_chain(url: str, expected_events: int) -> None:
    """Rows in id order; each session's records chained 1, 2, … by prev (no chain across sessions)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("select session, seq, prev, hash, record from appshell_audit order by id")).all()
    engine.dispose()
    assert len(rows) == expected_events
    chains: dict[str, tuple[int, str]] = {}
    for session, seq, row_prev, row_hash, raw in rows:
        rec = json.loads(raw)
        last_seq, prev = chains.get(session, (0, "0" * 64))
        assert rec["seq"] == seq == last_seq + 1 and rec["prev"] == row_prev == prev and digest(rec) == row_hash
        chains[session] = (seq, row_hash)


def test_syslog_sink(shop: Path, tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(tmp_path / "log.sock")
    server.bind(address)
    server.settimeout(10)
    (shop / "profiles" / "development.toml").write_text('[audit]\nsinks = ["syslog"]\nrequired = true\n')
    result = run(["-c", "print(1)"], cwd=shop, env={"APPSHELL_SYSLOG_ADDRESS": address})
    assert result.exit_code == 0, result.output
    messages = [server.recv(65536).decode() for _ in range(4)]
    server.close()
    assert all(m.startswith("<86>appshell[") for m in messages)
    events = [json.loads(m.split(": ", 1)[1])["event"] for m in messages]
    assert events == ["session_start", "statement", "result", "session_end"]


def test_tail_and_show_render_sessions(shop: Path, log: Path) -> None:
    run(["--audit-log", str(log), "--reason", "JIRA-9 refund", "-c", "print(count(Order))"], cwd=shop)
    tail = run(["audit", "tail", "--log", str(log)], cwd=shop)
    assert tail.exit_code == 0
    # 80 columns without a terminal: the session's row cannot fit, so it is shown as a block (nothing cut)
    words = " ".join(tail.stdout.split())
    assert "reason │ JIRA-9 refund" in words and "mode │ command" in words and "status │ ok" in words, tail.stdout
    wide = run(["audit", "tail", "--log", str(log)], cwd=shop, env={"COLUMNS": "200"})
    assert (
        "│ JIRA-9 refund │" in wide.stdout and "│ command │" in wide.stdout
    )  # a terminal that has room: one row a session
    session = records(log)[0]["session"]
    shown = run(["audit", "show", session, "--log", str(log)], cwd=shop)
    assert f"session {session}" in shown.stdout
    assert "print(count(Order))" in shown.stdout and "JIRA-9 refund" in shown.stdout
    assert "status ok" in shown.stdout


@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_interactive_shells_record_every_input(shop: Path, log: Path, tmp_path: Path, shell: str) -> None:
    startup = tmp_path / "startup.py"
    startup.write_text("STARTED = 'yes'\n")
    child = spawn_shell(shop, "--shell", shell, "--audit-log", str(log), env={"PYTHONSTARTUP": str(startup)})
    child.expect(r"\[dev\]")
    child.sendline("print('s', STARTED, count(Product))")
    child.expect("s yes 8")
    child.expect(r"\[dev\]")
    child.sendline("!echo hi-from-'shell'")
    child.expect("hi-from-shell" if shell != "python" else "SyntaxError")  # the output, not the echo of the typed line
    child.expect(r"\[dev\]")
    end_input(child)
    recs = records(log)
    assert recs[0]["shell"] == shell and recs[0]["mode"] == "interactive" and recs[0]["tty"].startswith("/dev/")
    statements = [r for r in recs if r["event"] == "statement"]
    startup_stmt = statements[0]
    assert startup_stmt["kind"] == "startup" and startup_stmt["files"][0]["text"] == "STARTED = 'yes'\n"
    sources = [s["source"].strip() for s in statements[1:]]
    assert sources[0] == "print('s', STARTED, count(Product))"
    if shell != "python":  # the plain console has no `!` escapes: it is recorded, and fails, as Python
        assert sources[1] == "!echo hi-from-'shell'"
    assert recs[-1]["event"] == "session_end" and recs[-1]["status"] == "ok"
    assert run(["audit", "verify", "--log", str(log)], cwd=shop).exit_code == 0


def test_real_sigint_in_a_command_exits_130(shop: Path, log: Path) -> None:
    proc = started(["--audit-log", str(log), "-c", "import time; print('go', flush=True); time.sleep(60)"], shop)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 130
    recs = records(log)
    assert recs[-2]["event"] == "result" and recs[-2]["status"] == "interrupted"
    assert recs[-1]["status"] == "interrupted"


@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_ctrl_c_interrupts_a_statement_not_the_shell(shop: Path, log: Path, shell: str) -> None:
    child = spawn_shell(shop, "--shell", shell, "--audit-log", str(log), "-q")
    child.expect(r"\[dev\]")
    child.sendline("import time; print('sleep' + 'ing', flush=True); time.sleep(30)")  # the echo does not match
    child.expect("sleeping")
    child.sendintr()
    child.expect("KeyboardInterrupt")
    child.expect(r"\[dev\]")
    child.sendline("print('alive', count(Customer))")
    child.expect("alive 20")
    child.expect(r"\[dev\]")
    end_input(child)
    results = [r for r in records(log) if r["event"] == "result"]
    assert [r["status"] for r in results][-2:] == ["interrupted", "ok"]
    assert records(log)[-1]["status"] == "ok"


def test_optional_sink_failing_mid_session_warns_once_and_goes_on(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    child = spawn_shell(
        shop, "--shell", "python", "--audit-log", str(log), "-q", term="dumb", preexec_fn=_ignore_sigxfsz
    )
    child.expect(">>> ")
    transcript = ""
    for i in range(4):
        if i == 1:
            _fill_disk_under(child, log)
        child.sendline(f"open('mark{i}', 'w').close(); print('do' + 'ne', {i})")
        child.expect(f"done {i}")
        transcript += child.before
        child.expect(">>> ")
        transcript += child.before
    end_input(child)
    assert all((shop / f"mark{i}").exists() for i in range(4))  # nothing refused: audit.required is off
    assert transcript.count("appshell: warning: audit file sink") == 1
    assert "continuing without it" in transcript
