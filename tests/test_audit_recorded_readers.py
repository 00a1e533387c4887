"""Readers of a log kept by the recorder process (issue 22 items 3 and 6): what the session reported is flagged where it
is odd (a statement that is not the input the recorder read, a refused report, a channel closed early, a result without
its statement), the session's word is marked as such, and a terminal session shows what was typed.

The logs are written by the real :func:`appshell.recorder.forked.record_forked` (a real Auditor and FileSink, a forked
child reporting over the real channel, a real pty under pexpect); ``audit show`` runs as the real console script.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pexpect
import pytest

from appshell.audit.review import NOT_THE_INPUT, Session, field_bytes, typed_lines, unescape

ROOT = Path(__file__).resolve().parents[1]
APPSHELL = str(Path(sys.executable).with_name("appshell"))

# A recorder around a forked session that reports as appshell's journal does; *behaviour* picks what it reports.
DRIVER = textwrap.dedent("""
    import hashlib, json, sys, time
    from pathlib import Path
    from appshell.audit.auditor import Auditor
    from appshell.audit.sinks import FileSink
    from appshell.config.redact import Redactor
    from appshell.recorder.forked import record_forked

    log, behaviour, program = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    terminal = behaviour.startswith("terminal")

    def main(channel):
        channel.request("session_start", {"app": "shop", "database": "sqlite:///shop.db"})
        if terminal:
            print("\\x1b[1mshop>\\x1b[0m ", end="", flush=True)
            typed = input()
            time.sleep(0.6)  # a pause the replay keeps (or cuts)
            channel.request("statement", {"n": 1, "source": typed, "kind": "cell"})
            print("\\x1b[31mran:\\x1b[0m", typed, flush=True)
        elif behaviour == "refused":
            try:
                channel.request("statement", {"n": 1, "source": program, \
"kind": "command", "by": "recorder"})  # a field it may not set
            except Exception as refused:
                print(refused, file=sys.stderr)
            channel.request("statement", {"n": 1, "source": program, "kind": "command"})
        elif behaviour == "forged":
            channel.request("statement", {"n": 1, "source": "print(count(Product))", "kind": "command"})
        else:
            channel.request("statement", {"n": 1, "source": program, "kind": "command"})
        channel.request("result", {"n": 1, "status": "ok", "error": None, "duration_ms": 1.0, "sql": []})
        channel.request("session_end", {"status": "ok"})
        return 0

    given = None if terminal else {"kind": "command", "text": program, \
"sha256": hashlib.sha256(program.encode()).hexdigest()}
    start = {"mode": "interactive" if terminal else "command", "user": "deploy", "host": "web-1", \
"profile": "production",
             "argv": [] if terminal else ["-c", program], "input": given}
    sys.exit(record_forked(main, lambda: Auditor([FileSink(log)], required=True, redact=Redactor()), start,
                           terminal=terminal, record_output=behaviour == "terminal-output"))
