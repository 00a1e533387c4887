"""The pty relay, end to end: a real terminal (pexpect), a driver process running `Relay`, a child on the pty.

The driver below is what the recorder does at a terminal; the child is a `python -c` program that reads
lines with `input()` and answers. Each test reads what the driver recorded (a JSON file it writes at
the end, with the monotonic time of every `record` call) and what the child saw (a log it writes as
it reads each line); CLOCK_MONOTONIC is one clock for every process on the machine.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pexpect = pytest.importorskip("pexpect")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux ptys (EIO, pidfd)")

CHILD = r"""
import os, sys, time
log = open(sys.argv[1], "a", buffering=1)
print(f"pid:{os.getpid()}")
while True:
    try:
        line = input("> ")
    except KeyboardInterrupt:
        print("got-sigint")
        continue
    except EOFError:
        break
    log.write(f"{time.monotonic()} {line!r}\n")
    if line == "quit":
        break
    elif line == "size":
        size = os.get_terminal_size()
        print(f"size:{size.columns}x{size.lines}")
    elif line == "detach":  # a process that outlives the child and keeps the pty open
        import subprocess
        print("grandchild:%d" % subprocess.Popen(["sleep", "30"]).pid)
        print("bye")
        break
    elif line.startswith("channel "):
        os.write(int(os.environ["CHANNEL_FD"]), line[8:].encode())
        print("sent")
    elif line == "big":
        print("x" * 5000)
        print("END")
    else:
        print("echo:" + line)
"""

DRIVER = r"""
import json, os, signal, subprocess, sys, time
from appshell.recorder.relay import Relay, child_kwargs

out = sys.argv[1]
with open(sys.argv[2]) as f:
    options = json.load(f)
events = []

def record(t, code, data):
    if options.get("refuse") and options["refuse"].encode() in data:
        raise RuntimeError("the record refused this input")
    events.append([t, code, data.decode("utf-8", "replace"), time.monotonic()])

child = [sys.executable, "-c", options["child"], options["log"]]
result = {"events": events, "error": None}
with open(out + ".pid", "w") as f:
    f.write(str(os.getpid()))
proc = None
try:
    with Relay(record, record_output=options.get("output", False), output_cap=options.get("cap")) as relay:
        channel, theirs = os.pipe()  # stands for the session's channel to the recorder

        def on_channel():
            message = os.read(channel, 100)
            result.setdefault("channel", []).append(message.decode())
            if message == b"stop" or not message:
                relay.stop()

        env = dict(os.environ, CHANNEL_FD=str(theirs))
        start = lambda slave: subprocess.Popen(child, **child_kwargs(slave), pass_fds=[theirs], env=env)
        proc = relay.start(start)
        os.close(theirs)
        relay.watch(channel, on_channel)
        relay.run(pid=proc.pid)
    result["signal"] = relay.signal
except RuntimeError as e:
    result["error"] = str(e)
finally:
    if proc is not None:
        result["rc"] = proc.wait(timeout=10)
    with open(out, "w") as f:
        json.dump(result, f)
