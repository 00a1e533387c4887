"""`appshell audit verify|tail|show`: check the chain, and render sessions for people.

Readers never hide a record (issue 22 item 6): a session is *every* record that names it, in
file order — a second record with the same ``n``, a second ``session_end``, records after the
end, and whole JSON lines that carry no hash or seal are all shown, and flagged
(:meth:`Session.flags`). Nothing here decides which of two records is "the" one.
"""
# Over 350 lines: tail and show over both sinks: one Session reader, its
# flags (the recorder's records too), the terminal transcript, two renderings.

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appshell.audit.verify import Report, rotation_set, verify_files

__all__ = [
    "Log",
    "verify",
    "sessions",
    "tail_sessions",
    "find_session",
    "render_tail",
    "render_session",
    "Session",
    "printable",
    "tail_json",
    "session_json",
    "scan_session",
    "unescape",
    "field_bytes",
    "typed_lines",
    "NOT_THE_INPUT",
    "PROGRAM_INPUTS",
]

# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
FORGED = "a whole JSON line with no seal or hash: not written by appshell's sink (forged)"
UNSEALED = "not sealed while this session's other records are: written without the sealing key (forged)"
NOT_THE_INPUT = "the session reported a statement that is not the input the recorder read"
NO_STATEMENT = "a result with no statement before it"
NOT_TYPED = (
    "the session reported a statement that was not typed: a line of its source is not among the keys the "
    "recorder read at the terminal"
)
# Who writes each kind of record where a recorder keeps the session:
# the recorder itself, or the session (checked, then sealed).
_BY = {
    "session_start": "recorder",
    "session_end": "recorder",
    "io": "recorder",
    "refused_report": "recorder",
    "channel_closed": "recorder",
    "statement": "session",
    "result": "session",
    "session_info": "session",
}
PROGRAM_INPUTS = (
    "command",
    "script",
    "stdin",
)  # input.kind where the recorder read the whole program before the session ran
_ESCAPED = re.compile(r"\\\\|\\x([0-9a-fA-F]{2})")


def unescape(text: str) -> bytes:
    """The bytes of a field that :func:`appshell.audit.records.encodable`
    escaped: ``\\xNN`` is byte NN, ``\\\\`` a backslash."""
    out, pos = bytearray(), 0
    for m in _ESCAPED.finditer(text):
        out += text[pos : m.start()].encode("utf-8", "surrogatepass")
        out += b"\\" if m[1] is None else bytes([int(m[1], 16)])
        pos = m.end()
    out += text[pos:].encode("utf-8", "surrogatepass")
    return bytes(out)


def field_bytes(record: dict[str, Any], key: str, value: Any) -> bytes:
    """*value* (found under the record's top-level field *key*) as the
    bytes it stands for: unescaped where ``undecodable`` lists *key*."""
    text = value if isinstance(value, str) else str(value)
    undecodable = record.get("undecodable")
    if isinstance(undecodable, list) and key in undecodable:
        return unescape(text)
    return text.encode("utf-8", "surrogatepass")


