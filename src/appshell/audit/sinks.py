"""Where audit records go: a file, an SQL table, syslog.

A sink's ``append(body)`` seals the record into its own chain and makes it
durable before returning; it raises on any failure, and the auditor decides
whether that stops the session (``audit.required``) or only warns.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Protocol

from appshell.audit.records import GENESIS, canonical, seal

__all__ = ["AuditSink", "FileSink", "SqlSink", "SyslogSink", "last_line"]


class AuditSink(Protocol):
    name: str

    def append(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


def last_line(fd: int) -> tuple[bytes, bool]:
    """The last complete line of the file open at *fd* (b"" if none), read from its end,
    and whether the file ends torn (bytes after the last newline)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return b"", False
    torn = os.pread(fd, 1, size - 1) != b"\n"
    chunk = 4096
    data = b""
    pos = size
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
        # Skip a torn last line (a crash mid-write): only complete lines count.
        body = data[: data.rfind(b"\n") + 1] if not data.endswith(b"\n") else data
        lines = body.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or pos == 0:
            return lines[-1], torn
        chunk *= 2
    return b"", torn


class FileSink:
    """One JSON line per record; O_APPEND, 0600, flock around read-tail-and-append, fsync."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_APPEND: every write lands at the end, whatever else has the file open.
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.reader = os.open(path, os.O_RDONLY)

    def append(self, body: dict[str, Any]) -> dict[str, Any]:
        fcntl.flock(self.fd, fcntl.LOCK_EX)  # concurrent sessions: one chain, no interleaving
        try:
            tail, torn = last_line(self.reader)
            seq, prev = 1, GENESIS
            if tail:
                try:
                    last = json.loads(tail)
                    seq, prev = int(last["seq"]) + 1, str(last["hash"])
                except (ValueError, KeyError, TypeError):
                    # A damaged last line: keep appending; `audit verify` names the line.
                    seq, prev = 0, GENESIS
            record = seal(body, seq, prev)
            line = canonical(record) + b"\n"
            if torn:
                line = b"\n" + line  # never glue a record onto a torn line
            os.write(self.fd, line)
            os.fsync(self.fd)
            return record
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.reader)


class SqlSink:
    """Table ``appshell_audit``, written on its own connection and transaction.

    The app's session may sit in a sandbox transaction that is rolled back at
    exit; this sink's engine is separate, so its records are committed at once
    and no rollback can erase them.
    """

    name = "sql"
    TABLE = "appshell_audit"

    def __init__(self, url: str) -> None:
        from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, create_engine

        self.engine = create_engine(url, pool_size=1, max_overflow=0) if not url.startswith("sqlite") else create_engine(url)
        metadata = MetaData()
        self.table = Table(
            self.TABLE,
            metadata,
            Column("seq", BigInteger, primary_key=True, autoincrement=False),
            Column("ts", String(32), nullable=False),
            Column("session", String(64), nullable=False, index=True),
            Column("event", String(32), nullable=False),
            Column("prev", String(64), nullable=False),
            Column("hash", String(64), nullable=False),
            Column("record", Text, nullable=False),
        )
        metadata.create_all(self.engine)

    def append(self, body: dict[str, Any]) -> dict[str, Any]:
        from sqlalchemy.exc import IntegrityError

        for _ in range(4):
            try:
                return self._append(body)
            except IntegrityError:
                # Two writers read the same tail (SQLite has no table lock): `seq` is
                # the primary key, so one lost; it reads the new tail and goes again.
                continue
        return self._append(body)  # the fifth try: its error, if any, is the sink's failure

    def _append(self, body: dict[str, Any]) -> dict[str, Any]:
        from sqlalchemy import select, text

        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Serialise writers so the chain stays linear across hosts. An advisory
                # lock, not LOCK TABLE: that needs UPDATE/DELETE rights, which an
                # append-only role (INSERT, SELECT) must not have.
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('appshell_audit'))"))
            last = conn.execute(select(self.table.c.seq, self.table.c.hash).order_by(self.table.c.seq.desc()).limit(1)).first()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            record = seal(body, seq, prev)
            conn.execute(
                self.table.insert().values(
                    seq=seq, ts=record["ts"], session=record["session"], event=record["event"],
                    prev=prev, hash=record["hash"], record=canonical(record).decode("utf-8"),
                )
            )
            return record

    def close(self) -> None:
        self.engine.dispose()


class SyslogSink:
    """Each record as one JSON message, facility authpriv, to a syslog socket.

    The address is a UNIX socket path (default ``/dev/log``) or ``host:port``
    (UDP), from APPSHELL_SYSLOG_ADDRESS. The socket is written directly, not
    through the ``syslog`` module, because that one cannot report a failure —
    and a fail-closed audit must know.
    """

    name = "syslog"
    PRIORITY = 10 * 8 + 6  # facility authpriv (10), severity info (6)

    def __init__(self, address: str = "/dev/log") -> None:
        import socket

        if ":" in address and not address.startswith("/"):
            host, port = address.rsplit(":", 1)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.connect((host, int(port)))
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.connect(address)
        self.tag = f"appshell[{os.getpid()}]"
        self.seq = 0
        self.prev = GENESIS

    def append(self, body: dict[str, Any]) -> dict[str, Any]:
        # syslog interleaves many processes: the chain here links this session's records only.
        self.seq += 1
        record = seal(body, self.seq, self.prev)
        self.sock.send(f"<{self.PRIORITY}>{self.tag}: ".encode() + canonical(record))
        self.prev = record["hash"]
        return record

    def close(self) -> None:
        self.sock.close()
