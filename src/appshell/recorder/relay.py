"""The pty between the operator's terminal and the session, recording what is typed (and, opt-in, shown).

The recorder process owns a `Relay`; the session runs on the pty's slave side as its child, the way
`script(1)`, sudo's `log_input`/`log_output` and Teleport put a pty between a terminal and a shell::

    with Relay(record=sink, record_output=True, output_cap=1 << 20) as relay:
        proc = relay.start(lambda slave: subprocess.Popen(argv, **child_kwargs(slave)))
        relay.watch(channel.fileno(), on_channel)   # one loop serves the channel too
        relay.run(pid=proc.pid)
    status = proc.wait()

What the recording guarantees (the batching contract):

* Every byte read from the operator's terminal is appended to the pending input batch *before* it is
  written to the pty master, so the recorder holds it before the child can read it.
* The batch is handed to ``record(t, "i", data)`` before the relay forwards a byte that makes input
  act: CR, LF, or any other C0 control except BS, TAB and ESC (so ^C, ^D, ^Z, ^\\ too). A cooked-mode
  reader (``input()``) gets no line, and a line editor (IPython, ptpython) gets no Enter, that the
  record has not been handed first. If ``record`` raises, those bytes are not forwarded and the
  exception ends ``run()`` (fail closed).
* Otherwise a batch is handed over at the latest ``flush_interval`` (50 ms) after its first byte, or
  once it holds ``flush_bytes`` (4 KiB), and when ``run()`` ends. The interval counts from the first
  byte, not from the last (a quiet time): a steady paste cannot hold a batch back. At human typing
  speed that is one event per key; batches form in pastes, key repeat and escape sequences (arrows).
  ``t`` is the batch's first byte, in seconds since the relay started (``Relay.start_time`` is that
  instant on the wall clock).
  So a raw-mode child (a line editor) may act on printable keys up to that long before ``record``
  has them; the recorder holds them all the while, out of the child's reach.
* Events reach ``record`` in time order: output and input batches are flushed oldest first.

Output (``record_output=True``) is batched the same way, except that control bytes do not flush it.
At most ``output_cap`` bytes of it are recorded; then one ``"m"`` event ``output cap reached after N
bytes`` and no more output events: the relay itself goes on. Resizes are ``"r"`` events ``COLSxROWS``.

The operator's terminal is raw while the relay is entered and restored by ``__exit__``: on return,
on an exception, and on SIGTERM/SIGHUP, which end ``run()`` (``Relay.signal`` says which) instead of
killing the recorder with the terminal raw. SIGKILL cannot be caught: ``stty sane`` is the cure then.
Leaving the relay closes the pty master: a child still running gets SIGHUP, as at a terminal hang-up.
"""
# Over 350 lines: one loop with one contract (the batching rules above); the terminal's set-up, the loop and its
# batches are one state machine, read together.

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import struct
import termios
import time
import tty
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, TypeVar

__all__ = [
    "Relay",
    "Record",
    "Batch",
    "child_kwargs",
    "make_controlling_tty",
    "copy_window_size",
    "within_cap",
    "CAP_MARKER",
]

Record = Callable[[float, str, bytes], None]
"""``record(t, code, data)``: code is ``"i"`` (typed), ``"o"`` (shown), ``"r"`` (b"COLSxROWS") or ``"m"``."""

T = TypeVar("T")

CAP_MARKER = "output cap reached after {n} bytes"

# C0 controls that only edit (backspace, tab completion) or start an escape sequence do not flush;
# every other one may make the child act on what was typed (line end, EOF, signal keys).
_NO_FLUSH = frozenset(b"\x08\x09\x1b")
_FLUSHING = bytes(c for c in range(0x20) if c not in _NO_FLUSH)

