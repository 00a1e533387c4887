"""Readers never hide a record (issue 22 item 6, attacks 1, 5, 8): show, tail, verify and the index.

Each test here reproduces an attack of issue 22 on a real log written by real `appshell` runs
against the example shop, then asks the readers what they show.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.audit import HIDE
from support.audit import audit_init as init
from support.audit import audit_records as records
from support.environment import clean_environ
from support.harness import run

from appshell.audit.records import canonical, digest

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


def hidden_update(shop: Path, log: Path) -> str:
    """Attack 1: an UPDATE runs, then hash-less lines claim the statement was a harmless count and the session ended."""
    code = "sql('update products set stock = 0'); commit()\n" + HIDE.format(log=str(log))
    result = run(["--audit-log", str(log), "--write", "-c", code], cwd=shop)
    assert result.exit_code == 0, result.output
    return next(r["session"] for r in records(log) if r["event"] == "session_start")


def test_verify_calls_whole_unsealed_lines_forged_not_torn(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    key = init(shop, log)
    hidden_update(shop, log)
    result = run(["audit", "verify", "--log", str(log), "--key", key], cwd=shop)
    assert result.exit_code == 4, result.output  # tampering: the broken chain's exit code (EXIT_CHAIN_BROKEN)
    assert "BROKEN" in result.stderr and "no seal or hash" in result.stderr and "forged" in result.stderr, result.stderr
    assert "torn write (" not in result.output


def test_verify_without_key_also_refuses_whole_hashless_lines(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    hidden_update(shop, log)
    result = run(["audit", "verify", "--log", str(log)], cwd=shop)
    assert result.exit_code == 4 and "forged" in result.stderr, result.output


def test_a_torn_partial_last_line_is_still_a_torn_write(shop: Path, tmp_path: Path) -> None:
    """The honest case stays honest: a cut write (no end of line) acknowledged by the next record is a warning."""
    log = tmp_path / "audit.jsonl"
    run(["--audit-log", str(log), "-c", "1"], cwd=shop)
    with log.open("ab") as f:
        f.write(b'{"v":1,"seq":99,"ts":"2026')
    run(["--audit-log", str(log), "-c", "2"], cwd=shop)
    result = run(["audit", "verify", "--log", str(log)], cwd=shop)
    assert result.exit_code == 0 and "torn write" in result.stdout, result.output


def test_show_shows_every_record_and_flags_the_forgery(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    init(shop, log)
    sid = hidden_update(shop, log)
    shown = run(["audit", "show", sid, "--log", str(log)], cwd=shop, env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert "update products set stock = 0" in out  # the real statement is shown
    assert "print(count(Product))" in out  # and so is the fake one, flagged
    assert "no seal or hash" in out and "forged" in out
    assert "duplicate" in out and f"statement n={1}" in out
    assert "second session_end" in out
    as_json = run(["audit", "show", sid, "--log", str(log), "--json"], cwd=shop)
    data = json.loads(as_json.stdout)
    assert len([r for r in data["records"] if r["event"] == "statement"]) == 2
    assert any("no seal or hash" in f for f in data["flags"])


def test_show_and_tail_flag_records_after_the_end(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    run(["--audit-log", str(log), "-c", "1"], cwd=shop)
    first = records(log)[0]["session"]
    # A later session appends, under the first session's id, a sealed-looking but hash-less statement after its end.
    forged = {"v": 1, "ts": "x", "session": first, "event": "statement", "n": 9, "source": "drop table x"}
    code = f"open({str(log)!r}, 'a').write({json.dumps(json.dumps(forged))} + chr(10))"
    run(["--audit-log", str(log), "-c", code], cwd=shop)
    shown = run(["audit", "show", first, "--log", str(log)], cwd=shop, env={"COLUMNS": "200"})
    assert "drop table x" in shown.stdout and "after the session_end" in shown.stdout, shown.stdout
    tail = run(["audit", "tail", "--log", str(log), "--json"], cwd=shop)
    rows = {r["session"]: r for r in json.loads(tail.stdout)}
    assert any("after the session_end" in f for f in rows[first]["flags"])


def test_a_deleted_index_line_hides_no_session_from_show(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    for code in ("1", "2", "3"):
        run(["--audit-log", str(log), "-c", code], cwd=shop)
    idx = log.with_suffix(".idx")
    lines = idx.read_text().splitlines()
    victim = lines[1].split()[0]
    idx.write_text("\n".join([lines[0], lines[2]]) + "\n")
    shown = run(["audit", "show", victim, "--log", str(log)], cwd=shop)
    assert shown.exit_code == 0 and victim in shown.stdout, shown.output


def test_tail_marks_sandbox_read_only_wrote_and_errors(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    run(["--audit-log", str(log), "--sandbox", "-c", "sql('update products set stock = 1')"], cwd=shop)
    run(["--audit-log", str(log), "--read-only", "-c", "1/0"], cwd=shop)
    run(["--audit-log", str(log), "-c", "sql('update products set stock = 2'); commit()"], cwd=shop)
    tail = run(["audit", "tail", "--log", str(log), "--json"], cwd=shop)
    rows = json.loads(tail.stdout)
    assert [(r["sandbox"], r["read_only"], r["wrote"], r["errors"]) for r in rows] == [
        (True, False, True, 0),
        (False, True, False, 1),
        (False, False, True, 0),
    ]
    text = run(["audit", "tail", "--log", str(log)], cwd=shop, env={"COLUMNS": "200"}).stdout
    assert "sandbox" in text and "read-only" in text and "wrote" in text and "1 error" in text, text


def test_show_prints_whole_source_and_its_sql(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    padded = "print(1)" + " " * 200 + "; sql('update products set stock = 7 where id = 1'); commit()"
    run(["--audit-log", str(log), "-c", padded], cwd=shop)
    sid = records(log)[0]["session"]
    out = run(["audit", "show", sid, "--log", str(log)], cwd=shop, env={"COLUMNS": "80"}).stdout
    flat = re.sub(r"[\s│]+", "", out)
    assert "sql('updateproductssetstock=7whereid=1')" in flat
    assert re.search(r"UPDATE\s+products", out, re.IGNORECASE)
    assert all(len(line) <= 80 for line in out.splitlines()), max(out.splitlines(), key=len)


# -- attack 8: an absurd catch-up is refused at once; SIGTERM ends a session ------------------


def _forge_epoch(log: Path) -> None:
    last = records(log)[-1]
    forged = {
        **last,
        "seq": last["seq"] + 1,
        "prev": last["hash"],
        "epoch": 10**12,
        "mac": "0" * 64,
        "event": "statement",
        "n": 5,
    }
    forged.pop("hash")
    forged["hash"] = digest(forged)
    with log.open("ab") as f:
        f.write(canonical(forged) + b"\n")


def test_an_absurd_epoch_is_refused_at_once(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    init(shop, log)
    run(["--audit-log", str(log), "-c", "1"], cwd=shop)
    _forge_epoch(log)
    began = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "appshell",
            "--no-reexec",
            "--profile",
            "staging",
            "--audit-log",
            str(log),
            "-c",
            "print(2)",
        ],
        cwd=shop,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - began < 30
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("appshell: error: ") and " — " in lines[0], proc.stderr
    assert "epoch" in lines[0]
    assert "2" not in proc.stdout


def test_sigterm_ends_a_sealed_session_and_its_record(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    init(shop, log)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appshell",
            "--no-reexec",
            "--audit-log",
            str(log),
            "-c",
            "import time; time.sleep(120)",
        ],
        cwd=shop,
        env=clean_environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and b'"event":"statement"' in log.read_bytes()):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    ends = [r for r in records(log) if r["event"] == "session_end"]
    assert len(ends) == 1


def test_an_absurd_epoch_where_the_audit_is_not_required_drops_the_sink_at_once(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    init(shop, log)
    run(["--audit-log", str(log), "-c", "1"], cwd=shop)
    _forge_epoch(log)
    proc = subprocess.run(
        [sys.executable, "-m", "appshell", "--no-reexec", "--audit-log", str(log), "-c", "print(2)"],
        cwd=shop,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "appshell: warning:" in proc.stderr and "epoch 1000000000000" in proc.stderr, (
        proc.stderr
    )


# -- attack 3: redaction never erases evidence ----------------------------------------------------


def test_sql_hidden_in_a_url_password_keeps_a_digest_of_what_ran(shop: Path, tmp_path: Path) -> None:
    """SQL hex-encoded into the password position of a URL in the operator's code is masked — and its digest kept."""
    import hashlib

    log = tmp_path / "audit.jsonl"
    hexed = b"update products set stock = 0".hex()
    code = (
        f"u = 'postgresql://report:{hexed}@replica/shop'\n"
        "c = engine.raw_connection(); cur = c.cursor(); "
        "cur.execute(bytes.fromhex(u.split(':')[2].split('@')[0]).decode()); c.commit()"
    )
    result = run(["--audit-log", str(log), "--write", "-c", code], cwd=shop)
    assert result.exit_code == 0, result.output
    statement = next(r for r in records(log) if r["event"] == "statement")
    assert hexed not in statement["source"] and "***" in statement["source"]
    assert statement["redacted"] == {"source": hashlib.sha256(code.encode()).hexdigest()}  # what the auditor can prove
    shown = run(["audit", "show", statement["session"], "--log", str(log)], cwd=shop, env={"COLUMNS": "200"}).stdout
    assert hashlib.sha256(code.encode()).hexdigest() in shown