"""


class Session:
    """A driver under a real terminal, with `stty -g` taken just before and just after it."""

    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.dir = tmp_path
        driver = tmp_path / "driver.py"
        driver.write_text(DRIVER)
        self.out = tmp_path / "out.json"
        self.log = tmp_path / "child.log"
        (tmp_path / "options.json").write_text(json.dumps({"child": CHILD, "log": str(self.log), **options}))
        script = (
            f"stty -g > {tmp_path}/stty.before; "
            f"{sys.executable} {driver} {self.out} {tmp_path}/options.json; "
            f"echo driver-exit:$?; stty -g > {tmp_path}/stty.after"
        )
        self.term = pexpect.spawn("/bin/sh", ["-c", script], dimensions=(24, 80), timeout=10, encoding="utf-8")
        self.term.expect(r"pid:(\d+)")
        self.child_pid = int(self.term.match.group(1))
        self.term.expect("> ")

    def line(self, text: str, answer: str) -> None:
        self.term.sendline(text)
        self.term.expect(answer)

    def finish(self) -> dict[str, Any]:
        self.term.expect(r"driver-exit:(\d+)")
        self.exit = int(self.term.match.group(1))
        self.term.expect(pexpect.EOF)
        self.term.close()
        result: dict[str, Any] = json.loads(self.out.read_text())
        return result

    def quit(self) -> dict[str, Any]:
        self.term.sendline("quit")
        return self.finish()

    def driver_pid(self) -> int:
        return int(Path(f"{self.out}.pid").read_text())

    def stty(self) -> tuple[str, str]:
        return (self.dir / "stty.before").read_text(), (self.dir / "stty.after").read_text()

    def child_lines(self) -> list[tuple[float, str]]:
        lines = []
        for row in self.log.read_text().splitlines():
            when, text = row.split(" ", 1)
            lines.append((float(when), ast.literal_eval(text)))  # the child wrote repr(line)
        return lines


def typed(result: dict[str, Any]) -> str:
    return "".join(e[2] for e in result["events"] if e[1] == "i")


def shown(result: dict[str, Any]) -> str:
    return "".join(e[2] for e in result["events"] if e[1] == "o")


def test_typed_lines_reach_the_child_and_are_recorded_before_it_reads_them(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.line("hello", "echo:hello")
    session.line("wörld ünïcode", "echo:wörld ünïcode")
    result = session.quit()

    assert result["rc"] == 0 and session.exit == 0
    assert typed(result) == "hello\nwörld ünïcode\nquit\n"
    read_at = dict((text, when) for when, text in session.child_lines())
    for text in ("hello", "wörld ünïcode", "quit"):
        recorded_at = next(e[3] for e in result["events"] if e[1] == "i" and text + "\n" in e[2])
        assert recorded_at < read_at[text], f"{text!r} was read by the child before it was recorded"
    times = [e[0] for e in result["events"]]
    assert times == sorted(times)


def test_input_is_flushed_after_a_short_quiet_and_at_each_line_end(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.term.send("abc")
    time.sleep(0.3)  # longer than the 50 ms deadline: "abc" is recorded before the line ends
    session.line("", "echo:abc")
    session.term.send("one\ntwo\n")  # a paste: one batch, all of it recorded before the child reads
    session.term.expect("echo:two")
    result = session.quit()

    inputs = [e[2] for e in result["events"] if e[1] == "i"]
    assert inputs[0] == "abc" and inputs[1] == "\n"
    assert typed(result) == "abc\none\ntwo\nquit\n"
    first_read = min(when for when, text in session.child_lines() if text == "one")
    recorded = next(e[3] for e in result["events"] if e[1] == "i" and "one" in e[2])
    assert recorded < first_read


@pytest.mark.parametrize("output", [True, False], ids=["output-on", "output-off"])
def test_output_is_recorded_only_when_asked(tmp_path: Path, output: bool) -> None:
    session = Session(tmp_path, output=output)
    session.line("hello", "echo:hello")
    result = session.quit()

    if output:
        assert "pid:" in shown(result) and "echo:hello\r\n" in shown(result)
        echo = next(e for e in result["events"] if e[1] == "o" and "echo:hello" in e[2])
        line = next(e for e in result["events"] if e[1] == "i" and "hello" in e[2])
        assert line[0] < echo[0] and line[3] < echo[3]
    else:
        assert {e[1] for e in result["events"]} == {
            "r",
            "i",
        }  # the size at the start, then what was typed; nothing shown
        assert result["events"][0][1] == "r" and result["events"][0][0] == 0.0


def test_output_cap_is_one_marker_and_the_relay_goes_on(tmp_path: Path) -> None:
    session = Session(tmp_path, output=True, cap=1000)
    session.line("big", "END")
    session.line("after", "echo:after")  # the relay still relays
    result = session.quit()

    assert len(shown(result).encode()) == 1000
    markers = [e for e in result["events"] if e[1] == "m"]
    assert [m[2] for m in markers] == ["output cap reached after 1000 bytes"]
    assert all(e[1] != "o" for e in result["events"] if e[0] > markers[0][0])
    assert typed(result) == "big\nafter\nquit\n"


def test_window_size_reaches_the_child_and_is_recorded(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.line("size", "size:80x24")
    session.term.setwinsize(40, 100)
    for _ in range(20):  # SIGWINCH and the typed line race; the size is copied within a step
        session.term.sendline("size")
        session.term.expect(r"size:(\d+x\d+)")
        if session.term.match.group(1) == "100x40":
            break
        time.sleep(0.05)
    assert session.term.match.group(1) == "100x40"
    result = session.quit()

    assert ["r", "100x40"] in [e[1:3] for e in result["events"]]


def test_ctrl_c_reaches_the_child_as_sigint(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.term.sendcontrol("c")
    session.term.expect("got-sigint")
    session.line("still here", "echo:still here")
    result = session.quit()

    assert result["rc"] == 0
    assert "\x03" in typed(result)


def test_a_killed_child_ends_the_relay_cleanly(tmp_path: Path) -> None:
    session = Session(tmp_path, output=True)
    session.line("hello", "echo:hello")
    os.kill(session.child_pid, signal.SIGKILL)
    result = session.finish()

    assert result["rc"] == -signal.SIGKILL
    assert session.exit == 0 and result["error"] is None and result["signal"] is None
    before, after = session.stty()
    assert before == after


def test_the_terminal_is_restored_after_a_normal_end(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.line("hello", "echo:hello")
    session.quit()
    before, after = session.stty()
    assert before == after


def test_the_terminal_is_restored_when_the_record_refuses_and_the_line_never_reaches_the_child(
    tmp_path: Path,
) -> None:
    session = Session(tmp_path, refuse="boom")
    session.line("hello", "echo:hello")
    session.term.sendline("boom")
    result = session.finish()

    assert result["error"] == "the record refused this input"
    assert [text for _, text in session.child_lines()] == ["hello"]
    before, after = session.stty()
    assert before == after


def test_sigterm_to_the_recorder_ends_the_relay_and_restores_the_terminal(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.line("hello", "echo:hello")
    os.kill(session.driver_pid(), signal.SIGTERM)
    result = session.finish()

    assert result["signal"] == signal.SIGTERM
    assert result["rc"] == -signal.SIGHUP  # the master closed: the child's terminal hung up
    before, after = session.stty()
    assert before == after


def test_one_loop_serves_the_channel_and_its_callback_can_stop_the_relay(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.line("channel hello", "sent")
    session.line("after", "echo:after")
    session.term.sendline("channel stop")
    result = session.finish()

    assert result["channel"] == ["hello", "stop"]
    assert result["rc"] == -signal.SIGHUP  # run() returned; leaving the relay hung up the child's terminal
    before, after = session.stty()
    assert before == after


def test_a_process_left_holding_the_pty_does_not_keep_the_relay_open(tmp_path: Path) -> None:
    session = Session(tmp_path, output=True)
    session.term.sendline("detach")
    session.term.expect(r"grandchild:(\d+)")
    grandchild = int(session.term.match.group(1))
    try:
        began = time.monotonic()
        result = session.finish()
        assert time.monotonic() - began < 5  # the relay lingered 0.2 s, not the grandchild's 30 s
        assert result["rc"] == 0
        assert "bye\r\n" in shown(result)  # the child's last output was still recorded
    finally:
        try:
            os.kill(grandchild, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the terminal's hang-up ended it