_READ = 65536
_HIGH_WATER = 65536  # typed bytes waiting for the child before the relay stops reading the terminal
_POLL_IN = select.POLLIN | select.POLLHUP | select.POLLERR
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def make_controlling_tty() -> None:
    """In the child after ``setsid()``: make its stdin (the pty slave) its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def child_kwargs(slave: int) -> dict[str, Any]:
    """``subprocess.Popen`` arguments that run the child on ``slave`` as its controlling terminal.

    The child gets a session of its own (so ^C on the pty signals it, not the recorder) and the slave
    as stdin, stdout, stderr and controlling tty. ``preexec_fn`` is not safe in a process with threads:
    the recorder starts the child before it starts any.
    """
    return {
        "stdin": slave,
        "stdout": slave,
        "stderr": slave,
        "start_new_session": True,
        "preexec_fn": make_controlling_tty,
    }


def _window_size(fd: int) -> bytes | None:
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None


def copy_window_size(source: int, target: int) -> None:
    """Give the terminal *target* the window size of *source* (where *source* has one)."""
    size = _window_size(source)
    if size:
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)


def within_cap(recorded: int, cap: int | None, data: bytes) -> tuple[bytes, bool]:
    """What of *data* an output record that holds *recorded* bytes may keep under *cap*; and whether that reaches it."""
    if cap is not None and recorded + len(data) >= cap:
        return data[: cap - recorded], True
    return data, False


class Batch:
    """Bytes waiting to be handed to ``record``, with the time of the first one."""

    __slots__ = ("code", "parts", "size", "t")

    def __init__(self, code: str) -> None:
        self.code = code
        self.parts: list[bytes] = []
        self.size = 0
        self.t = 0.0

    def add(self, t: float, data: bytes) -> None:
        if not self.parts:
            self.t = t
        self.parts.append(data)
        self.size += len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return data


class Relay:
    """Copies bytes between the operator's terminal and a pty whose slave side runs the session."""

    def __init__(
        self,
        record: Record,
        *,
        stdin: int = 0,
        stdout: int = 1,
        record_output: bool = False,
        output_cap: int | None = None,
        flush_interval: float = 0.05,
        flush_bytes: int = 4096,
        linger: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.record = record
        self.stdin = stdin
        self.stdout = stdout
        self.record_output = record_output
        self.output_cap = output_cap
        self.flush_interval = flush_interval
        self.flush_bytes = flush_bytes
        self.linger = linger
        self.clock = clock
        self.master = -1
        self.slave = -1
        self.start_time = 0.0  # wall clock (time.time()) at t == 0
        self.signal: int | None = None  # the signal that ended run(), if one did
        self.output_recorded = 0
        self._t0 = 0.0
        self._saved_mode: list[Any] | None = None
        self._saved_handlers: dict[int, Any] = {}
        self._wake_r = self._wake_w = -1
        self._winch = False
        self._stopping = False
        self._size = b""
        self._capped = False
        self._to_child = bytearray()
        self._input = Batch("i")
        self._output = Batch("o")
        self._watched: dict[int, Callable[[], None]] = {}
        self._exited_at: float | None = None  # when the child run(pid=...) waits for exited
        self._due: float | None = None  # when the oldest pending batch is to be handed to record
        self._master_mask = self._terminal_mask = _POLL_IN
        self._poll = select.poll()

    # -- setting up and tearing down ----------------------------------------------------------------

    def __enter__(self) -> Relay:
        try:
            self._open()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()

    def _open(self) -> None:
        self._t0 = self.clock()
        self.start_time = time.time()
        self.master, self.slave = os.openpty()
        os.set_blocking(self.master, False)
        if os.isatty(self.stdin):
            self._saved_mode = termios.tcgetattr(self.stdin)
            # The child sees the operator's settings (erase key, IUTF8, ...), as script(1) does.
            termios.tcsetattr(self.slave, termios.TCSANOW, self._saved_mode)
        self._size = _window_size(self.stdout) or _window_size(self.stdin) or b""
        if self._size:
            fcntl.ioctl(self.slave, termios.TIOCSWINSZ, self._size)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._install_signals()
        if self._saved_mode is not None:
            tty.setraw(
                self.stdin, termios.TCSANOW
            )  # not TCSAFLUSH: what the operator typed ahead while appshell started is kept

    def _close(self) -> None:
        # Order matters: the terminal first, so that nothing below can leave it raw.
        if self._saved_mode is not None:
            try:
                termios.tcsetattr(self.stdin, termios.TCSADRAIN, self._saved_mode)
            except termios.error:
                pass  # the terminal is gone (hung up): nothing to restore
            self._saved_mode = None
        for signum, handler in self._saved_handlers.items():
            signal.signal(signum, handler)
        self._saved_handlers.clear()
        # Closing the master hangs up the slave: a child still running gets SIGHUP, as at a terminal.
        for fd in (self.slave, self.master, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self.slave = self.master = self._wake_r = self._wake_w = -1

    def _install_signals(self) -> None:
        try:
            for signum in (signal.SIGWINCH, *_STOP_SIGNALS):
                self._saved_handlers[signum] = signal.signal(signum, self._on_signal)
        except ValueError:
            # Not the main thread: signals stay as they were (no resize copying, SIGTERM kills).
            for number, handler in self._saved_handlers.items():
                signal.signal(number, handler)
            self._saved_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGWINCH:
            self._winch = True
        else:
            self.signal = signum
            self._stopping = True
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # the pipe is full (the loop will wake anyway) or already closed

    # -- the API the recorder calls -----------------------------------------------------------------

    def start(self, child: Callable[[int], T]) -> T:
        """Call ``child(slave_fd)`` to start the session on the pty, then close the slave here."""
        if self.slave < 0:
            raise RuntimeError("Relay.start() is called inside `with Relay(...)`, once")
        try:
            return child(self.slave)
        finally:
            # The recorder must not hold the slave: the child's exit shows as EOF/EIO on the master.
            os.close(self.slave)
            self.slave = -1

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` from the loop whenever ``fd`` is readable (the session's channel)."""
        self._watched[fd] = callback
        self._poll.register(fd, _POLL_IN)

    def unwatch(self, fd: int) -> None:
        if self._watched.pop(fd, None) is not None:
            self._poll.unregister(fd)

    def stop(self) -> None:
        """End ``run()`` after the current step (from a watch callback, say)."""
        self._stopping = True

    def size(self) -> tuple[int, int] | None:
        """The operator's terminal size as (columns, rows), if it has one."""
        if not self._size:
            return None
        rows, cols = struct.unpack("HHHH", self._size)[:2]
        return cols, rows

    def run(self, pid: int | None = None) -> None:
        """Relay until the child side of the pty is closed, ``stop()``, SIGTERM or SIGHUP.

        With ``pid``, also end ``linger`` seconds after that process exits if a process it started
        still holds the pty (Linux pidfd). Without it, the relay ends when the last holder closes it.
        """
        if self.master < 0:
            raise RuntimeError("Relay.run() is called inside `with Relay(...)`")
        start_size = self.size()
        if start_size is not None:  # the terminal's size at the start, so a replay or an export has it
            self._emit(0.0, "r", b"%dx%d" % start_size)
        poll = self._poll
        registered = [self._wake_r, self.master, self.stdin]
        poll.register(self._wake_r, select.POLLIN)
        poll.register(self.master, _POLL_IN)
        poll.register(self.stdin, _POLL_IN)
        reading_terminal = True
        pidfd = -1
        if pid is not None and hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                pass  # already reaped, or no pidfd on this kernel: EOF on the pty ends the loop
            else:
                poll.register(pidfd, select.POLLIN)
                registered.append(pidfd)
        try:
            while not self._stopping:
                events = poll.poll(self._timeout_ms())
                if self._winch:
                    self._copy_size()
                ended = False
                for fd, _mask in events:
                    if fd == self.master:
                        ended = not self._from_child() or ended
                    elif fd == self.stdin:
                        if not self._from_terminal():
                            reading_terminal = False
                            poll.unregister(self.stdin)
                            registered.remove(self.stdin)
                    elif fd == self._wake_r:
                        self._drain_wake()
                    elif fd == pidfd:
                        # Its last output may still be on its way through the pty: EIO follows it,
                        # unless a process it started holds the pty; then stop after `linger`.
                        poll.unregister(pidfd)
                        registered.remove(pidfd)
                        self._exited_at = self._now()
                    elif fd in self._watched:
                        self._watched[fd]()
                if ended:
                    break
                if self._exited_at is not None and self._now() >= self._exited_at + self.linger:
                    self._drain_child_output()
                    break
                if self._to_child:
                    self._write_child()
                self._update_interest(reading_terminal)
                if self._due is not None and self._now() >= self._due:
                    self._flush_all()
            self._flush_all()
        finally:
            for fd in registered:
                poll.unregister(fd)
            if pidfd >= 0:
                os.close(pidfd)

    # -- the loop's steps ---------------------------------------------------------------------------

    def _now(self) -> float:
        return self.clock() - self._t0

    def _timeout_ms(self) -> int:
        due = self._due
        if self._exited_at is not None:
            end = self._exited_at + self.linger
            due = end if due is None else min(due, end)
        if due is None:
            return -1
        return max(0, int((due - self._now()) * 1000) + 1)

    def _batch(self, batch: Batch, t: float, data: bytes) -> None:
        if not batch.parts:
            due = t + self.flush_interval
            self._due = due if self._due is None else min(self._due, due)
        batch.add(t, data)

    def _from_terminal(self) -> bool:
        try:
            data = os.read(self.stdin, _READ)
        except OSError:
            data = b""  # EIO: the operator's terminal hung up (SIGHUP follows and ends the loop)
        if not data:
            return False
        self._batch(self._input, self._now(), data)
        if len(data.translate(None, _FLUSHING)) != len(data) or self._input.size >= self.flush_bytes:
            self._flush_all()  # before the byte that makes the child act is forwarded
        self._to_child += data
        self._write_child()
        return True

    def _write_child(self) -> None:
        try:
            n = os.write(self.master, self._to_child)
        except BlockingIOError:
            return  # the child is not reading: POLLOUT tells when it is
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            self._to_child.clear()  # the child side is gone; the next read of the master ends the loop
            return
        del self._to_child[:n]

    def _from_child(self) -> bool:
        try:
            data = os.read(self.master, _READ)
        except BlockingIOError:
            return True
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            data = b""  # Linux: EIO once every holder of the slave has closed it
        if not data:
            return False
        if self.record_output and not self._capped:
            self._add_output(data)
        _write_all(self.stdout, data)
        return True

    def _drain_child_output(self) -> None:
        while self._from_child():
            try:
                if not select.select([self.master], [], [], 0)[0]:
                    return
            except OSError:
                return

    def _add_output(self, data: bytes) -> None:
        t = self._now()
        cap = self.output_cap
        head, reached = within_cap(self.output_recorded, cap, data)
        if reached:
            if head:
                self._batch(self._output, t, head)
                self.output_recorded += len(head)
            self._flush_all()
            self._capped = True
            self._emit(t, "m", CAP_MARKER.format(n=cap).encode())
            return
        self._batch(self._output, t, data)
        self.output_recorded += len(data)
        if self._output.size >= self.flush_bytes:
            self._flush_all()

    def _update_interest(self, reading_terminal: bool) -> None:
        master = _POLL_IN | select.POLLOUT if self._to_child else _POLL_IN
        if master != self._master_mask:
            self._poll.modify(self.master, master)
            self._master_mask = master
        # Back-pressure: stop reading the terminal while the child is not reading what is typed.
        terminal = _POLL_IN if reading_terminal and len(self._to_child) < _HIGH_WATER else 0
        if reading_terminal and terminal != self._terminal_mask:
            self._poll.modify(self.stdin, terminal)
            self._terminal_mask = terminal

    def _copy_size(self) -> None:
        self._winch = False
        size = _window_size(self.stdout) or _window_size(self.stdin)
        if size is None or size == self._size:
            return
        self._size = size
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)  # the kernel sends SIGWINCH to the child
        self._flush_all()
        cols_rows = self.size()
        assert cols_rows is not None
        self._emit(self._now(), "r", b"%dx%d" % cols_rows)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _flush_all(self) -> None:
        self._due = None
        for batch in sorted((b for b in (self._input, self._output) if b.parts), key=lambda b: b.t):
            t = batch.t
            self._emit(t, batch.code, batch.take())

    def _emit(self, t: float, code: str, data: bytes) -> None:
        self.record(t, code, data)


def _write_all(fd: int, data: bytes) -> None:
    # The operator's terminal is written blocking: it drains, and a slow one should slow the child.
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]