def test_credentials_appshell_read_are_masked_without_a_digest(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    code = "t = 'tok-abcdef123'; print(len(t))"
    run(["--audit-log", str(log), "-c", code], cwd=shop, env={"SHOP_API_TOKEN": "tok-abcdef123"})
    statement = next(r for r in records(log) if r["event"] == "statement")
    assert "tok-abcdef123" not in statement["source"] and "redacted" not in statement


def test_verify_never_steps_to_a_forged_epoch(shop: Path, tmp_path: Path) -> None:
    """Neither a forged record nor a forged sealing state makes verify step the key 10^12 times."""
    from appshell.audit.seal import SealState, state_path

    log = tmp_path / "audit.jsonl"
    key = init(shop, log)
    run(["--audit-log", str(log), "-c", "1"], cwd=shop)
    state = SealState.read(state_path(log))
    state_path(log).write_bytes(SealState(10**12, state.key, 10**12, state.hash, state.fingerprint).dump())
    began = time.monotonic()
    result = run(["audit", "verify", "--log", str(log), "--key", key], cwd=shop)
    assert result.exit_code == 4 and "not checked (over 10,000,000 key steps)" in result.stderr, result.output
    _forge_epoch(log)
    result = run(["audit", "verify", "--log", str(log), "--key", key], cwd=shop)
    assert result.exit_code == 4 and "sealed with epoch 1000000000000" in result.stderr, result.output
    assert time.monotonic() - began < 20


def test_the_review_page_never_steps_to_a_forged_epoch(shop: Path, tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from appshell.cli.review_web.app import create_app
    from appshell.cli.review_web.cli import build_config, parser

    log = tmp_path / "audit.jsonl"
    key = init(shop, log)
    run(["--audit-log", str(log), "-c", "1"], cwd=shop)
    sid = records(log)[0]["session"]
    last = records(log)[-1]
    forged = {**last, "seq": last["seq"] + 1, "prev": last["hash"], "epoch": 10**12, "mac": "0" * 64}
    forged.pop("hash")
    forged["hash"] = digest(forged)
    with log.open("ab") as f:
        f.write(canonical(forged) + b"\n")
    token = "alice-token-0123456789"
    config = build_config(
        parser().parse_args(["--log", str(log), "--key", key]),
        {"APPSHELL_REVIEW_TOKENS": f"alice:{token}", "APPSHELL_REVIEW_KEY_FILE": str(tmp_path / "review.key")},
    )
    began = time.monotonic()
    app = create_app(config)  # warms in the background, deriving keys up to the newest record
    page = TestClient(app).get(f"/session/{sid}", headers={"Authorization": f"Bearer {token}"}).text
    assert "beyond its seq — forged" in page
    assert time.monotonic() - began < 20


# -- at a terminal: each statement against the keys typed ------------------------------------------------

_TYPED_CASES = [
    # (keys typed, statements reported, flagged n)
    (b"print(1)\r", ["print(1)"], []),
    (b"print(2x\x7f)\r", ["print(2)"], []),  # backspace applied
    (b"for i in x:\r    print(i)\r\r", ["for i in x:\n    print(i)"], []),
    (b"for i in x:\rprint(i)\r\r", ["for i in x:\n    print(i)"], []),  # the shell's auto-indent
    (b"\x1b[200~print(3)\x1b[201~\r", ["print(3)"], []),  # a paste
    (b"\x1b[12;1Rprint(4)\r", ["print(4)"], []),  # the terminal's answer to the editor's cursor query
    (b"print(1)\r", ["print(count(Product))"], [1]),
    (b"a = 1\rb = 2\r", ["a = 1", "sql('delete from t')"], [2]),
    (b"pri\tnt(1)\r", ["print(1)"], []),  # tab: the line editor completed: not compared
    (b"\x1b[Aprint(1)\r", ["print(count(Product))"], []),  # an arrow key: history, not compared
    (b"print('no'\x03print(2)\r", ["print(2)"], []),  # Ctrl-C dropped the first line
    (b"x = (1,\r\x7f2)\r", ["x = (1,2)"], []),  # IPython: a backspace at a line's start joins it to the one above
    (b"x = (1,\r2)\r", ["x = (1,\n2)"], []),  # the plain shell's continuation line
    (b"print(1)\rsql('x')\r", ["print(1)", "print(1)"], [2]),  # reported as a line typed before it: in order
    (b"print(1)\rprint(2)\r", ["print(2)", "print(1)"], [2]),
]


@pytest.mark.parametrize(("keys", "sources", "flagged"), _TYPED_CASES)
def test_a_typed_statement_is_compared_with_the_keys(keys: bytes, sources: list[str], flagged: list[int]) -> None:
    from appshell.audit.review import NOT_TYPED, Session

    s = Session("s1")
    base = {"session": "s1", "hash": "h", "prev": "p", "seq": 1}
    s.add({**base, "event": "session_start", "by": "recorder", "terminal": {"relay": True}}, "log:1")
    s.add({**base, "event": "io", "by": "recorder", "t": 0.1, "stream": "i", "data": keys.decode()}, "log:2")
    for n, source in enumerate(sources, 1):
        s.add({**base, "event": "statement", "by": "session", "n": n, "source": source, "kind": "code"}, f"log:{n + 2}")
    got = [r["n"] for r, f in zip(s.records, s.record_flags()) if NOT_TYPED in f]
    assert got == flagged


def test_audit_show_says_where_the_keys_were_not_compared(shop: Path) -> None:
    """An arrow key in the session: `audit show` says the statements were not compared with the keys."""
    log = shop / "typed.jsonl"
    base = {"session": "s2", "hash": "h", "prev": "p", "seq": 1, "ts": "2026-12-02T10:00:00Z"}
    lines = [
        {**base, "event": "session_start", "by": "recorder", "terminal": {"relay": True}, "mode": "interactive"},
        {**base, "event": "io", "by": "recorder", "t": 0.1, "stream": "i", "data": "\x1b[Aprint(1)\r"},
        {**base, "event": "statement", "by": "session", "n": 1, "source": "print(2)", "kind": "code"},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))
    shown = run(["audit", "show", "s2", "--log", str(log)], cwd=shop, env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    assert "the statements were not compared with these keys: the line editor's own keys were used" in shown.stdout


@pytest.mark.parametrize("chunk", [7, 13, 50, 1 << 22])
def test_a_session_scan_reads_in_chunks_and_finds_every_line(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scan_session reads the log a chunk at a time (its memory stays small on a big log): whatever the chunk,
    every whole line of the session is found, a partial last line is left, and *stop* ends after its line."""
    from appshell.audit import review

    def rec(session: str, event: str, n: int) -> bytes:
        return json.dumps({"session": session, "event": event, "n": n}).encode() + b"\n"

    lines = [rec("aa", "session_start", 0), rec("bb", "session_start", 0), rec("aa", "statement", 1)]
    lines += [rec("bb", "statement", 1), rec("aa", "session_end", 2), rec("aa", "statement", 3)]
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"".join(lines) + b'{"session": "aa", "event": "statem')  # a torn last line
    monkeypatch.setattr(review, "_CHUNK", chunk)
    found, upto = review.scan_session(log, "aa", 0)
    assert found is not None and [r["n"] for r in found.records] == [0, 1, 2, 3]
    assert upto == sum(len(line) for line in lines)  # the torn line waits
    stop = sum(len(line) for line in lines[:4])  # the offset of aa's session_end
    found, upto = review.scan_session(log, "aa", 0, stop=stop)
    assert found is not None and [r["n"] for r in found.records] == [0, 1, 2]
    assert upto == stop + len(lines[4])
