"""`appshell audit verify|tail|show`: check the chain, and render sessions for people."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appshell.audit.verify import Report, verify_files
from appshell.render import table

__all__ = ["Log", "verify", "sessions", "render_tail", "render_session", "Session"]


class Log:
    """The records of a file sink or of an SQL sink's table, one raw record at a time."""

    def __init__(self, path: Path | None = None, url: str | None = None) -> None:
        self.path, self.url = path, url

    @property
    def name(self) -> str:
        from appshell.redact import mask_url

        return str(self.path) if self.path is not None else mask_url(self.url or "")

    def lines(self) -> Iterator[tuple[str, bytes, bool]]:
        """(where, raw record, complete) in chain order: ``file:line`` or ``table#seq``."""
        if self.path is not None:
            with self.path.open("rb") as f:
                for number, raw in enumerate(f, start=1):
                    yield f"{self.path}:{number}", raw.rstrip(b"\n"), raw.endswith(b"\n")
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


def sessions(log: Log) -> list[Session]:
    found: dict[str, Session] = {}
    for _, raw, complete in log.lines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # `verify` reports damage; review shows what can be read
        s = found.setdefault(record.get("session", "?"), Session(record.get("session", "?")))
        event = record.get("event")
        if event == "session_start":
            s.start = record
        elif event == "session_end":
            s.end = record
        elif event == "statement":
            s.statements[record["n"]] = record
        elif event == "result":
            s.results[record["n"]] = record
    return list(found.values())


def _who(s: Session) -> str:
    user, real = s.start.get("user", "?"), s.start.get("real_user")
    who = f"{user} (as {real})" if real and real != user else user
    return f"{who}@{s.start.get('host', '?')}"


def render_tail(log: Log, count: int = 10) -> str:
    rows = [
        [s.id, s.start.get("ts", "?")[:19].replace("T", " "), _who(s), s.start.get("profile", "?"), s.start.get("mode", "?"),
         len(s.statements), s.status, s.start.get("reason") or ""]
        for s in sessions(log)[-count:]
    ]
    return table(["session", "started (UTC)", "who", "profile", "mode", "stmts", "status", "reason"], rows)


def render_session(log: Log, prefix: str) -> str | None:
    matches = [s for s in sessions(log) if s.id.startswith(prefix)]
    if len(matches) != 1:
        return None
    s = matches[0]
    head = [
        f"session {s.id} — {_who(s)}, {s.start.get('mode', '?')} {s.start.get('shell') or ''}".rstrip(),
        f"  started  {s.start.get('ts', '?')}   profile {s.start.get('profile', '?')}   release {s.start.get('release', '?')}",
        f"  database {s.start.get('database', '?')}   read-only {s.start.get('read_only')}   sandbox {s.start.get('sandbox')}",
        f"  reason   {s.start.get('reason') or '(none)'}   ssh {s.start.get('ssh_client') or '-'}   tty {s.start.get('tty') or '-'}",
    ]
    rows = []
    for n, st in sorted(s.statements.items()):
        result = s.results.get(n, {})
        rows.append([n, st["ts"][11:23], result.get("status", "no result"), result.get("duration_ms", ""),
                     len(result.get("sql") or []), (st.get("source") or "").strip(), result.get("error") or ""])
    end = f"  ended    {s.end['ts']}  status {s.end['status']}" if s.end else "  no session_end: still open, or the process was killed"
    return "\n".join([*head, table(["n", "time", "status", "ms", "sql", "source", "error"], rows), end])
