"""`appshell audit verify|tail|show`: check the chain, and render sessions for people."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appshell.audit.verify import Report, rotation_set, verify_files
from appshell.render import table

__all__ = ["Log", "verify", "sessions", "tail_sessions", "find_session", "render_tail", "render_session", "Session", "printable"]

# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(value: Any) -> Any:
    """*value* with every control character shown as an escape (``\\x1b``, ``\\n``): a record cannot drive the reviewer's terminal."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda m: {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(m[0], m[0].encode("unicode_escape").decode("ascii")), value)
    return value


class Log:
    """The records of a file sink or of an SQL sink's table, one raw record at a time."""

    def __init__(self, path: Path | None = None, url: str | None = None) -> None:
        self.path, self.url = path, url

    @property
    def name(self) -> str:
        from appshell.redact import mask_url

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


@dataclass
class Session:
    id: str
    start: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] | None = None
    statements: dict[int, dict[str, Any]] = field(default_factory=dict)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.end["status"] if self.end else "open (or killed)"


def _add(found: dict[str, Session], raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None  # `verify` reports damage; review shows what can be read
    if not isinstance(record, dict) or record.get("session") in (None, "-"):
        return None  # not a session's record (a rotation marker)
    s = found.setdefault(str(record["session"]), Session(str(record["session"])))
    event = record.get("event")
    if event == "session_start":
        s.start = record
    elif event == "session_end":
        s.end = record
    elif event == "statement":
        s.statements[record["n"]] = record
    elif event == "result":
        s.results[record["n"]] = record
    return record


def sessions(log: Log) -> list[Session]:
    found: dict[str, Session] = {}
    for _, raw, _complete in log.lines():
        _add(found, raw)
    return list(found.values())


def _backwards(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The lines of *path*, last first, read from the end in chunks."""
    with path.open("rb") as f:
        pos = f.seek(0, 2)
        rest = b""
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            f.seek(pos)
            lines = (f.read(step) + rest).split(b"\n")
            rest = lines[0]
            yield from reversed(lines[1:])
        yield rest


def tail_sessions(log: Log, count: int) -> list[Session]:
    """The last *count* sessions to start; a file is read from its end, only as far back as they go."""
    found: dict[str, Session] = {}
    if log.path is None:
        from appshell.audit.sqlsink import recent_session_rows

        for row in recent_session_rows(log.url or "", count):
            _add(found, row.encode("utf-8"))
        return sorted((s for s in found.values() if s.start), key=lambda s: str(s.start.get("ts")))[-count:]
    starts = 0
    for path in reversed(rotation_set(log.path)):  # the live file, then the rotated ones, newest first
        for raw in _backwards(path):
            record = _add(found, raw)
            if record is not None and record.get("event") == "session_start":
                starts += 1
                if starts >= count:
                    break
        if starts >= count:
            break
    started = [s for s in found.values() if s.start]
    return sorted(started, key=lambda s: int(s.start.get("seq", 0)))[-count:]


def _session_from(path: Path, session: str, offset: int) -> Session | None:
    """One session, read forward from its session_start at *offset* to its session_end."""
    found: dict[str, Session] = {}
    key = f'"session":"{session}"'.encode()
    with path.open("rb") as f:
        f.seek(offset)
        first = f.readline()
        record = _add(found, first)
        if record is None or record.get("event") != "session_start" or record.get("session") != session:
            return None  # a stale index
        for raw in f:
            if key in raw and _add(found, raw) is not None and found[session].end is not None:
                break
    return found[session]


def find_session(log: Log, prefix: str) -> Session | None:
    """The one session whose id starts with *prefix*: through the index where it can, else a scan."""
    if log.path is not None:
        from appshell.audit.index import index_path, lookup, rebuild

        index = index_path(log.path)
        if not index.exists():
            rebuild(log.path)
        hits = lookup(index, prefix)
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
            _add(by_id, row.encode("utf-8"))
        return next(iter(by_id.values())) if len(by_id) == 1 else None
    matches = [s for s in sessions(log) if s.id.startswith(prefix)]
    return matches[0] if len(matches) == 1 else None


def _who(s: Session) -> str:
    user, real = s.start.get("user", "?"), s.start.get("real_user")
    who = f"{user} (as {real})" if real and real != user else user
    return f"{who}@{s.start.get('host', '?')}"


def render_tail(log: Log, count: int = 10) -> str:
    rows = [
        [printable(c) for c in (s.id, s.start.get("ts", "?")[:19].replace("T", " "), _who(s), s.start.get("profile", "?"),
                                s.start.get("mode", "?"), len(s.statements), s.status, s.start.get("reason") or "")]
        for s in tail_sessions(log, count)
    ]
    return table(["session", "started (UTC)", "who", "profile", "mode", "stmts", "status", "reason"], rows)


def render_session(log: Log, prefix: str) -> str | None:
    found = find_session(log, prefix)
    if found is None:
        return None
    s = found
    head = [
        f"session {s.id} — {_who(s)}, {s.start.get('mode', '?')} {s.start.get('shell') or ''}".rstrip(),
        f"  started  {s.start.get('ts', '?')}   profile {s.start.get('profile', '?')}   release {s.start.get('release', '?')}",
        f"  database {s.start.get('database', '?')}   read-only {s.start.get('read_only')}   sandbox {s.start.get('sandbox')}",
        f"  reason   {s.start.get('reason') or '(none)'}   ssh {s.start.get('ssh_client') or '-'}   tty {s.start.get('tty') or '-'}",
    ]
    rows = []
    for n, st in sorted(s.statements.items()):
        result = s.results.get(n, {})
        rows.append([printable(c) for c in (n, st["ts"][11:23], result.get("status", "no result"), result.get("duration_ms", ""),
                     len(result.get("sql") or []), (st.get("source") or "").strip(), result.get("error") or "")])
    end = f"  ended    {s.end['ts']}  status {s.end['status']}" if s.end else "  no session_end: still open, or the process was killed"
    return "\n".join([*(printable(h) for h in head), table(["n", "time", "status", "ms", "sql", "source", "error"], rows), printable(end)])
