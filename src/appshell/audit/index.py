"""The session index of an audit file: where each session's `session_start` record begins.

``audit.idx`` beside ``audit.jsonl`` holds one line per session, ``ID OFFSET``.
The file sink appends a line after each `session_start`; ``audit show ID``
reads the index (small: one line per session), seeks to the offset, checks that
the record there is that session's start, and reads on from there only. The
index is a cache, not evidence: a missing, stale or wrong index costs a scan of
the file, never a wrong answer.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["index_path", "note_session", "lookup", "rebuild"]


def index_path(log: Path) -> Path:
    return log.with_suffix(".idx")


def note_session(index: Path, session: str, offset: int) -> None:
    """Append ``session offset``; best effort (a failure only costs a later scan)."""
    try:
        fd = os.open(index, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError:
        return
    try:
        os.write(fd, f"{session} {offset}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def lookup(index: Path, prefix: str) -> list[tuple[str, int]]:
    """Sessions in the index whose id starts with *prefix*, with their offsets."""
    found: dict[str, int] = {}
    try:
        data = index.read_bytes()
    except OSError:
        return []
    for line in data.decode("ascii", "replace").splitlines():
        session, _, offset = line.partition(" ")
        if session.startswith(prefix) and offset.isdigit():
            found[session] = int(offset)
    return list(found.items())


def rebuild(log: Path) -> int:
    """Write the index of *log* from a scan of the whole file; returns the number of sessions."""
    import json

    entries: list[str] = []
    offset = 0
    with log.open("rb") as f:
        for line in f:
            if b'"event":"session_start"' in line:
                try:
                    entries.append(f"{json.loads(line)['session']} {offset}\n")
                except (ValueError, KeyError, TypeError):
                    pass
            offset += len(line)
    tmp = index_path(log).with_suffix(".idx.tmp")
    tmp.write_text("".join(entries))
    os.chmod(tmp, 0o600)
    tmp.replace(index_path(log))
    return len(entries)
