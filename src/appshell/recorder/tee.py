"""A program session's output, passed on and recorded: ``audit.record_output`` without a terminal relay.

At a terminal the relay's pty carries what the session shows (:mod:`appshell.recorder.relay`). A
program (``-c``, a script, stdin) has no relay, so under ``audit.record_output`` its stdout and
stderr go through the recorder instead, as sudo's ``log_stdout``/``log_stderr`` do: each through a
pty where the operator's stream is a terminal (the session still writes to a terminal: its tables
fit, its colours stay), else through a pipe. The recorder writes every byte on to where the stream
went before and records it as ``io`` events of stream ``"o"`` — what was shown, both streams in the
order they came — batched like the relay's (the first byte's time; at most 50 ms or 4 KiB a batch),
at most *cap* bytes, then one ``"m"`` marker.

Where the operator's side of a stream is gone (``appshell -c … | head -1``), the recorder stops
reading it, so the session's next write fails as it would have without the recorder. A reader that
is there but does not read (a pager) holds the session back as it would without the recorder —
until the recorder is asked to stop (SIGTERM, SIGHUP): then what waits is dropped, never a hang.
After the session's exit the recorder passes on what its pipes still hold, at most :data:`DRAIN_MAX`
bytes a stream: more can only come from a process the program left behind, which gets EPIPE.

At a terminal (stdin and stdout both one), a program session goes through the relay instead
(appshell.cli.recorded): there ``/dev/tty`` is the recorder's pty too. Here, where stdin is not a
terminal, ``/dev/tty`` is still the operator's: a program can write there around the record.
"""

from __future__ import annotations

import errno
import os
import select
import time
from collections.abc import Callable

from appshell.recorder.relay import CAP_MARKER, Batch, copy_window_size, within_cap

__all__ = ["Tee"]

Record = Callable[[float, str, bytes], None]

_READ = 65536
DRAIN_MAX = 1 << 20  # bytes a stream may still hold at the session's exit (Linux's largest pipe by default)
_TICK = 0.1  # seconds between looks at give_up() while the operator's side does not read


class Tee:
    """The recorder's ends of the session's stdout and stderr (fds 1 and 2), made before the fork."""

    def __init__(self, cap: int | None, flush_interval: float = 0.05, flush_bytes: int = 4096) -> None:
        self.cap = cap
        self.flush_interval = flush_interval
        self.flush_bytes = flush_bytes
        self.record: Record = lambda t, code, data: None  # set once the record is open
        self.give_up: Callable[[], bool] = lambda: False  # the supervisor's: a stop was asked for
        self.kinds: dict[str, str] = {}  # "stdout"/"stderr" -> "pty" or "pipe": for the session_start
        self._ends: list[tuple[int, int, int]] = []  # (the recorder's read end, the session's end, where it goes)
        self._start = time.monotonic()
        self._batch = Batch("o")  # both streams, in the order they came: what was shown
        self.recorded = 0
        self.capped = False
        self._last = 0  # bytes of the last read
        for fd, name in ((1, "stdout"), (2, "stderr")):
            if os.isatty(fd):
                ours, theirs = os.openpty()
                copy_window_size(fd, theirs)
                self.kinds[name] = "pty"
            else:
                ours, theirs = os.pipe()
                self.kinds[name] = "pipe"
            os.set_inheritable(theirs, True)
            self._ends.append((ours, theirs, fd))

    # -- the two sides of the fork ------------------------------------------------------

    def in_child(self) -> None:
        """The session's fds 1 and 2 become its ends; the recorder's ends are closed in it."""
        for ours, theirs, fd in self._ends:
            os.dup2(theirs, fd)
            os.close(theirs)
            os.close(ours)

    def in_recorder(self) -> None:
        """The session's ends closed here: the recorder reads EOF (or EIO) once the session's are gone."""
        for ours, theirs, _ in self._ends:
            os.close(theirs)
            os.set_blocking(ours, False)

    def fds(self) -> list[int]:
        return [ours for ours, _, _ in self._ends]

    # -- the loop ------------------------------------------------------------------------

    def on_readable(self, fd: int, most: int = _READ) -> bool:
        """Pass on and record what *fd* holds; False once it is at its end or its reader gone (then it is closed)."""
        target = next(out for ours, _, out in self._ends if ours == fd)
        self._last = 0
        try:
            data = os.read(fd, min(most, _READ))
        except BlockingIOError:
            return True
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            data = b""  # a pty: EIO once every holder of the slave has closed it
        if data:
            self._last = len(data)
            self._add(data)
            if _write_all(target, data, self.give_up):
                return True
        self._forget(fd)
        return False

    def timeout(self) -> float | None:
        """Seconds until the batch waiting is due, or None where none waits."""
        if not self._batch.parts:
            return None
        return max(0.0, self._batch.t + self.flush_interval - (time.monotonic() - self._start))

    def flush_due(self) -> None:
        if self._batch.parts and time.monotonic() - self._start >= self._batch.t + self.flush_interval:
            self.flush()

    def drain(self) -> None:
        """After the session's exit: what its ends still hold (a process it left may hold them: not waited for)."""
        for fd in self.fds():
            left = DRAIN_MAX
            while left > 0 and _ready(fd) and self.on_readable(fd, left):
                left -= self._last
        self.flush()

    def close(self) -> None:
        self.flush()
        for fd in self.fds():
            self._forget(fd)

    # -- batches -------------------------------------------------------------------------

    def _add(self, data: bytes) -> None:
        if self.capped:
            return
        t = time.monotonic() - self._start
        data, self.capped = within_cap(self.recorded, self.cap, data)
        if data:
            self._batch.add(t, data)
            self.recorded += len(data)
        if self.capped:
            self.flush()
            self.record(t, "m", CAP_MARKER.format(n=self.cap).encode())
        elif self._batch.size >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if self._batch.parts:
            t = self._batch.t
            self.record(t, "o", self._batch.take())

    def _forget(self, fd: int) -> None:
        self._ends = [end for end in self._ends if end[0] != fd]
        try:
            os.close(fd)
        except OSError:
            pass


def _ready(fd: int) -> bool:
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except OSError:
        return False


def _write_all(fd: int, data: bytes, give_up: Callable[[], bool]) -> bool:
    """Write *data* on to *fd*, waiting while its reader does not read; False where the reader is gone, or
    where *give_up* says to stop waiting (the rest is dropped)."""
    view = memoryview(data)
    while view:
        try:
            if not select.select([], [fd], [], _TICK)[1]:
                if give_up():
                    return False
                continue
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return False
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EIO):
                return False
            raise
    return True
