"""The recorder's side of the channel: check each report of the session, seal it, acknowledge it.

:class:`Recorder` owns no loop of its own: the supervisor's (:class:`appshell.recorder.spawn.Supervisor`) calls
:meth:`Recorder.on_readable` when the channel is readable (so can the pty relay's loop), and
:meth:`Recorder.end` once ``waitpid`` has said how the child ended.

What is checked, for every message (docs: the channel is untrusted, the operator's code holds its fd):

* the frame: at most ``max_message`` bytes (4 MiB); JSON; an object ``{"kind", "fields"}`` and nothing
  else; ``kind`` one of :data:`~appshell.recorder.channel.KINDS`; ``fields`` an object nested at most
  :data:`MAX_DEPTH` deep;
* no field the recorder sets (:data:`RECORDER_FIELDS`: ``session``, ``ts``, ``seq``, ``hash``, ``mac``,
  ``epoch``, ``by`` and the rest of the chain's own);
* the order: ``session_start`` once and first; ``statement``/``nested`` with an integer ``n`` greater
  than every ``n`` before it, a text ``source``, a ``parent`` that is a known ``n``; ``result`` only
  for a known statement's ``n`` (not a nested one), once; ``session_end`` once; nothing after it.

A message that passes is sealed through the auditor with ``"by": "session"`` (the session's
``session_start`` as the event ``session_info``: the recorder wrote the session's one
``session_start`` itself, before it started the child). A message that fails is never dropped: the
recorder seals a ``refused_report`` record (``"by": "recorder"``) holding what was sent (or, for one
over the cap or not JSON, its size, sha256 and first bytes) and why, answers an error, and goes on.
Going on, not ending the session: the length prefix keeps the stream in frame, every refusal is on
the record, and an honest session never sends one; a session whose code forges reports can as well
send well-formed ones, so ending it would hide nothing and lose the rest of its record.

The child's own ``session_end`` is acknowledged and kept; the record's ``session_end`` is written by
the recorder from the exit status, with the child's report inside it (``reported``).
"""
# Over 350 lines: the recorder's checks and its framing
# are one contract with the untrusted channel, read together.

from __future__ import annotations

import hashlib
import json
import select
import signal
import socket
import time
from typing import Any, Protocol

from appshell.errors import AuditFailure
from appshell.recorder.channel import HEADER, KINDS, MAX_MESSAGE, encode

__all__ = [
    "REPLY_TIMEOUT",
    "AuditWriter",
    "as_writer",
    "Recorder",
    "Frames",
    "Oversize",
    "RECORDER_FIELDS",
    "MAX_DEPTH",
    "exit_code",
    "end_status",
]

# Fields only the recorder (or the sinks under it) sets; a report holding one is refused.
RECORDER_FIELDS = frozenset(
    {"session", "ts", "seq", "hash", "mac", "epoch", "by", "v", "prev", "torn", "redacted", "event"}
)
MAX_DEPTH = 32  # lists and objects in a report's fields, nested: the auditor's redaction recurses over them
PREVIEW = 256  # bytes of a refused frame kept in its record when it cannot be kept whole
# A report over the cap is read past (its sha256 kept) so an honest session goes on; one declaring more than
# this is not: reading gigabytes would leave the session waiting for an answer that never comes (a hang).
SKIP_LIMIT = 256 * 1024 * 1024
REPLY_TIMEOUT = 5.0  # seconds a session may leave the recorder's acknowledgements unread before its channel is closed
_EVENT = {"session_start": "session_info", "statement": "statement", "nested": "statement", "result": "result"}


