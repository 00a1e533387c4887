"""The file sink: one JSON line per record, whole or not at all, in one chain per file.

Every append happens under an exclusive ``flock`` of the file, so concurrent
sessions keep one linear chain. Under the lock the sink

1. checks that the file is still the one it opened (same inode as the path,
   not shorter than what this sink wrote): an unlinked, replaced or cut file is
   a sink failure, never a silent new chain;
2. reads the last record from the end of the file, and any bytes after it
   (a write torn by a crash): they are kept, and the new record names their
   offset, length and sha256 in its ``torn`` field, so ``audit verify`` can tell
   "a crash cut this write, acknowledged by the next line" from an edit;
3. writes the record with as many ``os.write`` calls as it takes, fsyncs, and on
   any failure truncates the file back to the size it had before, so a record
   is in the file whole or not at all;
4. seals the record when the sealing state exists (:mod:`appshell.audit.seal`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from appshell.audit.index import index_path, note_session
from appshell.audit.records import GENESIS, VERSION, canonical, digest
from appshell.audit.seal import Sealer, state_path
from appshell.private import private_dir

__all__ = ["FileSink", "FileChanged", "read_tail", "rotate"]


class FileChanged(OSError):
    """The audit file is no longer the one the sink opened: unlinked, replaced or cut."""


class _Reopen(Exception):
    """The open file was rotated: go on in the file now at the path."""


def _as_record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if isinstance(record, dict) and isinstance(record.get("seq"), int) and isinstance(record.get("hash"), str):
        return record
    return None


def read_tail(fd: int, size: int) -> tuple[dict[str, Any] | None, int, bytes]:
    """The last whole record of the file open at *fd*, the offset where it ends, and the bytes after it.

    Bytes after the last record are damage: a write torn by a crash (no end of
    line), or lines that are not records. Read from the end, in growing chunks.
    """
    if size == 0:
        return None, 0, b""
    pos, buf, chunk = size, b"", 4096
    while True:
        step = min(chunk, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        end = buf.rfind(b"\n")
        while end >= 0:
            start = buf.rfind(b"\n", 0, end) + 1
            if start == 0 and pos > 0:
                break  # this line may begin before what has been read
            record = _as_record(buf[start:end])
            if record is not None:
                return record, pos + end + 1, buf[end + 1 :]
            end = start - 1
        if pos == 0:
            return None, 0, buf
        chunk *= 4


class FileSink:
    """Appends records to *path*: O_APPEND, 0600, flock, whole-or-nothing writes, fsync."""

    name = "file"

    def __init__(self, path: Path, seal_state: Path | None = None) -> None:
        self.path = path
        private_dir(path.parent)
        # O_APPEND: every write lands at the end, whatever else has the file open.
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self.end = os.fstat(self.fd).st_size  # the file may never be shorter than this again
        # Sealing is on when the state exists (`appshell audit init`); its key is read at each append.
        self.seal_state = seal_state or state_path(path)
        self.sealer = Sealer(self.seal_state) if self.seal_state.exists() else None
        self.index = index_path(path)

    # -- checks -----------------------------------------------------------------

    def _check_identity(self, size: int) -> None:
        """Is the open file still the file at the path, and at least as long as this sink left it?"""
        mine = os.fstat(self.fd)
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            raise FileChanged(
                errno.ENOENT, f"{self.path} was removed while this session had it open (unlinked)"
            ) from None
        if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
            if self._rotated(mine):
                raise _Reopen()
            raise FileChanged(
                errno.ESTALE, f"{self.path} is no longer the file this session opened (replaced or moved)"
            )
        if size < self.end:
            raise FileChanged(
                errno.EIO, f"{self.path} is {size} bytes, shorter than the {self.end} this session left (cut)"
            )

    # -- appending ----------------------------------------------------------------

    def _rotated(self, mine: os.stat_result) -> bool:
        """Was the open file rotated (`appshell audit rotate`), the path now a file that continues its chain?"""
        for sibling in self.path.parent.glob(f"{self.path.stem}.*{self.path.suffix}"):
            there = os.stat(sibling)
            if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
                with self.path.open("rb") as f:
                    first = _as_record(f.readline().rstrip(b"\n"))
                return first is not None and first.get("event") == "log_rotated" and first.get("from") == sibling.name
        return False

    def append(self, body: dict[str, Any], after: dict[str, Any] | None = None) -> dict[str, Any]:
        """Seal *body* as the next record; *after*: the record a new, empty file continues (rotation)."""
        while True:
            fcntl.flock(self.fd, fcntl.LOCK_EX)  # concurrent sessions: one chain, no interleaving
            try:
                return self._append_locked(body, after)
            except _Reopen:
                pass
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)  # the chain goes on in the new file at the path
            self.fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            self.end = 0

    def _append_locked(self, body: dict[str, Any], after: dict[str, Any] | None) -> dict[str, Any]:
        size = os.fstat(self.fd).st_size
        self._check_identity(size)
        last, last_end, damage = read_tail(self.fd, size)
        if last is None and not damage and after is not None:
            last = after
        seq, prev = (last["seq"] + 1, str(last["hash"])) if last else (1, GENESIS)
        if damage:
            body = {
                **body,
                "torn": {"offset": last_end, "bytes": len(damage), "sha256": hashlib.sha256(damage).hexdigest()},
            }
        record: dict[str, Any] = {"v": VERSION, "seq": seq, **body, "prev": prev}
        state = None
        if self.sealer is None and self.seal_state.exists():
            self.sealer = Sealer(self.seal_state)  # `audit init` ran while this session was open
        if self.sealer is not None:
            state = self.sealer.catch_up(self.sealer.read(), last)
            self.sealer.sign(record, state)
        record["hash"] = digest(record)
        # A torn write keeps its bytes (they are evidence, hashed in `torn`);
        # the new record starts on a line of its own.
        data = (b"\n" if damage and not damage.endswith(b"\n") else b"") + canonical(record) + b"\n"
        self._write_whole(data, size)
        if self.sealer is not None and state is not None:
            try:
                self.sealer.step(state, record)  # erase the key that sealed it
            except BaseException:
                self._truncate(size)  # whole or not at all: without its key step, not at all
                raise
        self.end = size + len(data)
        if record["event"] == "session_start":
            note_session(self.index, record["session"], size + len(data) - len(canonical(record)) - 1)
        return record

    def _write_whole(self, data: bytes, size: int) -> None:
        """Write all of *data* and fsync, or leave the file at *size* bytes and raise."""
        try:
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)  # a full disk writes part, then raises
                if written <= 0:
                    raise OSError(errno.ENOSPC, "the write made no progress")
                view = view[written:]
            os.fsync(self.fd)
        except BaseException:
            self._truncate(size)
            raise

    def _truncate(self, size: int) -> None:
        try:
            os.ftruncate(self.fd, size)  # nothing of this record stays in the file
            os.fsync(self.fd)
        except OSError:
            pass  # the next append finds the torn bytes and records them

    def close(self) -> None:
        os.close(self.fd)
        if self.sealer is not None:
            self.sealer.close()


def rotate(path: Path) -> Path:
    """Move *path* to ``<stem>.<first seq>.jsonl`` and start a new file whose first record continues the chain."""
    from appshell.audit.records import now_rfc3339
    from appshell.errors import UsageError

    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # no session appends while the file moves
        size = os.fstat(fd).st_size
        last, _, damage = read_tail(fd, size)
        with path.open("rb") as f:
            first = _as_record(f.readline().rstrip(b"\n"))
        if last is None or first is None or damage:
            raise UsageError(
                f"{path} has no whole records to rotate, or ends torn",
                "append a session first (it acknowledges a torn end), then rotate",
            )
        rotated = path.with_name(f"{path.stem}.{int(first['seq']):012d}{path.suffix}")
        # The new file is made whole under another name, then put in place in one rename:
        # a session that opens the path at any moment finds either file, never a missing
        # or an empty one, and a session holding the old file follows (see _rotated).
        fresh = path.with_name(path.name + ".rotating")
        fresh.unlink(missing_ok=True)
        sink = FileSink(fresh, seal_state=state_path(path))
        try:
            sink.append({"ts": now_rfc3339(), "session": "-", "event": "log_rotated", "from": rotated.name}, after=last)
        finally:
            sink.close()
        os.link(path, rotated)  # the old file under its rotated name (and still at the path)
        os.rename(fresh, path)
        if index_path(path).exists():
            os.rename(index_path(path), index_path(rotated))
        return rotated
    finally:
        os.close(fd)
