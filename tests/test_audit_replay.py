"""`appshell audit replay` and `audit export --asciicast` (issue 22 item 3): a terminal session's recorded output,
played with its timing or written for asciinema, read from a log the real recorder wrote (a pty under pexpect).

The console script runs as a real process; the log is written by :func:`appshell.recorder.forked.record_forked`.
"""

from __future__ import annotations

import calendar
import shlex
import time
from pathlib import Path

import pytest
from support.docs import console_blocks
from test_audit_recorded_readers import ROOT, appshell, recorded_log, records, session_of

from appshell.audit.review import Session
from appshell.cli.audit_io import asciicast_header
from appshell.recorder.asciicast import loads
from appshell.recorder.replay import as_text


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("replay")
    return {b: recorded_log(root / b, b) for b in ("terminal-output", "terminal", "honest")}


def shown(log: Path) -> bytes:
    """The output bytes the recorder kept, in order."""
    return b"".join(data for _, stream, data in session_of(log).io_events() if stream == "o")


def test_replay_writes_the_recorded_bytes_at_their_pace(logs: dict[str, Path]) -> None:
    log = logs["terminal-output"]
    sid = session_of(log).id
    began = time.monotonic()
    fast = appshell("audit", "replay", "--log", str(log), sid[:6], "--speed", "100")
    assert fast.returncode == 0, fast.stderr
    assert fast.stdout == shown(log) and b"\x1b[31mran:" in fast.stdout  # the very bytes, escapes and all
    assert time.monotonic() - began < 10
    paced = appshell("audit", "replay", "--log", str(log), sid, "--speed", "0.5", "--idle-limit", "0.05")
    assert paced.returncode == 0 and paced.stdout == fast.stdout  # the 0.6 s pause cut to 0.05 s


def test_export_writes_asciicast_v2(logs: dict[str, Path], tmp_path: Path) -> None:
    log = logs["terminal-output"]
    s = session_of(log)
    target = tmp_path / "session.cast"
    done = appshell("audit", "export", "--log", str(log), s.id, "--asciicast", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert f"wrote {target}: asciicast v2".encode() in done.stderr
    head, events = loads(target.read_text(encoding="utf-8"))
    assert (head["version"], head["width"], head["height"]) == (2, 80, 24)  # no resize before the first output
    assert head["timestamp"] == calendar.timegm(
        time.strptime(s.start["ts"][:19], "%Y-%m-%dT%H:%M:%S")
    )  # the session_start's ts
    assert "".join(d for _, code, d in events if code == "o").encode() == shown(log)
    assert "print(count(Prodx\x7fuct))\r" in "".join(d for _, code, d in events if code == "i")
    times = [t for t, _, _ in events]
    assert times == sorted(times) and times[-1] - times[0] >= 0.5  # the pause in the session is kept
    to_stdout = appshell("audit", "export", "--log", str(log), s.id[:5], "--asciicast")
    assert to_stdout.returncode == 0 and to_stdout.stdout.decode() == target.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("behaviour", "args", "message"),
    [
        (
            "terminal",
            ("replay",),
            "has no recorded output (its profile did not record "
            "output) — set audit.record_output = true in the profile",
        ),
        ("terminal", ("export", "--asciicast"), "— set audit.record_output = true in the profile"),
        (
            "honest",
            ("replay",),
            "has no recorded output (its profile did not record output) — set audit.record_output = true",
        ),
        (
            "terminal-output",
            ("export",),
            "audit export needs a format — use appshell audit export SESSION --asciicast [-o FILE]",
        ),
        ("terminal-output", ("replay", "--speed", "0"), "--speed is 0 — give a positive factor"),
    ],
)
def test_what_cannot_be_played_is_one_line_naming_the_fix(
    logs: dict[str, Path], behaviour: str, args: tuple[str, ...], message: str
) -> None:
    log = logs[behaviour]
    done = appshell("audit", args[0], "--log", str(log), session_of(log).id, *args[1:])
    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.startswith("appshell: error: ") and message in err and err.count("\n") == 1, err


def test_an_unknown_session_is_the_error_audit_show_gives(logs: dict[str, Path]) -> None:
    done = appshell("audit", "replay", "--log", str(logs["terminal-output"]), "ffff0000")
    assert done.returncode == 2 and b"no single session matches 'ffff0000'" in done.stderr


@pytest.mark.parametrize(
    ("events", "size"),
    [
        ([], (80, 24)),
        ([(0.0, "r", b"120x40"), (0.1, "o", b"x")], (120, 40)),
        (
            [(0.0, "r", b"120x40"), (0.05, "r", b"100x30"), (0.1, "o", b"x"), (0.2, "r", b"90x20")],
            (100, 30),
        ),  # the last before output
        (
            [(0.1, "o", b"x"), (0.2, "r", b"90x20")],
            (80, 24),
        ),  # a resize after the first output does not size the player
        ([(0.0, "r", b"junk"), (0.1, "o", b"x")], (80, 24)),
    ],
)
def test_the_header_size_is_the_last_resize_before_the_first_output(
    events: list[tuple[float, str, bytes]], size: tuple[int, int]
) -> None:
    s = Session("s", start={"ts": "2026-11-24T01:02:03.456789Z"})
    head = asciicast_header(s, events)
    assert (head["width"], head["height"]) == size and head["timestamp"] == calendar.timegm((2026, 11, 24, 1, 2, 3))


def test_the_docs_example_runs(tmp_path: Path) -> None:
    """docs/audit.md's ```console recorder block, against a project whose log a real recorder kept (its ids put in)."""
    project = tmp_path / "project"
    (project / ".appshell").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[tool.appshell]\n")
    log = project / ".appshell" / "audit.jsonl"
    for behaviour in ("terminal-output", "terminal"):
        recorded_log(tmp_path / behaviour, behaviour, log=log)
    loud, quiet = (r["session"] for r in records(log) if r["event"] == "session_start")
    ids = {"2cf3af13": loud[:8], "613a2172141f423e": quiet, "613a2172": quiet[:8]}
    blocks = console_blocks((ROOT / "docs" / "audit.md").read_text(encoding="utf-8"), "recorder")
    assert len(blocks) == 1
    for command, expected, code in blocks[0]:
        for doc, real in ids.items():
            command, expected = command.replace(doc, real), expected.replace(doc, real)
        words = shlex.split(command)
        assert words[0] == "appshell"
        done = appshell(*words[1:], cwd=project)
        assert done.returncode == code, done.stderr
        printed = as_text([(0.0, "o", done.stdout)]) if "replay" in words and code == 0 else done.stdout.decode()
        assert printed + done.stderr.decode() == expected
    assert loads((project / "session.cast").read_text(encoding="utf-8"))[0]["version"] == 2