def printable(value: Any) -> Any:
    """*value* with every control character shown as an escape (``\\x1b``,
    ``\\n``): a record cannot drive the reviewer's terminal."""
    if isinstance(value, str):
        return _CONTROL.sub(
            lambda m: {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(m[0], m[0].encode("unicode_escape").decode("ascii")),
            value,
        )
    return value


class Log:
    """The records of a file sink or of an SQL sink's table, one raw record at a time."""

    def __init__(self, path: Path | None = None, url: str | None = None) -> None:
        self.path, self.url = path, url

    @property
    def name(self) -> str:
        from appshell.config.redact import mask_url

        return str(self.path) if self.path is not None else mask_url(self.url or "")

    def lines(self) -> Iterator[tuple[str, bytes, bool]]:
        """(where, raw record, complete) in chain order: ``file:line`` (rotated files first) or ``table#id``."""
        if self.path is not None:
            for path in rotation_set(self.path):
                with path.open("rb") as f:
                    for number, raw in enumerate(f, start=1):
                        yield f"{path}:{number}", raw.rstrip(b"\n"), raw.endswith(b"\n")
            return
        from appshell.audit.sqlsink import TABLE, read_rows

        for row_id, record in read_rows(self.url or ""):
            yield f"{TABLE}#id={row_id}", record.encode("utf-8"), True


def verify(log: Log, key: bytes | None = None, checkpoint: Path | None = None) -> Report:
    """Check the chain (and with *key* the seal) of a file set, or the per-session chains of a table."""
    if log.path is not None:
        return verify_files(log.path, key, checkpoint)
    from appshell.audit.sqlsink import verify_table

    return verify_table(log.url or "")


def _chained(record: dict[str, Any]) -> bool:
    """Does the record carry the chain fields the sink writes (a hash and a seq)?"""
    return (
        isinstance(record.get("hash"), str)
        and isinstance(record.get("seq"), int)
        and not isinstance(record.get("seq"), bool)
    )


@dataclass
class Session:
    """Every record of one session, in the order of the log;
    ``start``/``end``/``statements``/``results`` point into them."""

    id: str
    start: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] | None = None
    statements: dict[int, dict[str, Any]] = field(default_factory=dict)  # the first statement record of each n
    results: dict[int, dict[str, Any]] = field(default_factory=dict)  # the first result record of each n
    records: list[dict[str, Any]] = field(default_factory=list)
    where: list[str] = field(default_factory=list)  # where each record is: file:line, file@offset or table#id

    @property
    def status(self) -> str:
        return str(self.end.get("status")) if self.end else "open (or killed)"

    def add(self, record: dict[str, Any], where: str) -> None:
        self.records.append(record)
        self.where.append(where)
        event = record.get("event")
        if event == "session_start":
            # The chained start wins over a hash-less one; otherwise the first.
            if not self.start or (_chained(record) and not _chained(self.start)):
                self.start = record
        elif event == "session_end":
            if self.end is None or (_chained(record) and not _chained(self.end)):
                self.end = record
        elif event in ("statement", "result"):
            n = record.get("n")
            if isinstance(n, int):
                into = self.statements if event == "statement" else self.results
                if n not in into or (_chained(record) and not _chained(into[n])):
                    into[n] = record

    def record_flags(self) -> list[list[str]]:
        """For each record, what is odd about it (empty: nothing)."""
        out: list[list[str]] = [[] for _ in self.records]
        sealed = any("mac" in r for r in self.records)
        seen: dict[tuple[Any, Any], str] = {}
        end_at = None
        if self.end is not None:
            end_at = next(i for i, r in enumerate(self.records) if r is self.end)
        stated: set[Any] = set()  # the n of each statement so far
        recorded = self.start.get("by") == "recorder"  # a recorder kept this session: every record says who wrote it
        first_program = self._first_program_statement()
        typed = self.typed_text_if_plain()
        typed_at = 0  # where in the typed text the next statement typed at the prompt is looked for
        for i, r in enumerate(self.records):
            event = r.get("event")
            if event == "statement":
                stated.add(r.get("n"))
            elif event == "result" and r.get("n") not in stated:
                out[i].append(NO_STATEMENT)
            elif event == "refused_report":
                out[i].append(
                    f"the recorder refused a {printable(str(r.get('kind')))} report: {printable(str(r.get('reason')))}"
                )
            elif event == "channel_closed":
                out[i].append(f"the session's channel closed early: {printable(str(r.get('reason')))}")
            if recorded and event in _BY and r.get("by") != _BY[event]:
                out[i].append(
                    f"by {printable(str(r.get('by')))}, in a session a "
                    f"recorder kept: {event} records are by {_BY[event]}"
                )
            if r is first_program and not self._is_the_input(r):
                out[i].append(
                    NOT_THE_INPUT
                    + f" ({self.start['input'].get('kind')} input, sha256 {self.start['input'].get('sha256')})"
                )
            elif (
                first_program is not None
                and r is not first_program
                and event == "statement"
                and r.get("parent") is None
                and r.get("kind") == first_program.get("kind")
            ):
                # A program is one statement: another top-level one of its kind is the session's word alone.
                out[i].append(
                    f"a second top-level {printable(str(r.get('kind')))} "
                    "statement: the program the recorder read is one statement"
                )
            if typed is not None and event == "statement" and r.get("parent") is None and r.get("kind") in _TYPED_KINDS:
                found = _typed_from(_unspaced(str(r.get("source") or "")), typed, typed_at)
                if found is None:
                    out[i].append(NOT_TYPED)
                else:
                    typed_at = found
            if not _chained(r):
                out[i].append(FORGED)
            elif sealed and "mac" not in r:
                out[i].append(UNSEALED)
            if event in ("statement", "result", "session_start", "session_end"):
                key = (event, r.get("n") if event in ("statement", "result") else None)
                if key in seen:
                    name = f"{event} n={key[1]}" if key[1] is not None else f"{event}"
                    out[i].append(
                        f"duplicate {name} (also at {seen[key]})"
                        if event != "session_end"
                        else f"a second session_end (also at {seen[key]})"
                    )
                else:
                    seen[key] = self.where[i]
            if end_at is not None and i > end_at:
                out[i].append(f"after the session_end at {self.where[end_at]}")
        return out

    def program_input(self) -> dict[str, Any] | None:
        """The raw program the recorder read (session_start's ``input``) in a program mode; else None."""
        given = self.start.get("input")
        if isinstance(given, dict) and given.get("kind") in PROGRAM_INPUTS and isinstance(given.get("text"), str):
            return given
        return None

    def _first_program_statement(self) -> dict[str, Any] | None:
        """In a program mode, the session's first top-level statement (no ``parent``): it must be the input."""
        if self.program_input() is None:
            return None
        return next((r for r in self.records if r.get("event") == "statement" and r.get("parent") is None), None)

    def _is_the_input(self, statement: dict[str, Any]) -> bool:
        given = self.program_input()
        assert given is not None
        return field_bytes(statement, "source", statement.get("source")) == field_bytes(
            self.start, "input", given["text"]
        )

    def reported_by_session(self) -> list[str] | None:
        """The session_start's fields that are the session's word
        (``session_reported``); None where the recorder wrote them all."""
        reported = self.start.get("session_reported")
        return [str(k) for k in reported] if isinstance(reported, list) else None

    def typed_text_if_plain(self) -> str | None:
        """At a terminal, what was typed as one text without white space, backspaces applied (also over a line
        end, as IPython's editor joins lines), for the statements to be found in, in order. None where no keys
        were recorded, or where the line editor's own keys were used (arrows, history, completion: a statement
        is then what the editor made of the keys, which the keys alone do not show)."""
        if not isinstance(self.start.get("terminal"), dict):
            return None
        keys = [data for _, stream, data in self.io_events() if stream == "i"]
        if not keys:
            return None
        # A paste's brackets and the terminal's answers to the line editor's cursor-position queries are not edits.
        raw = _NOT_EDITS.sub(b"", b"".join(keys))
        if any(c < 0x20 and c not in _PLAIN_KEYS for c in raw):
            return None
        text: list[str] = []
        for char in raw.decode("utf-8", "replace"):
            if char in "\x08\x7f":
                if text:
                    text.pop()
            elif char in "\x03\x04":  # Ctrl-C drops the line, Ctrl-D ends input: a boundary, nothing typed
                text.append("\n")
            else:
                text.append(char)
        return _unspaced("".join(text))

    def io_events(self) -> list[tuple[float, str, bytes]]:
        """The terminal's ``io`` records as (seconds, stream,
        bytes), in the log's order (every one, whoever wrote it)."""
        out = []
        for r in self.records:
            if r.get("event") != "io":
                continue
            t = r.get("t")
            out.append(
                (
                    float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else 0.0,
                    str(r.get("stream")),
                    field_bytes(r, "data", r.get("data") or ""),
                )
            )
        return out

    def output_recorded(self) -> bool:
        """Did the recorder keep what the terminal showed (any ``"o"`` record)?"""
        return any(r.get("event") == "io" and r.get("stream") == "o" for r in self.records)

    def flags(self) -> list[str]:
        """What is odd about the session, one line each: forged lines, duplicates, extra or missing ends."""
        out = [
            f"{self.where[i]}: {self.records[i].get('event')} — {', '.join(f)}"
            for i, f in enumerate(self.record_flags())
            if f
        ]
        if self.end is None:
            out.append("no session_end: still open, or the process was killed")
        return out

    def blocks(self) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Each statement record with the result records that answer it (same n, after it), in the log's order.

        A result with no statement before it gets a block of its own (statement ``{}``)."""
        out: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        open_: dict[tuple[Any, bool], int] = {}  # (n, chained): a chained result answers a chained statement first
        for r in self.records:
            event = r.get("event")
            if event == "statement":
                open_[(r.get("n"), _chained(r))] = len(out)
                out.append((r, []))
            elif event == "result":
                n, chained = r.get("n"), _chained(r)
                at = open_.pop((n, chained), None)
                if at is None:
                    at = open_.pop((n, not chained), None)
                if at is None:
                    out.append(({}, [r]))
                else:
                    out[at][1].append(r)
        return out

    def statement_count(self) -> int:
        return sum(1 for r in self.records if r.get("event") == "statement")

    def sensitive_records(self) -> list[dict[str, Any]]:
        """The session's unlock(reason) records: statements of kind ``sensitive_access`` (appshell.console.protect)."""
        return [r for r in self.records if r.get("event") == "statement" and r.get("kind") == "sensitive_access"]

    def sensitive(self) -> int:
        return len(self.sensitive_records())

    def protected_hosts(self) -> int:
        """Connections to protected hosts that were refused (statements of kind ``protected_host``)."""
        return sum(1 for r in self.records if r.get("event") == "statement" and r.get("kind") == "protected_host")


