"""asciicast v2 (asciinema's format) from the relay's events, and back.

A file is newline-delimited JSON: one header object (``version`` 2, ``width``, ``height``, and the
optional ``timestamp``, ``duration``, ``idle_time_limit``, ``command``, ``title``, ``env``), then one
``[time, code, data]`` array per event, ``time`` in seconds since the start, ``code`` one of ``"o"``
(output), ``"i"`` (input), ``"m"`` (marker, data its label) and ``"r"`` (resize, data ``"COLSxROWS"``).

The relay records raw bytes, cut wherever a read ended; an event's data here is text. Each of the
``"o"`` and ``"i"`` streams is decoded with its own incremental UTF-8 decoder, so a character cut
between two reads comes out whole in the event of its last byte. Bytes that are not UTF-8 become
U+FFFD: the export is a view for players; the sealed record keeps the bytes.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

__all__ = ["Event", "AsciicastError", "header", "encode", "decode", "dumps", "loads", "write", "read"]

Event = tuple[float, str, bytes | str]
"""``(t, code, data)``: seconds since the start, ``"o"``/``"i"``/``"m"``/``"r"``, bytes or text."""

_STREAMS = ("o", "i")
_OPTIONAL = {
    "timestamp": int,
    "duration": float,
    "idle_time_limit": float,
    "command": str,
    "title": str,
    "env": dict,
}


class AsciicastError(ValueError):
    """The text is not asciicast v2; the message names the line."""


def header(
    width: int,
    height: int,
    *,
    timestamp: float | None = None,
    env: Mapping[str, str] | None = None,
    **optional: Any,
) -> dict[str, Any]:
    """The header object: the terminal's size, then whichever optional fields are given."""
    head: dict[str, Any] = {"version": 2, "width": int(width), "height": int(height)}
    if timestamp is not None:
        head["timestamp"] = int(timestamp)  # the format wants whole seconds
    for key, value in optional.items():
        if key not in _OPTIONAL:
            raise TypeError(f"asciicast v2 has no header field {key!r}; it has {', '.join(_OPTIONAL)}")
        if value is not None:
            head[key] = value
    if env is not None:
        head["env"] = {str(k): str(v) for k, v in env.items()}
    return head


def _line(value: Any) -> str:
    # ensure_ascii=False: UTF-8 text as it is; JSON still escapes every control character (\u001b).
    return json.dumps(value, ensure_ascii=False)


def encode(events: Iterable[Event]) -> Iterator[str]:
    """The event lines (without newlines) for events in time order."""
    decoders = {code: codecs.getincrementaldecoder("utf-8")("replace") for code in _STREAMS}
    last = 0.0
    for t, code, data in events:
        last = max(last, t)
        if isinstance(data, bytes):
            if code in decoders:
                text = decoders[code].decode(data)
                if not text:
                    continue  # only the start of a character: it comes out with the next event
            else:
                text = data.decode("utf-8", "replace")
        else:
            text = data
        yield f"[{t:.6f}, {_line(code)}, {_line(text)}]"
    for code, decoder in decoders.items():
        rest = decoder.decode(b"", final=True)  # a character cut at the very end
        if rest:
            yield f"[{last:.6f}, {_line(code)}, {_line(rest)}]"


def dumps(head: Mapping[str, Any], events: Iterable[Event]) -> str:
    """A whole asciicast v2 file as text."""
    return "".join(line + "\n" for line in (_line(dict(head)), *encode(events)))


def write(out: IO[str], head: Mapping[str, Any], events: Iterable[Event]) -> None:
    """Write a file to ``out`` (opened as text, UTF-8), event by event."""
    out.write(_line(dict(head)) + "\n")
    for line in encode(events):
        out.write(line + "\n")


def _check_header(head: Any) -> dict[str, Any]:
    if not isinstance(head, dict):
        raise AsciicastError("line 1: the header is a JSON object")
    if head.get("version") != 2:
        raise AsciicastError(f"line 1: version is {head.get('version')!r}; this reads asciicast version 2")
    for key in ("width", "height"):
        if not isinstance(head.get(key), int) or isinstance(head.get(key), bool):
            raise AsciicastError(f"line 1: {key!r} (an integer) is required")
    for key, kind in _OPTIONAL.items():
        value = head.get(key)
        if value is None:
            continue
        ok = isinstance(value, (int, float)) if kind is float else isinstance(value, kind)
        if not ok or isinstance(value, bool):
            raise AsciicastError(f"line 1: {key!r} is a {kind.__name__}")
    return head


def decode(lines: Iterable[str]) -> tuple[dict[str, Any], list[tuple[float, str, str]]]:
    """Header and events from the lines of a file; blank lines are skipped."""
    head: dict[str, Any] | None = None
    events: list[tuple[float, str, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as e:
            raise AsciicastError(f"line {number}: not JSON ({e})") from None
        if head is None:
            head = _check_header(value)
            continue
        if not (isinstance(value, list) and len(value) == 3):
            raise AsciicastError(f"line {number}: an event is a [time, code, data] array")
        t, code, data = value
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not isinstance(code, str):
            raise AsciicastError(f"line {number}: an event's time is a number and its code a string")
        if not isinstance(data, str):
            data = _line(data)  # the format is open to new codes; keep their data as JSON text
        events.append((float(t), code, data))
    if head is None:
        raise AsciicastError("line 1: the file is empty; an asciicast starts with its header")
    return head, events


def loads(text: str) -> tuple[dict[str, Any], list[tuple[float, str, str]]]:
    # split("\n"), not splitlines(): U+2028 and NEL are left unescaped by JSON and are not line ends here.
    return decode(text.split("\n"))


def read(source: IO[str]) -> tuple[dict[str, Any], list[tuple[float, str, str]]]:
    return decode(source)
