"""Play a recorded session's output in a terminal, or give it as plain text for the review page.

``play`` writes the ``"o"`` events' bytes as they were recorded, at their pace (``speed`` times
faster, pauses cut to ``max_idle`` like asciinema's ``--idle-time-limit``).

``as_text`` renders minimally, one line at a time: text, CR, BS, TAB and the escape sequences that
edit the current line (cursor left/right/column, erase in line) are applied, so what a line editor
typed, rubbed out and retyped reads as the final line; every other escape sequence (colours, cursor
up, clear screen, titles) is dropped, so a full-screen redraw may show a line twice. A ``"m"``
marker (such as the output cap) is a line of its own: ``[label]``.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable, Iterable
from typing import IO

__all__ = ["play", "as_text"]

Event = tuple[float, str, bytes | str]


def _as_bytes(data: bytes | str) -> bytes:
    return data if isinstance(data, bytes) else data.encode("utf-8")


def play(
    events: Iterable[Event],
    out: IO[bytes],
    speed: float = 1.0,
    max_idle: float | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Write the output events to ``out`` with their timing; return the seconds the playback took."""
    if speed <= 0:
        raise ValueError(f"speed is {speed}; it is a positive factor (2 = twice as fast)")
    start = clock()
    previous = 0.0
    due = 0.0  # seconds into the playback at which the next event is written
    for t, code, data in events:
        if code != "o":
            continue
        gap = max(0.0, t - previous)
        previous = t
        if max_idle is not None:
            gap = min(gap, max_idle)
        due += gap / speed
        # Sleep to a deadline, not for the gap: the time spent writing does not add up.
        wait = start + due - clock()
        if wait > 0:
            sleep(wait)
        out.write(_as_bytes(data))
        out.flush()
    return clock() - start


# CSI: ESC [ parameters intermediates final. OSC/DCS/SOS/PM/APC run until BEL or ST (ESC \).
_CSI = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])")
_STRING = re.compile(r"\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?")  # another ESC ends it, as in xterm
_OTHER_ESC = re.compile(r"\x1b[ -/]*[0-~]")
_PLAIN = re.compile(r"[^\x00-\x1f\x7f]+")
_UNFINISHED = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|[\]PX^_][^\x07\x1b]*\x1b?|[ -/]*)\Z")


class _Lines:
    """The current line as a list of characters and a cursor column; finished lines as text."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.line: list[str] = []
        self.col = 0

    def put(self, text: str) -> None:
        line, col = self.line, self.col
        if col > len(line):
            line.extend(" " * (col - len(line)))
        line[col : col + len(text)] = text
        self.col = col + len(text)

    def newline(self) -> None:
        self.done.append("".join(self.line).rstrip())
        self.line = []
        self.col = 0

    def control(self, char: str) -> None:
        if char == "\n":
            self.newline()
        elif char == "\r":
            self.col = 0
        elif char == "\b":
            self.col = max(0, self.col - 1)
        elif char == "\t":
            self.put(" " * (8 - self.col % 8))
        # BEL, SO/SI and the rest change nothing on the line

    def csi(self, params: str, final: str) -> None:
        n = int(params) if params.isdigit() else 0
        if final == "K":
            if n == 0:
                del self.line[self.col :]
            elif n == 1:
                self.line[: self.col] = " " * min(self.col, len(self.line))
            elif n == 2:
                self.line = [" "] * min(self.col, len(self.line))
        elif final == "D":
            self.col = max(0, self.col - max(n, 1))
        elif final == "C":
            self.col += max(n, 1)
        elif final == "G":
            self.col = max(n, 1) - 1
        # colours (m), cursor up/down, screen clears, modes: dropped (see the module docstring)

    def feed(self, text: str) -> None:
        i, end = 0, len(text)
        while i < end:
            m = _PLAIN.match(text, i)
            if m:
                self.put(m.group())
                i = m.end()
                continue
            char = text[i]
            if char != "\x1b":
                self.control(char)
                i += 1
                continue
            m = _CSI.match(text, i)
            if m:
                self.csi(m.group(1), m.group(2))
                i = m.end()
                continue
            m = _STRING.match(text, i) or _OTHER_ESC.match(text, i)
            i = m.end() if m else i + 1  # an ESC that starts nothing known is dropped

    def text(self) -> str:
        lines = [*self.done, "".join(self.line).rstrip()] if self.line else self.done
        return "\n".join(lines) + ("\n" if lines else "")


def as_text(events: Iterable[Event]) -> str:
    """The session's output as plain text (rendered minimally, see the module docstring)."""
    lines = _Lines()
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""  # an escape sequence cut between two events waits for its end
    for _t, code, data in events:
        if code == "o":
            text = pending + (decoder.decode(data) if isinstance(data, bytes) else data)
            cut = _UNFINISHED.search(text)
            pending = text[cut.start() :] if cut else ""
            lines.feed(text[: cut.start()] if cut else text)
        elif code == "m":
            if lines.line:
                lines.newline()
            lines.done.append(f"[{_as_bytes(data).decode('utf-8', 'replace')}]")
    lines.feed(pending + decoder.decode(b"", final=True))
    return lines.text()
