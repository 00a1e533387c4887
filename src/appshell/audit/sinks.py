"""Where audit records go: a file, an SQL table, syslog.

A sink's ``append(body)`` seals the record into its own chain and makes it
durable before returning; it raises on any failure, and the auditor decides
whether that stops the session (``audit.required``) or only warns.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from appshell.audit.filesink import FileSink
from appshell.audit.records import GENESIS, canonical, seal
from appshell.audit.sqlsink import SqlSink

__all__ = ["AuditSink", "FileSink", "SqlSink", "SyslogSink"]


class AuditSink(Protocol):
    name: str

    def append(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


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