# Statements typed at a prompt (IPython's cells, the plain and ptpython shells' code), and the keys that only
# type: line ends, backspace/delete, ^C and ^D. Any other control key (an escape sequence, tab, ^R, ^P) edits.
_TYPED_KINDS = frozenset({"cell", "code"})
_PLAIN_KEYS = frozenset(b"\r\n\x08\x7f\x03\x04")
_NOT_EDITS = re.compile(rb"\x1b\[20[01]~|\x1b\[\d+;\d+R")


def _unspaced(text: str) -> str:
    return "".join(text.split())


def _typed_from(statement: str, typed: str, at: int) -> int | None:
    """Where *statement* (without white space) ends in *typed* at or after *at*; None where it was not typed
    there. In order: a statement reported in place of another cannot be matched to keys typed before."""
    if not statement:
        return at
    found = typed.find(statement, at)
    return None if found < 0 else found + len(statement)


# What a terminal sends that is not text: CSI (arrows, bracketed paste), SS3 (keypad, F1-F4), strings, other escapes.
_KEY_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|O.|[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~])?", re.S)


def typed_lines(events: list[tuple[float, str, bytes]]) -> list[tuple[float, str]]:
    """What was typed (the ``"i"`` events), as (seconds of the line's first key, line):
    backspaces applied, a line ending at CR or LF (CR LF is one end), escape sequences
    (arrow keys, paste brackets) dropped, other control keys shown as ``^C``.

    It is the keys, not what the shell made of them: a line edited
    with the arrow keys reads as typed, without the moves."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(
        "backslashreplace"
    )  # a character cut between two reads comes out whole
    text, times = "", []  # times: (offset in text where an event's keys begin, its seconds)
    for t, stream, data in events:
        if stream == "i":
            times.append((len(text), t))
            text += decoder.decode(data)
    text += decoder.decode(b"", final=True)
    out: list[tuple[float, str]] = []
    line: list[str] = []
    began: float | None = None
    after_cr, event, i = False, 0, 0
    while i < len(text):
        while event + 1 < len(times) and times[event + 1][0] <= i:
            event += 1
        char = text[i]
        if char == "\x1b":
            m = _KEY_ESCAPE.match(text, i)
            i = m.end() if m else i + 1
            continue
        i += 1
        if char == "\n" and after_cr:
            after_cr = False
            continue
        after_cr = char == "\r"
        if char in "\r\n":
            out.append((times[event][1] if began is None else began, "".join(line)))
            line, began = [], None
            continue
        if began is None:
            began = times[event][1]
        if char in "\x7f\b":
            if line:
                line.pop()
        elif char < " " and char != "\t":
            line.append("^" + chr(ord(char) + 64))
        else:
            line.append(char)
    if line:
        out.append((began if began is not None else times[event][1], "".join(line)))
    return out


def add_record(found: dict[str, Session], raw: bytes, where: str = "") -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None  # `verify` reports damage; review shows what can be read
    if not isinstance(record, dict) or record.get("session") in (None, "-"):
        return None  # not a session's record (a rotation marker)
    s = found.setdefault(str(record["session"]), Session(str(record["session"])))
    s.add(record, where)
    return record


def _add_if(found: dict[str, Session], session: str, raw: bytes, where: str) -> None:
    """Add the line if it is a record of *session* (its id may also appear in another session's source)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return
    if isinstance(record, dict) and record.get("session") == session:
        found.setdefault(session, Session(session)).add(record, where)


def sessions(log: Log) -> list[Session]:
    found: dict[str, Session] = {}
    for where, raw, _complete in log.lines():
        add_record(found, raw, where)
    return list(found.values())


def _backwards(path: Path, chunk: int = 1 << 20) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of *path*, last first, read from the end in chunks."""
    with path.open("rb") as f:
        pos = f.seek(0, 2)
        rest = b""
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            f.seek(pos)
            lines = (f.read(step) + rest).split(b"\n")
            rest = lines[0]
            offset = pos + len(rest) + 1
            ends = []
            for line in lines[1:]:
                ends.append((offset, line))
                offset += len(line) + 1
            yield from reversed(ends)
        yield 0, rest


def tail_sessions(log: Log, count: int) -> list[Session]:
    """The last *count* sessions to start, with every record naming them after their start (read from the end)."""
    found: dict[str, Session] = {}
    if log.path is None:
        from appshell.audit.sqlsink import recent_session_rows

        for row in recent_session_rows(log.url or "", count):
            add_record(found, row.encode("utf-8"))
        return sorted((s for s in found.values() if s.start), key=lambda s: str(s.start.get("ts")))[-count:]
    starts = 0
    seen: list[tuple[str, bytes]] = []
    for path in reversed(rotation_set(log.path)):  # the live file, then the rotated ones, newest first
        for offset, raw in _backwards(path):
            if not raw:
                continue
            seen.append((f"{path}@{offset}", raw))
            if b'"session_start"' in raw:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("event") == "session_start":
                    starts += 1
                    if starts >= count:
                        break
        if starts >= count:
            break
    for where, raw in reversed(seen):  # forwards: each session's records in the log's order
        add_record(found, raw, where)
    started = [s for s in found.values() if s.start]
    return sorted(started, key=lambda s: int(s.start.get("seq", 0) or 0))[-count:]


def scan_session(
    path: Path, session: str, offset: int, into: Session | None = None, stop: int | None = None
) -> tuple[Session | None, int]:
    """*session* read from *offset* (its start) to the end of the file: every line naming it, found with a byte search.

    Returns the session and where the read stopped (to go on from there later). Not only up to
    its first session_end: a record appended after it, anywhere later, is part of what is shown.
    *stop*: the offset of the session's last line, where a scan of the whole file found it.
    """
    found: dict[str, Session] = {}
    if into is not None:
        found[session] = into
    # The id's bytes, quoted: a line written by hand (`"session": "…"`, with spaces) is found too; the parse decides.
    key = json.dumps(session).encode()
    with path.open("rb") as f:
        if into is None:
            f.seek(offset)
            first = f.readline()
            record = add_record(found, first, f"{path}@{offset}")
            if record is None or record.get("event") != "session_start" or record.get("session") != session:
                return None, offset  # a stale index
            pos = offset + len(first)
        else:
            pos = offset
            f.seek(pos)
        upto = _scan(f, key, session, found, path, pos, stop)
    return found.get(session), upto


_CHUNK = 1 << 22  # read 4 MiB at a time: the memory a scan needs stays that, however big the log (no mmap)


def _scan(f: Any, key: bytes, session: str, found: dict[str, Session], path: Path, pos: int, stop: int | None) -> int:
    """Every whole line from *pos* on that holds *key*, added to *found*; where the read ended (after the last whole
    line; with *stop*, after the line that holds offset *stop*). A partial last line waits for more (or is torn).

    One buffer, read into (no mmap, no copy per chunk): as fast as a search of the mapped file, and the memory
    stays a few MiB however big the log."""
    raw = f.raw if hasattr(f, "raw") else f  # unbuffered reads straight into the buffer
    raw.seek(pos)  # the raw file's own position: a buffered seek within its buffer would leave it elsewhere
    buf, have, at = bytearray(2 * _CHUNK), 0, pos  # have: bytes of a partial line kept at buf's start; at: its offset
    while True:
        if len(buf) - have < _CHUNK:  # a line longer than a chunk: room for the next read after it
            buf.extend(bytes(_CHUNK))
        n = raw.readinto(memoryview(buf)[have : have + _CHUNK])
        if not n:
            return at
        total = have + n
        whole = buf.rfind(b"\n", 0, total) + 1
        if stop is not None and at + whole > stop:  # the line that holds *stop* is here: end after it
            whole = buf.find(b"\n", max(stop - at, 0), total) + 1
        i = buf.find(key, 0, whole)
        while i >= 0:
            start, end = buf.rfind(b"\n", 0, i) + 1, buf.find(b"\n", i, whole)
            _add_if(found, session, bytes(buf[start:end]), f"{path}@{at + start}")
            i = buf.find(key, end, whole)
        buf[: total - whole] = buf[whole:total]
        have, at = total - whole, at + whole
        if stop is not None and at > stop:
            return at


def _session_from(path: Path, session: str, offset: int) -> Session | None:
    """One session: every record naming it, from its session_start at *offset* on."""
    return scan_session(path, session, offset)[0]


def find_session(log: Log, prefix: str) -> Session | None:
    """The one session whose id starts with *prefix*: through the index where it can, else a scan."""
    if log.path is not None:
        from appshell.audit.index import checked_lookup

        hits = checked_lookup(log.path, prefix)
        if len(hits) == 1:
            found = _session_from(log.path, *hits[0])
            if found is not None:
                return found
        elif len(hits) > 1:
            return None
    else:
        from appshell.audit.sqlsink import session_rows

        by_id: dict[str, Session] = {}
        for row in session_rows(log.url or "", prefix):
            add_record(by_id, row.encode("utf-8"))
        return next(iter(by_id.values())) if len(by_id) == 1 else None
    matches = [s for s in sessions(log) if s.id.startswith(prefix) and s.start]
    return matches[0] if len(matches) == 1 else None


def _who(s: Session) -> str:
    user, real = s.start.get("user", "?"), s.start.get("real_user")
    who = f"{user} (as {real})" if real and real != user else user
    return f"{who}@{s.start.get('host', '?')}"


def errors_of(s: Session) -> int:
    return sum(1 for r in s.records if r.get("event") == "result" and r.get("status") == "error")


def wrote_of(s: Session) -> bool:
    from appshell.audit.wrote import session_wrote

    return session_wrote(s)


def _marks(s: Session) -> list[str]:
    """What tail shows beside each session: sandbox, read-only, wrote, errors, sensitive access, flags."""
    marks = []
    if s.start.get("sandbox"):
        marks.append("sandbox")
    if s.start.get("read_only"):
        marks.append("read-only")
    if wrote_of(s):
        marks.append("wrote" + (" (rolled back)" if s.start.get("sandbox") else ""))
    errors = errors_of(s)
    if errors:
        marks.append(f"{errors} error{'s' if errors != 1 else ''}")
    if s.sensitive():
        marks.append(f"{s.sensitive()} sensitive access")
    if s.protected_hosts():
        marks.append(f"{s.protected_hosts()} protected host refused")
    flagged = sum(1 for f in s.record_flags() if f)
    if flagged:
        marks.append(f"FLAGGED: {flagged} odd record{'s' if flagged != 1 else ''} (audit show)")
    return marks


def render_tail(log: Log, count: int = 10) -> str:
    from appshell.console.render import table

    rows = [
        [
            printable(c)
            for c in (
                s.id,
                str(s.start.get("ts", "?"))[:19].replace("T", " "),
                _who(s),
                s.start.get("profile", "?"),
                s.start.get("mode", "?"),
                s.statement_count(),
                s.status,
                ", ".join(_marks(s)),
                s.start.get("reason") or "",
            )
        ]
        for s in tail_sessions(log, count)
    ]
    return table(["session", "started (UTC)", "who", "profile", "mode", "stmts", "status", "marks", "reason"], rows)


def _tail_row(s: Session) -> dict[str, Any]:
    return {
        "session": s.id,
        "started": s.start.get("ts"),
        "user": s.start.get("user"),
        "real_user": s.start.get("real_user"),
        "host": s.start.get("host"),
        "profile": s.start.get("profile"),
        "mode": s.start.get("mode"),
        "reason": s.start.get("reason"),
        "statements": s.statement_count(),
        "status": s.status,
        "ended": s.end is not None,
        "sandbox": bool(s.start.get("sandbox")),
        "read_only": bool(s.start.get("read_only")),
        "wrote": wrote_of(s),
        "errors": errors_of(s),
        "sensitive": s.sensitive(),
        "protected_hosts": s.protected_hosts(),
        "flags": s.flags(),
    }


def tail_json(log: Log, count: int = 10) -> str:
    """The tail as JSON for scripts: one object a session, oldest first (ASCII: no raw control character)."""
    return json.dumps([_tail_row(s) for s in tail_sessions(log, count)], indent=1, ensure_ascii=True)


def session_json(s: Session) -> str:
    """One session for scripts: every record as written, where it is, and what is odd about it."""
    flags = s.record_flags()
    typed = [{"t": t, "line": line} for t, line in typed_lines(s.io_events())]
    return json.dumps(
        {
            **_tail_row(s),
            "typed": typed,
            "output_recorded": s.output_recorded(),
            "records": [{**r, "_where": w, "_flags": f} for r, w, f in zip(s.records, s.where, flags)],
        },
        indent=1,
        ensure_ascii=True,
    )


def _wrapped(text: str, indent: str, width: int, exact: bool = False) -> list[str]:
    """*text*'s lines, each control character escaped, wrapped to *width* with *indent* (whole words where they fit).

    *exact*: every space kept where a line breaks (source, SQL: joined again, they are the text)."""
    import textwrap

    out = []
    room = max(width - len(indent), 20)
    for line in str(text).split("\n"):
        shown = printable(line)
        if not shown:
            out.append(indent.rstrip())
            continue
        lead = len(shown) - len(shown.lstrip(" "))
        parts = textwrap.wrap(
            shown,
            room,
            break_long_words=True,
            break_on_hyphens=False,
            drop_whitespace=not exact,
            subsequent_indent=" " * min(lead, room // 2),
            replace_whitespace=False,
        ) or [""]
        out.extend(indent + p.rstrip() for p in parts)
    return out


_SHOWN = {"statement", "result", "session_start", "session_end", "io"}
_CHAIN_KEYS = {"v", "seq", "ts", "session", "event", "prev", "hash", "epoch", "mac"}


def _provenance(s: Session) -> list[str]:
    """Who said what at the start: the recorder's fields and the session's, the raw input, the terminal."""
    out = []
    if "session_reported" in s.start:
        said = s.reported_by_session()
        out.append(
            "recorded by a recorder process; the session reported " + (", ".join(said) or "nothing") + " (its word)"
            if said is not None
            else "recorded by a recorder process; the session never reported its start"
        )
    given = s.start.get("input")
    if isinstance(given, dict):
        where = f" {given.get('path')}" if given.get("path") else ""
        out.append(
            f"input {given.get('kind')}{where}, read by the recorder "
            f"before the session ran: sha256 {given.get('sha256')}"
        )
    terminal = s.start.get("terminal")
    if isinstance(terminal, dict):
        out.append(
            "terminal: every key typed recorded by the recorder"
            + ("; what was shown too" if terminal.get("output_recorded") else "")
        )
    return out


def _boot_sql(s: Session, width: int) -> list[str]:
    """The SQL the app's own code ran while it booted (session_start.boot_sql): before statement 1."""
    sql = s.start.get("boot_sql")
    if not isinstance(sql, list) or not sql:
        return []
    more = s.start.get("boot_sql_more") or 0
    count = f"{len(sql)}" + (f", and {more} more not kept" if more else "")
    out = [f"── SQL the app ran while it booted ({count}; reported by the session)"]
    for i, q in enumerate(sql, 1):
        out.extend(_wrapped(f"{i}. {q}", "    ", width, exact=True))
    return out


def _terminal(s: Session, width: int) -> list[str]:
    """The terminal transcript: what was typed, line by line with
    its time; where the output was kept, how to replay it."""
    events = s.io_events()
    at_terminal = isinstance(s.start.get("terminal"), dict)
    if not events and not at_terminal:
        return []
    if at_terminal:
        out = [
            "── terminal: what was typed (keys as the recorder read "
            "them, backspaces applied; seconds since the relay started)"
        ]
        for t, line in typed_lines(events):
            out.extend(_wrapped(f"{t:8.2f}s  {line}", "  ", width))
        if not any(stream == "i" for _, stream, _ in events):
            out.append("  (nothing typed was recorded)")
        elif s.typed_text_if_plain() is None:
            out.extend(
                _wrapped(
                    "(the statements were not compared with these keys: the line editor's own keys were used — "
                    "arrows, history, completion — so the keys do not show what ran; read them beside the statements)",
                    "  ",
                    width,
                )
            )
    else:
        out = ["── output: the program's stdout and stderr, as the recorder passed them on"]
    markers = [data.decode("utf-8", "replace") for _, stream, data in events if stream == "m"]
    for label in markers:
        out.extend(_wrapped(f"[{label}]", "  ", width))
    if s.output_recorded():
        shown = sum(len(data) for _, stream, data in events if stream == "o")
        out.extend(
            _wrapped(
                f"output recorded ({shown} bytes): appshell audit replay {s.id} plays it; "
                f"appshell audit export {s.id} --asciicast writes it for asciinema",
                "  ",
                width,
            )
        )
    else:
        out.append("  output not recorded (audit.record_output = true in the profile records it)")
    return out


def render_session(log: Log, prefix: str) -> str | None:
    from appshell.console.render import terminal_width

    found = find_session(log, prefix)
    if found is None:
        return None
    s = found
    width = terminal_width()
    said = set(s.reported_by_session() or ())

    def fact(key: str) -> str:  # a session_start field, marked where it is the session's word
        return f"{s.start.get(key, '?')}" + (" (reported by the session)" if key in said else "")

    head = [
        f"session {s.id} — {_who(s)}, {s.start.get('mode', '?')} {s.start.get('shell') or ''}".rstrip(),
        f"started {s.start.get('ts', '?')}  profile {fact('profile')}  release {fact('release')}",
        f"app {fact('app')}  database {fact('database')}  read-only {fact('read_only')}  sandbox {fact('sandbox')}",
        f"reason {s.start.get('reason') or '(none)'}  "
        f"ssh {s.start.get('ssh_client') or '-'}  tty {s.start.get('tty') or '-'}",
        *_provenance(s),
    ]
    out: list[str] = []
    for h in head:
        out.extend(_wrapped(h, "", width) if not out else _wrapped(h, "  ", width))
    flags = s.flags()
    if flags:
        out.append(f"FLAGGED — {len(flags)} thing(s) an auditor must look at:")
        for f in flags:
            out.extend(_wrapped("! " + f, "  ", width))
    out.extend(_boot_sql(s, width))
    per_record = dict(zip((id(r) for r in s.records), s.record_flags()))
    for st, results in s.blocks():
        n = st.get("n") if st else (results[0].get("n") if results else "?")
        status = ", ".join(str(r.get("status")) for r in results) or "no result recorded"
        ms = ", ".join(str(r.get("duration_ms")) for r in results if r.get("duration_ms") is not None)
        title = f"── #{n}  {str((st or results[0]).get('ts', ''))[11:23]}  {status}" + (f"  {ms} ms" if ms else "")
        title += f"  {st.get('kind') or ''}".rstrip() if st else "  (a result with no statement before it)"
        out.extend(_wrapped(title, "", width))
        for r in ([st] if st else []) + results:
            for f in per_record.get(id(r), []):
                out.extend(_wrapped(f"! {r.get('event')}: {f}", "  ", width))
        if st:
            for key in ("path", "sha256"):
                if st.get(key):
                    out.extend(_wrapped(f"{key} {st[key]}", "  ", width))
        for r in ([st] if st else []) + results:
            masked = r.get("redacted")
            for field_, digest in masked.items() if isinstance(masked, dict) else []:
                out.extend(_wrapped(f"{field_} masked by a pattern; sha256 of it as run: {digest}", "  ", width))
        if st:
            out.extend(_wrapped(str(st.get("source") or ""), "  │ ", width, exact=True))
        for r in results:
            sql = r.get("sql") or []
            if sql:
                out.append(f"  sql ({len(sql)}):")
                for i, q in enumerate(sql, 1):
                    out.extend(_wrapped(f"{i}. {q}", "    ", width, exact=True))
            if r.get("error"):
                out.append("  error:")
                out.extend(_wrapped(str(r["error"]), "    ", width))
    for (
        r
    ) in s.records:  # what is neither a statement, its result, the start, the end nor the terminal: shown as written
        if r.get("event") not in _SHOWN:
            fields_ = ", ".join(
                f"{k}={json.dumps(v, ensure_ascii=False, default=str)}"
                for k, v in sorted(r.items())
                if k not in _CHAIN_KEYS
            )
            out.extend(_wrapped(f"── {r.get('event')}  {str(r.get('ts', ''))[11:23]}  {fields_}", "", width))
    out.extend(_terminal(s, width))
    out.append(f"{s.statement_count()} statement(s)")
    if s.end:
        out.extend(_wrapped(f"ended {s.end.get('ts')}  status {s.end.get('status')}", "", width))
    else:
        out.append("no session_end: still open, or the process was killed")
    return "\n".join(out)