""")
PROGRAM = "sql('update products set stock = 0'); commit()"
TYPED = "print(count(Prodx\x7fuct))"  # a typo rubbed out with the backspace key


def recorded_log(folder: Path, behaviour: str, program: str = PROGRAM, log: Path | None = None) -> Path:
    """A log of one session kept by a real recorder (*log*, else audit.jsonl
    in *folder*): a command (``-c``) session, or at a pty under pexpect."""
    folder.mkdir(parents=True, exist_ok=True)
    driver, log = folder / "driver.py", log or folder / "audit.jsonl"
    driver.write_text(DRIVER)
    if not behaviour.startswith("terminal"):
        done = subprocess.run(
            [sys.executable, str(driver), str(log), behaviour, program], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return log
    child = pexpect.spawn(sys.executable, [str(driver), str(log), behaviour, ""], encoding="utf-8", timeout=30)
    child.expect("shop>")
    child.send(TYPED + "\r")
    child.expect("ran:")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    return log


def records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def appshell(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    """The real console script. Until cli/main.py's AUDIT_VERBS
    names replay and export, the same main() with them added."""
    from appshell.cli.main import AUDIT_VERBS

    if args[:1] == ("audit",) and args[1] in ("replay", "export") and args[1] not in AUDIT_VERBS:
        wired = (
            "import importlib; from appshell.cli.audit_io import VERBS; "
            "cli = importlib.import_module('appshell.cli.main'); "
            "cli.AUDIT_VERBS.update(VERBS); cli.entry()"
        )
        command = [sys.executable, "-c", wired, *args]
    else:
        command = [APPSHELL, *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPSHELL_")} | {"COLUMNS": "200"}
    return subprocess.run(command, capture_output=True, timeout=60, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("recorded")
    return {b: recorded_log(root / b, b) for b in ("honest", "forged", "refused", "terminal-output", "terminal")}


def session_of(log: Path) -> Session:
    s = Session(records(log)[0]["session"])
    for i, r in enumerate(records(log), 1):
        s.add(r, f"{log}:{i}")
    return s


def show(log: Path, *extra: str) -> str:
    done = appshell("audit", "show", "--log", str(log), session_of(log).id[:8], *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


# -- program modes: the statement is the input the recorder read --------------------------------------------------


def test_an_honest_command_session_is_not_flagged_and_marks_the_sessions_word(logs: dict[str, Path]) -> None:
    s = session_of(logs["honest"])
    assert s.flags() == []
    assert s.reported_by_session() == ["app", "database"]
    out = show(logs["honest"])
    assert "FLAGGED" not in out
    assert "app shop (reported by the session)" in out and "database sqlite:///shop.db (reported by the session)" in out
    assert "profile production  " in out  # the recorder's own field: no mark
    assert (
        "input command, read by the recorder before the session ran: sha256 "
        f"{hashlib.sha256(PROGRAM.encode()).hexdigest()}" in out
    )


def test_a_statement_that_is_not_the_input_the_recorder_read_is_flagged(logs: dict[str, Path]) -> None:
    s = session_of(logs["forged"])
    assert len(s.flags()) == 1 and NOT_THE_INPUT in s.flags()[0] and ":2: statement" in s.flags()[0]
    out = show(logs["forged"])
    assert "FLAGGED — 1 thing(s)" in out and NOT_THE_INPUT in out
    assert "print(count(Product))" in out  # shown, not hidden
    listed = json.loads(show(logs["forged"], "--json"))
    assert any(NOT_THE_INPUT in f for f in listed["flags"])


def test_a_refused_report_is_flagged_with_its_reason(logs: dict[str, Path]) -> None:
    s = session_of(logs["refused"])
    refused = [r for r in s.records if r["event"] == "refused_report"]
    assert len(refused) == 1 and refused[0]["by"] == "recorder"
    assert s.flags() == [
        f"{s.where[s.records.index(refused[0])]}: refused_report — the recorder refused a statement report: "
        f"it sets by, which only the recorder sets"
    ]
    out = show(logs["refused"])
    assert "the recorder refused a statement report: it sets by" in out
    assert "── refused_report" in out  # the record itself is shown too
    tail = appshell("audit", "tail", "--log", str(logs["refused"]))
    assert b"FLAGGED: 1 odd record" in tail.stdout


def test_the_first_top_level_statement_is_compared_byte_for_byte_with_undecodable_input() -> None:
    raw = b"print('\xff')"  # not UTF-8: both records keep it as \xff with "undecodable"
    escaped = (
        raw.decode("utf-8", "surrogateescape")
        .encode("utf-8", "surrogateescape")
        .replace(b"\\", b"\\\\")
        .decode("utf-8", "backslashreplace")
    )
    start = {
        "event": "session_start",
        "input": {"kind": "stdin", "text": escaped, "sha256": "x"},
        "undecodable": ["input"],
    }
    nested = {"event": "statement", "n": 1, "source": "something else", "parent": 0}
    same = {"event": "statement", "n": 2, "source": escaped, "undecodable": ["source"]}
    other = {"event": "statement", "n": 2, "source": escaped}  # the same characters, but not the bytes: \x5cxff
    for statement, flagged in ((same, False), (other, True)):
        s = Session("s")
        for r in (start, nested, statement):
            s.add({**r, "hash": "h", "seq": 1}, "here")
        assert any(NOT_THE_INPUT in f for f in s.flags()) is flagged
    assert field_bytes(same, "source", escaped) == raw


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("plain", b"plain"),
        ("a\\\\b", b"a\\b"),
        ("\\xff\\xfe", b"\xff\xfe"),
        ("\\\\xff", b"\\xff"),  # a typed backslash before xff: not a byte
        ("é\\x80", "é".encode() + b"\x80"),
    ],
)
def test_unescape_undoes_encodable(text: str, raw: bytes) -> None:
    assert unescape(text) == raw


def test_a_result_without_its_statement_and_a_closed_channel_are_flagged() -> None:
    s = Session("s")
    chained = {"hash": "h", "seq": 1}
    for r in (
        {"event": "session_start"},
        {"event": "result", "n": 4, "status": "ok"},
        {
            "event": "channel_closed",
            "reason": "the session left the recorder's acknowledgements unread for 5 s",
            "by": "recorder",
        },
        {"event": "session_end", "status": "ok"},
    ):
        s.add({**r, **chained}, f"log:{len(s.records) + 1}")
    assert s.flags() == [
        "log:2: result — a result with no statement before it",
        "log:3: channel_closed — the session's channel closed early: the session left the recorder's acknowledgements "
        "unread for 5 s",
    ]


# -- terminal sessions: what was typed ----------------------------------------------------------------------------


def test_audit_show_gives_what_was_typed_with_backspaces_applied(logs: dict[str, Path]) -> None:
    quiet = show(logs["terminal"])
    assert "── terminal: what was typed" in quiet
    typed = [
        line
        for line in quiet.splitlines()
        if "print(count(Product))" in line and line.strip().endswith("s  print(count(Product))")
    ]
    assert len(typed) == 1, quiet  # the line as typed, Prodx<BS> applied, with its time
    assert "output not recorded (audit.record_output = true in the profile records it)" in quiet
    assert session_of(logs["terminal"]).start["terminal"] == {"relay": True, "output_recorded": False}
    loud = show(logs["terminal-output"])
    sid = session_of(logs["terminal-output"]).id
    assert f"appshell audit replay {sid} plays it" in loud and f"appshell audit export {sid} --asciicast" in loud
    assert "\x1b" not in loud  # nothing recorded drives the reviewer's terminal


@pytest.mark.parametrize(
    ("keys", "lines"),
    [
        ([b"print(1)\r"], ["print(1)"]),
        ([b"prinz\x7ft(1)\r"], ["print(1)"]),  # DEL, the backspace key
        ([b"ab\x08\x08xy\n"], ["xy"]),  # BS
        ([b"a\r\nb\rc\n\n"], ["a", "b", "c", ""]),  # CR LF is one end; CR and LF each end a line
        ([b"x\x1b[A\x1b[D\x1bOPy\r"], ["xy"]),  # arrow keys, F1: dropped
        ([b"\x1b[200~pasted\x1b[201~\r"], ["pasted"]),  # bracketed paste
        ([b"ab\x1b", b"[Dc\r"], ["abc"]),  # an escape sequence cut between two reads
        ([b"\x03", b"\x04"], ["^C^D"]),  # control keys shown, not applied
        ([b"\x7f\x7fok"], ["ok"]),  # a backspace on an empty line: nothing to rub out; the last line without its end
        ([b"caf\xc3", b"\xa9\r"], ["café"]),  # a character cut between two reads
        ([b"\xff\r"], ["\\xff"]),  # not UTF-8: shown as its byte
    ],
)
def test_typed_lines(keys: list[bytes], lines: list[str]) -> None:
    assert [line for _, line in typed_lines([(float(i), "i", k) for i, k in enumerate(keys)])] == lines


def test_typed_lines_take_the_time_of_their_first_key_and_ignore_output() -> None:
    events = [
        (0.5, "o", b"shop> "),
        (1.0, "i", b"pri"),
        (2.0, "i", b"nt(1)\r"),
        (3.0, "r", b"80x24"),
        (4.0, "i", b"\r"),
        (5.0, "i", b"x"),
    ]
    assert typed_lines(events) == [(1.0, "print(1)"), (4.0, ""), (5.0, "x")]


# -- the review page ----------------------------------------------------------------------------------------------


def _page(log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    pytest.importorskip("starlette")
    from test_review_web import ALICE, bearer, client_for

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "reviewer-config"))
    response = client_for(["--log", str(log)]).get(f"/session/{session_of(log).id}", headers=bearer(ALICE))
    assert response.status_code == 200, response.text
    return response.text


def test_the_review_page_shows_the_output_as_escaped_text(
    logs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    html = _page(logs["terminal-output"], tmp_path, monkeypatch)
    assert "Terminal: what the operator saw" in html
    pre = html.split('<pre class="transcript">', 1)[1].split("</pre>", 1)[0]
    assert "ran: print(count(Product))" in pre and "shop&gt;" in pre  # colours dropped, text escaped
    assert "\x1b" not in html and "[31m" not in pre
    assert "app (reported by the session)" in html


def test_the_review_page_shows_what_was_typed_and_the_flags(
    logs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    html = _page(logs["terminal"], tmp_path, monkeypatch)
    assert "Terminal: what was typed" in html and "s  print(count(Product))" in html
    forged = _page(logs["forged"], tmp_path, monkeypatch)
    assert NOT_THE_INPUT in forged
    refused = _page(logs["refused"], tmp_path, monkeypatch)
    assert "the recorder refused a statement report" in refused
    listed = refused.split('id="other-records"', 1)[1].split("</section>", 1)[0]
    assert (
        "<code>refused_report</code>" in listed and "which only the recorder sets" in listed
    )  # the record itself, as written


def test_a_record_not_by_its_writer_is_flagged_where_a_recorder_kept_the_session(logs: dict[str, Path]) -> None:
    honest = records(logs["honest"])
    forged = [
        *honest[:-1],
        {**honest[1], "n": 2, "by": "recorder", "seq": 99},
        {**honest[-1], "by": "session", "seq": 100},
    ]
    s = Session(honest[0]["session"])
    for i, r in enumerate(forged, 1):
        s.add(r, f"log:{i}")
    assert [f for f in s.flags() if "in a session a recorder kept" in f] == [
        "log:4: statement — by recorder, in a session a recorder kept: statement records are by session, "
        "a second top-level command statement: the program the recorder read is one statement",
        "log:5: session_end — by session, in a session a recorder kept: session_end records are by recorder",
    ]
    assert session_of(logs["honest"]).flags() == []
