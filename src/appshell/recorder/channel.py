"""The channel between the session (the child) and the recorder: the wire format and the session's side.

One ``AF_UNIX``/``SOCK_STREAM`` socket pair, made before the fork; the child keeps one end. Every
message either way is a 4-byte big-endian length and that many bytes of UTF-8 JSON. The session sends
``{"kind": KIND, "fields": {...}}`` and waits for the reply: ``{"ok": true}`` once the recorder has
sealed the record, else ``{"ok": false, "what": ..., "fix": ...}``.
Strictly one request, then its reply: a required audit lets no statement run before its record is
acknowledged, so nothing would be gained by pipelining.

A stream rather than ``SOCK_SEQPACKET``: a packet must fit the socket's send buffer (about 200 KiB
unless root raises ``wmem_max``), while a statement's source may be megabytes; and macOS has no
``SOCK_SEQPACKET`` over ``AF_UNIX``. A length prefix keeps the stream in frame even across a message
the recorder refuses for its size: it reads past the declared length and answers.

This module is the only part of the recorder the session imports: stdlib only, nothing heavy.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from collections.abc import Mapping
from typing import Any

from appshell.errors import AuditFailure

__all__ = ["MAX_MESSAGE", "KINDS", "HEADER", "Channel", "SessionSink", "SessionAuditor", "encode"]

MAX_MESSAGE = 4 * 1024 * 1024  # a message body larger than this is refused (and recorded as refused)
MAX_REPLY = 1024 * 1024
# The longest the session waits for an acknowledgement: the recorder answers in milliseconds (one fsync); a
# channel the session's own code put out of frame would otherwise leave it waiting for ever (fail closed, not a hang).
REPLY_WAIT = 15.0
HEADER = struct.Struct(">I")
# What the session may report; the recorder refuses any other kind.
KINDS = ("session_start", "statement", "nested", "result", "session_end")

# What a failed request means for the code it was about, said exactly: "not run" only where it was not.
_CONSEQUENCE = {
    "session_start": "the session was not started",
    "statement": "the statement was not run",
    "nested": "the code was not run",
    "result": "it ran; its outcome could not be recorded",
    "session_end": "the session's statements ran; its end could not be reported",
}
_GONE_FIX = "the session cannot be recorded any more: end it (Ctrl-D) and start appshell again"


def encode(message: Mapping[str, Any]) -> bytes:
    """*message* framed for the channel: its length, then its JSON (ASCII, so lone surrogates survive)."""
    body = json.dumps(message, separators=(",", ":"), default=str).encode("ascii")
    return HEADER.pack(len(body)) + body


def _consequence(kind: str) -> str:
    return _CONSEQUENCE.get(kind, f"its {kind} record was not written")


class Channel:
    """The session's end of the channel: ``request(kind, fields)`` blocks until the recorder acknowledges."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.broken: str | None = None  # why the channel can no longer be used, once it cannot
        self._inbuf = bytearray()
        self._owed = 0  # replies the recorder sent for requests whose caller was interrupted while waiting
        self._lock = threading.Lock()
        self._holder: int | None = None

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        """The channel on *fd*, which this process's own children will not inherit."""
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        sock.settimeout(REPLY_WAIT)
        return cls(sock)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.broken = self.broken or "this session closed its channel to the recorder"
        self.sock.close()

    def request(self, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Send one report and wait for its acknowledgement; AuditFailure if the recorder refused it or is gone."""
        me = threading.get_ident()
        if self._holder == me:  # a signal handler reporting in the middle of another report of this thread
            raise AuditFailure(
                f"a {kind} report was made while another was waiting for the recorder; {_consequence(kind)}",
                "report from a signal handler only what can wait for the statement it interrupted",
            )
        with self._lock:
            self._holder = me
            try:
                return self._exchange(kind, encode({"kind": kind, "fields": fields}))
            finally:
                self._holder = None

    def _exchange(self, kind: str, data: bytes) -> dict[str, Any]:
        if len(data) - HEADER.size > 0xFFFFFFFF:
            raise AuditFailure(
                f"a {kind} report of {len(data)} bytes cannot be framed; {_consequence(kind)}",
                f"keep a report under {MAX_MESSAGE} bytes",
            )
        reply: dict[str, Any] = {}
        try:
            while self._owed:  # an earlier request was interrupted after it was sent: its reply comes first
                self._read_reply()
                self._owed -= 1
            self._send(data)
            self._owed += 1
            reply = self._read_reply()
            self._owed -= 1
        except (BrokenPipeError, ConnectionResetError):
            self._break("the recorder process is gone (its channel is closed)")
        except OSError as exc:
            self._break(f"the channel to the recorder failed ({type(exc).__name__}: {exc})")
        if self.broken is not None:
            raise AuditFailure(f"{self.broken}; {_consequence(kind)}", _GONE_FIX)
        if reply.get("ok") is True:
            return reply
        what = str(reply.get("what") or "the recorder refused the report")
        consequence = _consequence(kind)
        # The auditor's own message says what a failed record means already: said once.
        raise AuditFailure(
            what if consequence in what else f"{what}; {consequence}", str(reply.get("fix") or _GONE_FIX)
        )

    def _send(self, data: bytes) -> None:
        if self.broken is not None:
            return
        view, sent = memoryview(data), 0
        try:
            while sent < len(data):
                sent += self.sock.send(view[sent:])
        except BaseException:
            if sent:  # part of a message is on the wire: the stream is out of frame for good
                self._break("a report was cut off half-way to the recorder")
            raise

    def _read_reply(self) -> dict[str, Any]:
        # Read into a buffer kept across calls: a KeyboardInterrupt half-way through a reply leaves it
        # there, and the next request reads the rest before its own reply (see _owed).
        if not self._fill(HEADER.size):
            return {}
        (size,) = HEADER.unpack_from(self._inbuf)
        if size > MAX_REPLY:
            self._break(f"the recorder sent a reply of {size} bytes")
            return {}
        if not self._fill(HEADER.size + size):
            return {}
        body = bytes(self._inbuf[HEADER.size : HEADER.size + size])
        del self._inbuf[: HEADER.size + size]
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            self._break("the recorder sent a reply that is not a JSON object")
            return {}
        return reply

    def _fill(self, size: int) -> bool:
        """At least *size* bytes in the buffer; False once the channel is broken or closed."""
        while self.broken is None and len(self._inbuf) < size:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                self._break(
                    f"the recorder did not answer in {REPLY_WAIT:g} s (its channel is out of frame, or it is stopped)"
                )
                return False
            if not chunk:
                self._break("the recorder process is gone (its channel is closed)")
            self._inbuf += chunk
        return self.broken is None

    def _break(self, why: str) -> None:
        self.broken = self.broken or why
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class SessionSink:
    """The journal's sink protocol (``statement(entry, extra)``, ``result(entry)``) reported over a channel.

    Duck-typed on the journal's ``Entry`` (``n``, ``source``, ``kind``, ``status``, ``error``,
    ``duration_ms``, ``sql``): a nested entry (``status == "nested"``) is reported as ``nested``.
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def statement(self, entry: Any, extra: dict[str, Any]) -> None:
        kind = "nested" if entry.status == "nested" else "statement"
        self.channel.request(kind, {"n": entry.n, "source": entry.source, "kind": entry.kind, **extra})

    def result(self, entry: Any) -> None:
        self.channel.request(
            "result",
            {
                "n": entry.n,
                "status": entry.status,
                "error": entry.error,
                "duration_ms": entry.duration_ms,
                "sql": entry.sql,
            },
        )


class SessionAuditor(SessionSink):
    """What the session holds in place of an ``Auditor`` when a recorder keeps the record.

    The same calls (``start``, ``statement``, ``result``, ``end``, ``session``, ``required``,
    ``redact``), each a report over the channel; nothing of the log, the key or the sinks.
    """

    def __init__(self, channel: Channel, session: str, required: bool, redact: Any) -> None:
        super().__init__(channel)
        self.session = session  # chosen by the recorder before the fork: the one its records carry
        self.required = required
        self.redact = (
            redact  # the session's own masking (history, echo), a convenience: the record is masked by the recorder
        )
        self.statements = 0
        self.ended = False

    def start(self, fields: Mapping[str, Any]) -> None:
        self.channel.request("session_start", fields)

    def statement(self, entry: Any, extra: dict[str, Any]) -> None:
        super().statement(entry, extra)
        self.statements += 1

    def end(self, status: str) -> None:
        """Report the session's own view of its end; the record's end is the recorder's, from waitpid."""
        if self.ended:
            return
        self.ended = True
        try:
            self.channel.request("session_end", {"status": status, "statements": self.statements})
        except AuditFailure:
            pass  # the recorder writes the session_end from the exit status whatever this report did
        finally:
            self.channel.close()
