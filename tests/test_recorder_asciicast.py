"""asciicast v2 export and import, replay and the review page's text: pure functions, table-driven."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from appshell.recorder import asciicast, replay
from appshell.recorder.relay import CAP_MARKER

CAP = CAP_MARKER.format(n=1000).encode()

# (events as the relay records them, the event lines asciicast.encode gives)
ENCODE = {
    "plain": ([(0.5, "o", b"hi")], ['[0.500000, "o", "hi"]']),
    "escapes": (
        [(0.25, "o", b"\x1b[1;31mred\x1b[0m\r\n\x07\t")],
        [r'[0.250000, "o", "\u001b[1;31mred\u001b[0m\r\n\u0007\t"]'],
    ),
    "quotes and backslash": ([(1, "i", b'say "x" \\ y')], [r'[1.000000, "i", "say \"x\" \\ y"]']),
    "utf-8 as text": ([(1, "o", "wörld ✓".encode())], ['[1.000000, "o", "wörld ✓"]']),
    "a character cut between two reads": (
        [(1, "o", b"caf\xc3"), (2, "o", b"\xa9!")],
        ['[1.000000, "o", "caf"]', '[2.000000, "o", "é!"]'],
    ),
    "a 4-byte character cut three ways": (
        [(1, "o", b"\xf0\x9f"), (2, "o", b"\x98"), (3, "o", b"\x80.")],
        ['[3.000000, "o", "😀."]'],
    ),
    "input and output decoded apart": (
        [(1, "o", b"\xc3"), (2, "i", b"x\xc3"), (3, "o", b"\xa9"), (4, "i", b"\xb6")],
        ['[2.000000, "i", "x"]', '[3.000000, "o", "é"]', '[4.000000, "i", "ö"]'],
    ),
    "cut at the very end": ([(1, "o", b"ab\xe2\x82")], ['[1.000000, "o", "ab"]', '[1.000000, "o", "\ufffd"]']),
    "not utf-8": ([(1, "o", b"\xff\xfeok")], ['[1.000000, "o", "\ufffd\ufffdok"]']),
    "the output cap marker": ([(7.5, "m", CAP)], ['[7.500000, "m", "output cap reached after 1000 bytes"]']),
    "a resize": ([(2, "r", b"100x40")], ['[2.000000, "r", "100x40"]']),
    "text passes as it is": ([(2, "o", "\u2028 line separator")], ['[2.000000, "o", "\u2028 line separator"]']),
    "microseconds": ([(0.1234567, "o", b"x")], ['[0.123457, "o", "x"]']),
}


@pytest.mark.parametrize("events, lines", ENCODE.values(), ids=ENCODE.keys())
def test_encode(events: list[asciicast.Event], lines: list[str]) -> None:
    assert list(asciicast.encode(events)) == lines


def test_header_has_the_required_fields_first_and_whole_seconds() -> None:
    head = asciicast.header(100, 40, timestamp=1764669600.75, env={"TERM": "xterm-256color"}, title="shop")
    assert head == {
        "version": 2,
        "width": 100,
        "height": 40,
        "timestamp": 1764669600,
        "title": "shop",
        "env": {"TERM": "xterm-256color"},
    }
    assert list(head)[:3] == ["version", "width", "height"]


def test_header_refuses_a_field_the_format_does_not_have() -> None:
    with pytest.raises(TypeError, match="'colour'.*idle_time_limit"):
        asciicast.header(80, 24, colour="green")


HEADER = '{"version": 2, "width": 80, "height": 24}'

# (file text, what the error names)
BAD = {
    "empty": ("", "line 1: the file is empty"),
    "version 1": ('{"version": 1, "width": 80, "height": 24, "stdout": []}', "line 1: version is 1"),
    "header not an object": ("[1, 2]", "line 1: the header is a JSON object"),
    "no height": ('{"version": 2, "width": 80}', "line 1: 'height'"),
    "width a string": ('{"version": 2, "width": "80", "height": 24}', "line 1: 'width'"),
    "timestamp a string": ('{"version": 2, "width": 80, "height": 24, "timestamp": "now"}', "'timestamp' is a int"),
    "not json": (HEADER + "\n[1.0, 'o', 'x']", "line 2: not JSON"),
    "two elements": (HEADER + '\n\n[1.0, "o"]', "line 3: an event is a"),
    "time a string": (HEADER + '\n["1.0", "o", "x"]', "line 2: an event's time is a number"),
}


@pytest.mark.parametrize("text, message", BAD.values(), ids=BAD.keys())
def test_decode_names_the_line_that_is_wrong(text: str, message: str) -> None:
    with pytest.raises(asciicast.AsciicastError, match=re.escape(message)):
        asciicast.loads(text)


def test_an_unknown_event_code_is_kept() -> None:
    # The spec: the list of codes is open; a reader passes through codes it does not know.
    _, events = asciicast.loads(HEADER + '\n[1.5, "x", {"a": 1}]\n')
    assert events == [(1.5, "x", '{"a": 1}')]


RECORDED: list[asciicast.Event] = [
    (0.0, "o", b"\x1b[1;32m>>> \x1b[0m"),
    (0.8, "i", b"print('h\xc3"),
    (0.85, "i", b"\xa9llo')\r"),
    (0.9, "o", b"print('h\xc3\xa9llo')\r\nh\xc3"),
    (0.95, "o", b"\xa9llo\r\n\xe2\x80\xa8\x1b[1;32m>>> \x1b[0m"),
    (2.0, "r", b"100x40"),
    (3.25, "o", b"x" * 10),
    (3.25, "m", CAP),
]


def test_round_trip() -> None:
    head = asciicast.header(80, 24, timestamp=1764669600, env={"TERM": "xterm-256color", "SHELL": "/bin/sh"})
    text = asciicast.dumps(head, RECORDED)

    read_head, events = asciicast.loads(text)
    assert read_head == head
    for code in ("o", "i"):
        expected = b"".join(d for _, c, d in RECORDED if c == code).decode()  # type: ignore[arg-type]
        assert "".join(d for _, c, d in events if c == code) == expected
    assert [e for e in events if e[1] in "mr"] == [(2.0, "r", "100x40"), (3.25, "m", CAP.decode())]
    assert [e[0] for e in events] == sorted(e[0] for e in events)

    out = io.StringIO()
    asciicast.write(out, head, RECORDED)
    assert out.getvalue() == text
    assert asciicast.read(io.StringIO(text)) == (read_head, events)


def test_the_file_is_what_the_asciicast_v2_spec_describes() -> None:
    """Checked line by line against docs.asciinema.org/manual/asciicast/v2 (as of asciinema 2.x)."""
    head = asciicast.header(80, 24, timestamp=1764669600, idle_time_limit=2.0, title="shop", env={"TERM": "xterm"})
    text = asciicast.dumps(head, RECORDED)
    data = text.encode("utf-8")  # newline-delimited JSON in UTF-8, each line ended by "\n"
    assert data.endswith(b"\n") and not data.endswith(b"\n\n")
    first, *rest = text[:-1].split("\n")

    parsed: dict[str, Any] = json.loads(first)  # the header: a JSON object, version 2, integer size
    assert parsed["version"] == 2 and type(parsed["width"]) is int and type(parsed["height"]) is int
    assert type(parsed["timestamp"]) is int and isinstance(parsed["idle_time_limit"], float)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed["env"].items())

    previous = 0.0
    for line in rest:  # each event: a 3-element array [time, code, data], time in seconds from the start
        assert re.fullmatch(r'\[\d+\.\d{6}, "[oimr]", ".*"\]', line), line
        t, code, payload = json.loads(line)
        assert isinstance(t, float) and t >= previous
        previous = t
        assert isinstance(payload, str)
        if code == "r":
            assert re.fullmatch(r"\d+x\d+", payload)  # "COLSxROWS"
        assert not re.search(r"[\x00-\x1f]", line)  # control characters travel as JSON escapes


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


PLAY = {
    "real time": (1.0, None, [0.5, 1.0, 10.0]),
    "twice as fast": (2.0, None, [0.25, 0.5, 5.0]),
    "idle cut to 2 s": (1.0, 2.0, [0.5, 1.0, 2.0]),
    "fast and idle cut": (4.0, 2.0, [0.125, 0.25, 0.5]),
}


@pytest.mark.parametrize("speed, max_idle, sleeps", PLAY.values(), ids=PLAY.keys())
def test_play_keeps_the_timing(speed: float, max_idle: float | None, sleeps: list[float]) -> None:
    events: list[asciicast.Event] = [
        (0.0, "o", b"$ "),
        (0.5, "i", b"ls\r"),
        (0.5, "o", b"ls\r\n"),
        (1.5, "o", "caf\u00e9\r\n"),
        (11.5, "m", CAP),
        (11.5, "o", b"\xe2\x9c\x93"),
    ]
    clock, out = FakeClock(), io.BytesIO()
    took = replay.play(events, out, speed=speed, max_idle=max_idle, sleep=clock.sleep, clock=clock)
    assert out.getvalue() == "$ ls\r\ncafé\r\n✓".encode()
    assert clock.sleeps == sleeps
    assert took == pytest.approx(sum(sleeps))


def test_play_refuses_a_speed_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="positive factor"):
        replay.play([], io.BytesIO(), speed=0)


# (output chunks, the text a reviewer reads)
TEXT = {
    "colours dropped": ([b"\x1b[1;31mred\x1b[0m plain\r\n"], "red plain\n"),
    "carriage return overwrites": ([b"50%\r100%\r\n"], "100%\n"),
    "backspace and retype": ([b">>> prnt\b\b\b\x1b[Krint(1)\r\n"], ">>> print(1)\n"),
    "erase the whole line": ([b"junk\x1b[2K\rclean\r\n"], "clean\n"),
    "cursor left and column": ([b"abcdef\x1b[3Dx\x1b[1Gz\r\n"], "zbcxef\n"),
    "title (OSC) dropped": ([b"\x1b]0;title\x07text\x1b]2;t\x1b\\!\r\n"], "text!\n"),
    "an escape cut between reads": ([b"a\x1b[3", b"1mb\x1b", b"]0;t", b"\x07c\r\n"], "abc\n"),
    "a character cut between reads": ([b"caf\xc3", b"\xa9\r\n"], "café\n"),
    "tab to the next stop": ([b"a\tb\r\n"], "a       b\n"),
    "bell and charset switch dropped": ([b"\x07\x1b(Bok\r\n"], "ok\n"),
    "cursor up and screen clear dropped": ([b"one\r\n\x1b[1A\x1b[2Jtwo\r\n"], "one\ntwo\n"),
    "last line without newline": ([b"done"], "done\n"),
    "nothing": ([], ""),
}


@pytest.mark.parametrize("chunks, text", TEXT.values(), ids=TEXT.keys())
def test_as_text(chunks: list[bytes], text: str) -> None:
    events: list[asciicast.Event] = [(float(i), "o", c) for i, c in enumerate(chunks)]
    events.insert(0, (0.0, "i", b"ignored\r"))
    assert replay.as_text(events) == text


def test_as_text_shows_the_cap_marker_as_a_line() -> None:
    events: list[asciicast.Event] = [(0.0, "o", b"xxxx"), (1.0, "m", CAP)]
    assert replay.as_text(events) == "xxxx\n[output cap reached after 1000 bytes]\n"


def test_as_text_reads_what_asciicast_gives_back() -> None:
    _, events = asciicast.loads(asciicast.dumps(asciicast.header(80, 24), RECORDED))
    assert replay.as_text(events) == (
        ">>> print('héllo')\nhéllo\n\u2028>>> xxxxxxxxxx\n[output cap reached after 1000 bytes]\n"
    )