class AuditWriter(Protocol):
    """What the recorder needs of the auditor (``appshell.audit.auditor.Auditor``)."""

    @property
    def session(self) -> str: ...

    @property
    def required(self) -> bool: ...

    def start(self, fields: dict[str, Any]) -> None: ...

    def write(self, event: str, fields: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def as_writer(auditor: Any) -> AuditWriter:
    """*auditor* as an :class:`AuditWriter`: it must have ``write``
    and ``close`` (``appshell.audit.auditor.Auditor`` has)."""
    if not (callable(getattr(auditor, "write", None)) and callable(getattr(auditor, "close", None))):
        raise TypeError(f"{type(auditor).__name__} has no write() and close(): it cannot keep a recorder's record")
    return auditor  # type: ignore[no-any-return]


def exit_code(returncode: int) -> int:
    """A child's exit status as a shell reports it: its code, or 128 + the signal that ended it."""
    return 128 - returncode if returncode < 0 else returncode


def signal_name(signo: int) -> str:
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"signal {signo}"


def end_status(returncode: int, reported: dict[str, Any] | None) -> str:
    """The session_end's ``status``: ``killed`` for a signal; else what the session reported; else by exit code."""
    if returncode < 0:
        return "killed"
    if reported is not None and isinstance(reported.get("status"), str):
        return str(reported["status"])
    return "ok" if returncode == 0 else "error"


class Oversize:
    """A frame over the cap, read past without keeping it: its declared size, its sha256, its first bytes."""

    def __init__(self, size: int) -> None:  # (not a dataclass: importing dataclasses costs the recorder ~10 ms)
        self.size = size
        self.unframed = False  # declared beyond SKIP_LIMIT: not read past; the channel is out of frame for good
        self.hasher = hashlib.sha256()
        self.preview = b""

    def add(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        if len(self.preview) < PREVIEW:
            self.preview += chunk[: PREVIEW - len(self.preview)]


class Frames:
    """Splits the bytes of the channel into frames; a frame over *cap* comes out as an :class:`Oversize`."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf = bytearray()
        self.skipping: Oversize | None = None
        self.skip_left = 0

    def feed(self, data: bytes) -> list[bytes | Oversize]:
        out: list[bytes | Oversize] = []
        buf = self.buf
        buf += data
        while True:
            if self.skipping is not None:
                take = min(self.skip_left, len(buf))
                self.skipping.add(bytes(buf[:take]))
                del buf[:take]
                self.skip_left -= take
                if self.skip_left:
                    return out
                out.append(self.skipping)
                self.skipping = None
                continue
            if len(buf) < HEADER.size:
                return out
            (size,) = HEADER.unpack_from(buf)
            if size > self.cap:
                del buf[: HEADER.size]
                self.skipping, self.skip_left = Oversize(size), size
                if size > SKIP_LIMIT:  # not read past: refused at once, and the channel ends (see SKIP_LIMIT)
                    self.skipping.unframed = True
                    out.append(self.skipping)
                    self.skipping = None
                    buf.clear()
                    return out
                continue
            if len(buf) < HEADER.size + size:
                return out
            out.append(bytes(buf[HEADER.size : HEADER.size + size]))
            del buf[: HEADER.size + size]


class Refusal(Exception):
    """A report the recorder will not seal as the session's: *reason* says why."""


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in *value* (iteratively: the value is the untrusted one)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            items: Any = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((v, level + 1) for v in items)
    return deepest


def _is_n(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


class Recorder:
    """Serves one session's channel: every report checked, sealed through *auditor*, and answered."""

    def __init__(
        self,
        auditor: Any,
        sock: socket.socket,
        *,
        max_message: int = MAX_MESSAGE,
        reply_timeout: float = REPLY_TIMEOUT,
        start: dict[str, Any] | None = None,
    ) -> None:
        self.writer = as_writer(auditor)
        # With *start*, the session's one session_start is written when the session reports its own (what
        # it learnt booting the app: its label, the database), the recorder's fields over the session's,
        # and ``session_reported`` naming the session's; without, the recorder wrote it before the child ran.
        self.start = start
        self.held: list[tuple[str, dict[str, Any]]] = []  # the recorder's own records (typed input) until then
        self.sock = sock
        self.reply_timeout = reply_timeout
        sock.settimeout(reply_timeout)  # a reply the session does not read cannot block the recorder for long
        self.frames = Frames(max_message)
        self.max_message = max_message
        self.open = True  # False once the channel is at its end (EOF, or closed by the recorder)
        self.started = False  # the session reported its start
        self.reported_end: dict[str, Any] | None = None
        self.last_n = 0
        self.results: dict[int, bool] = {}  # n of each statement -> its result was recorded
        self.known: set[int] = set()  # every n sealed, statements and nested code
        self.statements = 0
        self.refused = 0
        self.closed_early: str | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    # -- reading ------------------------------------------------------------------

    def on_readable(self) -> bool:
        """Read what the channel holds and answer every whole message in it; False once the channel has ended."""
        try:
            data = self.sock.recv(262144)
        except (BlockingIOError, TimeoutError, InterruptedError):
            return self.open
        except OSError:  # ECONNRESET: the session's end is gone
            data = b""
        if not data:
            self.open = False
            return False
        for frame in self.frames.feed(data):
            self._reply(self.handle(frame))
            if isinstance(frame, Oversize) and frame.unframed:
                self.channel_closed(
                    f"the session declared a report of {frame.size} bytes, beyond what the recorder reads "
                    "past: the channel is out of frame, and nothing after it can be recorded"
                )
                self.shutdown()
            if not self.open:
                break
        return self.open

    def drain(self) -> None:
        """Answer what is already in the channel, without waiting for more (the child has exited)."""
        until = time.monotonic() + 1.0  # a grandchild holding the channel open cannot keep the recorder here
        while self.open and time.monotonic() < until and select.select([self.sock], [], [], 0)[0]:
            self.on_readable()

    def _reply(self, reply: dict[str, Any]) -> None:
        try:
            self.sock.sendall(encode(reply))
        except TimeoutError:
            self.channel_closed(f"the session left the recorder's acknowledgements unread for {self.reply_timeout:g} s")
            self.shutdown()
        except OSError:  # EPIPE, ECONNRESET: the session's end is closed; the record stays as it was written
            self.open = False

    def shutdown(self) -> None:
        self.open = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # the session's next request fails closed
        except OSError:
            pass

    # -- checking and sealing -----------------------------------------------------

    def handle(self, frame: bytes | Oversize) -> dict[str, Any]:
        """The reply to one frame: sealed and ``ok``, or refused (and the refusal sealed) with ``what``/``fix``."""
        kind, message = "report", None
        try:
            message = self._parse(frame)
            kind = message["kind"]
            fields = message["fields"]
            self._check(kind, fields)
        except Refusal as refusal:
            return self._refuse(frame, message, kind, str(refusal))
        return self._seal(kind, fields)

    def _parse(self, frame: bytes | Oversize) -> dict[str, Any]:
        if isinstance(frame, Oversize):
            raise Refusal(f"the report is {frame.size} bytes, over the recorder's cap of {self.max_message}")
        try:
            message = json.loads(frame)
        except (ValueError, RecursionError):
            raise Refusal("the report is not JSON") from None
        if not isinstance(message, dict) or set(message) != {"kind", "fields"}:
            raise Refusal('the report is not an object of exactly "kind" and "fields"')
        if message["kind"] not in KINDS:
            raise Refusal(f"the kind {str(message['kind'])[:80]!r} is not one of {', '.join(KINDS)}")
        if not isinstance(message["fields"], dict):
            raise Refusal("its fields are not an object")
        return message

    def _check(self, kind: str, fields: dict[str, Any]) -> None:
        forged = sorted(RECORDER_FIELDS.intersection(fields))
        if forged:
            raise Refusal(f"it sets {', '.join(forged)}, which only the recorder sets")
        if _depth(fields) > MAX_DEPTH:
            raise Refusal(f"its fields nest more than {MAX_DEPTH} deep")
        if self.reported_end is not None:
            raise Refusal("it came after the session reported its end")
        if kind == "session_start":
            if self.started:
                raise Refusal("the session reported its start already")
            return
        if not self.started:
            raise Refusal("it came before the session reported its start")
        n: Any = fields.get("n")
        if kind in ("statement", "nested"):
            if not _is_n(n):
                raise Refusal(f"its n ({str(n)[:40]}) is not a positive integer")
            if n <= self.last_n:
                raise Refusal(f"its n ({n}) is not greater than the last one recorded ({self.last_n})")
            if not isinstance(fields.get("source"), str):
                raise Refusal("its source is not text")
            parent = fields.get("parent")
            if parent is not None and parent not in self.known:
                raise Refusal(f"its parent ({str(parent)[:40]}) is no statement recorded before it")
        elif kind == "result":
            if not _is_n(n) or n not in self.results:
                raise Refusal(f"its n ({str(n)[:40]}) is no statement recorded in this session")
            if self.results[n]:
                raise Refusal(f"the result of statement {n} was recorded already")

    def _seal(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        if kind == "session_end":  # kept for the recorder's own session_end, written after waitpid
            self.reported_end = fields
            return {"ok": True}
        try:
            if kind == "session_start" and self.start is not None:
                self._write_start(fields, sorted(set(fields) - set(self.start)))
            else:
                self.writer.write(_EVENT[kind], {**fields, "by": "session"})
        except AuditFailure as exc:
            return {"ok": False, "what": exc.what, "fix": exc.fix}
        n: Any = fields.get("n")
        if kind == "session_start":
            self.started = True
        elif kind == "result":
            self.results[n] = True
        else:
            self.last_n = n
            self.known.add(n)
            self.statements += 1
            if kind == "statement":
                self.results[n] = False
        return {"ok": True}

    def _refuse(
        self, frame: bytes | Oversize, message: dict[str, Any] | None, kind: str, reason: str
    ) -> dict[str, Any]:
        self.refused += 1
        evidence: dict[str, Any]
        if isinstance(frame, Oversize):
            evidence = {
                "bytes": frame.size,
                "sha256": frame.hasher.hexdigest(),
                "preview": frame.preview.decode("utf-8", "replace"),
            }
        elif message is None or _depth(message["fields"]) > MAX_DEPTH:  # not JSON, or too deep to keep as it is
            evidence = {
                "bytes": len(frame),
                "sha256": hashlib.sha256(frame).hexdigest(),
                "preview": frame[:PREVIEW].decode("utf-8", "replace"),
            }
        else:
            evidence = {"report": message}
        what = f"the recorder refused this {kind} report: {reason}"
        try:
            self.write("refused_report", {"by": "recorder", "kind": kind, "reason": reason, **evidence})
        except AuditFailure as exc:
            return {"ok": False, "what": f"{what}; and could not record the refusal: {exc.what}", "fix": exc.fix}
        return {
            "ok": False,
            "what": what,
            "fix": (
                "report through appshell's journal: the recorder seals only reports in order, without its own fields"
            ),
        }

    # -- the recorder's own records -------------------------------------------------

    def write(self, event: str, fields: dict[str, Any]) -> None:
        """A record of the recorder's own (``"by": "recorder"``): held until the session_start is written."""
        if self.start is not None:
            self.held.append((event, fields))
        else:
            self.writer.write(event, fields)

    def _start_unreported(self) -> None:
        """The session never reported its start: the session_start with what the recorder knows, then what was held."""
        if self.start is not None:
            self._write_start({}, None)

    def _write_start(self, reported: dict[str, Any], names: list[str] | None) -> None:
        """The one session_start: the session's *reported* fields
        under the recorder's own; then the records held for it."""
        assert self.start is not None
        self.writer.start({**reported, **self.start, "by": "recorder", "session_reported": names})
        self.start = None
        for event, held in self.held:
            self.writer.write(event, held)
        self.held.clear()

    def channel_closed(self, reason: str) -> None:
        """Record, once, that the channel ended while the session went on."""
        if self.closed_early is None:
            self.closed_early = reason
            self._start_unreported()
            self.writer.write("channel_closed", {"by": "recorder", "reason": reason})

    def end(self, returncode: int, *, pid: int | None = None, duration_ms: float | None = None, **extra: Any) -> None:
        """Write the session_end from the child's exit status (and
        its own report, if it sent one), then close the sinks."""
        fields: dict[str, Any] = {
            "by": "recorder",
            "status": end_status(returncode, self.reported_end),
            "exit_code": returncode if returncode >= 0 else None,
            "signal": signal_name(-returncode) if returncode < 0 else None,
            "reported": self.reported_end,
            "statements": self.statements,
            "refused": self.refused,
            "pid": pid,
            "duration_ms": duration_ms,
            **extra,
        }
        try:
            self._start_unreported()
            if returncode == 0 and self.reported_end is None and self.closed_early is None:
                # It says it succeeded, without its end report: whatever it ran after its last report is unknown.
                self.channel_closed(
                    "the session exited without reporting its end: what it ran after its last report is unknown"
                )
            self.writer.write("session_end", fields)
        finally:
            self.writer.close()
