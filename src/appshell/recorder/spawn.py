"""The recorder's watch over its child: signals passed on, a grace then SIGKILL, the channel served, never a hang.

:class:`Supervisor` serves the session's channel (and, under ``audit.record_output``, its output) until
the child exits (:func:`appshell.recorder.forked.record_forked` forks the child); :func:`scrubbed_env`
is the child's environment without the sinks' credentials; :func:`harden` the recorder made non-dumpable.

Signals sent to the recorder, and what the user means by them:

* SIGTERM, SIGHUP: end the session. Forwarded to the child; a child still running ``grace`` seconds
  later (or at a second one) is killed with SIGKILL. The recorder itself always stays to seal the end.
* SIGINT, SIGQUIT: interrupt the statement. From a terminal, the tty driver sends them to the whole
  foreground process group, the child included: forwarding would deliver them twice (and a second
  Ctrl-C means more than the first to a REPL), so the recorder only keeps recording. Sent any other
  way (``kill -INT`` of the recorder, or a child in a session of its own behind the pty relay), they
  are forwarded.

Hardening in same-user mode (:func:`harden`): ``prctl(PR_SET_DUMPABLE, 0)``, so a child of the same
uid can neither ptrace the recorder nor read its ``/proc/PID/mem`` or ``environ``. What it does not
stop, in that mode: the operator's code can still signal the recorder (SIGKILL ends it; the record
then lacks its ``session_end``, which readers flag) and can write the log file itself, which verify
finds by its chain and seal. The privilege-separated mode takes both out of reach.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from appshell.recorder.server import Recorder

if TYPE_CHECKING:
    from appshell.recorder.tee import Tee

__all__ = ["scrubbed_env", "harden", "end_with_parent", "Supervisor", "GRACE", "SCRUBBED", "SECRET_WORDS"]

GRACE = 2.0  # seconds between the SIGTERM forwarded to a child and its SIGKILL
EOF_GRACE = 0.2  # seconds the child has to exit after closing its channel before that is recorded
# The sinks' credentials and configuration, the sealing key's and the review server's: the child never needs them.
SCRUBBED = frozenset(
    {
        "APPSHELL_AUDIT_URL",
        "APPSHELL_SYSLOG_ADDRESS",
        "APPSHELL_AUDIT_LOG",
        "APPSHELL_AUDIT_KEY",
        "APPSHELL_REVIEW_KEY_FILE",
        "APPSHELL_REVIEW_TOKENS",
        "APPSHELL_REVIEW_TOKENS_FILE",
    }
)
# And any APPSHELL_* variable with one of these words in its name (APPSHELL_AUDIT_*, APPSHELL_SEAL_STATE, ...).
SECRET_WORDS = frozenset({"AUDIT", "SEAL", "KEY", "KEYS", "TOKEN", "TOKENS", "SYSLOG", "WITNESS", "SECRET", "PASSWORD"})
_STOP = (signal.SIGTERM, signal.SIGHUP)
_INTERRUPT = (signal.SIGINT, signal.SIGQUIT)


def scrubbed_env(environ: Mapping[str, str]) -> dict[str, str]:
    """*environ* without what only the recorder may hold (the sinks' credentials and configuration)."""
    return {k: v for k, v in environ.items() if not _secret(k)}


def _secret(name: str) -> bool:
    if name in SCRUBBED:
        return True
    return name.startswith("APPSHELL_") and not SECRET_WORDS.isdisjoint(name[len("APPSHELL_") :].split("_"))


def harden() -> bool:
    """Make this process non-dumpable (Linux): no ptrace, no /proc/PID/mem or environ for a same-uid child.

    True where it was done; False on other systems. A failing prctl raises OSError: the recorder
    does not run half-protected without saying so.
    """
    return _prctl(_PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE, 0")


def end_with_parent(parent: int) -> bool:
    """In the session: SIGTERM when the recorder dies (Linux), as at a terminal's hang-up — a session whose
    recorder was killed (SIGKILL cannot be caught) would otherwise go on alone, holding its transaction.
    Set after any change of user (the kernel clears it then); a parent gone already ends the session now."""
    done = _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, "PR_SET_PDEATHSIG, SIGTERM")
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
    return done


_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


def _prctl(option: int, value: int, what: str) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # ~3 ms: record_forked imports it before the fork, so both processes have it

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({what}) failed: {os.strerror(errno)}")
    return True


class Supervisor:
    """Waits for one child while its channel is served: forwards signals, kills after a grace, never hangs."""

    def __init__(self, proc: subprocess.Popen[Any], grace: float = GRACE) -> None:
        self.proc = proc
        self.grace = grace
        self.deadline: float | None = None  # when a child asked to stop is killed
        self.asked: int | None = None  # the first SIGTERM/SIGHUP that came: the record says what ended the session
        self.wake: tuple[socket.socket, socket.socket] | None = None

    # -- signals ------------------------------------------------------------------

    @contextmanager
    def signals(self) -> Iterator[None]:
        """Forward signals while the child runs (main thread only: elsewhere Python delivers none)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self.wake = (wake_r, wake_w)
        saved = {signum: signal.signal(signum, self._on_signal) for signum in (*_STOP, *_INTERRUPT)}
        # A signal wakes the loop's select (it would otherwise be retried with the old timeout).
        old_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        try:
            yield
        finally:
            signal.set_wakeup_fd(old_fd)
            for signum, handler in saved.items():
                signal.signal(signum, handler)
            self.wake = None
            wake_r.close()
            wake_w.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum in _INTERRUPT and self._terminal_delivers(signum):
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signum)
        if signum in _STOP:
            self.asked_to_stop(signum)

    def asked_to_stop(self, signum: int) -> None:
        """A SIGTERM/SIGHUP came (to the recorder, or to the relay's loop): the child is killed a grace later,
        or at once if it is the second."""
        self.asked = signum if self.asked is None else self.asked
        now = time.monotonic()
        self.deadline = now if self.deadline is not None else now + self.grace

    def _terminal_delivers(self, signum: int) -> bool:
        """Did the child get this signal from the terminal too (same process group, in the foreground)?"""
        try:
            if os.getpgid(self.proc.pid) != os.getpgrp():
                return False
            fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
        except OSError:
            return False
        try:
            return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            return False
        finally:
            os.close(fd)

    # -- the loop -----------------------------------------------------------------

    def serve(self, recorder: Recorder, tee: Tee | None = None) -> None:
        """Answer the channel (and pass on the session's output, *tee*) until the child has exited; then what
        it sent before exiting."""
        with selectors.DefaultSelector() as sel:
            pidfd = _pidfd(self.proc.pid)
            try:
                sel.register(recorder.fileno(), selectors.EVENT_READ, "channel")
                for fd in tee.fds() if tee is not None else ():
                    sel.register(fd, selectors.EVENT_READ, "output")
                if tee is not None:
                    tee.give_up = self._stop_asked
                if pidfd is not None:
                    sel.register(pidfd, selectors.EVENT_READ, "exit")
                if self.wake is not None:
                    sel.register(self.wake[0], selectors.EVENT_READ, "wake")
                self._loop(sel, recorder, pidfd is not None, tee)
            finally:
                if pidfd is not None:
                    os.close(pidfd)
        if tee is not None:
            tee.drain()
        recorder.drain()

    def _loop(self, sel: selectors.BaseSelector, recorder: Recorder, exit_events: bool, tee: Tee | None) -> None:
        eof_at: float | None = None
        while True:
            timeout = self._timeout(exit_events, eof_at)
            due = tee.timeout() if tee is not None else None
            if due is not None:
                timeout = due if timeout is None else min(timeout, due)
            events = sel.select(timeout)
            look = not events or eof_at is not None  # waitpid only when something may have changed
            for key, _ in events:
                if key.data == "channel":
                    if not recorder.on_readable():
                        sel.unregister(recorder.fileno())
                        eof_at = time.monotonic()
                elif key.data == "output":
                    assert tee is not None
                    if not tee.on_readable(key.fd):
                        sel.unregister(key.fd)
                else:  # "exit", or a signal ("wake")
                    if key.data == "wake":
                        self._drain_wake()
                    look = True
            if tee is not None:
                tee.flush_due()
            if look and self.proc.poll() is not None:
                return
            self._enforce_deadline()
            if eof_at is not None and time.monotonic() - eof_at >= EOF_GRACE and recorder.reported_end is None:
                recorder.channel_closed(
                    "the session closed its channel to the recorder and went on running: "
                    "nothing it ran after that could be recorded"
                )

    def _timeout(self, exit_events: bool, eof_at: float | None) -> float | None:
        waits = [] if exit_events else [0.1]  # without a pidfd, look for the child's exit ten times a second
        if self.deadline is not None:
            waits.append(max(0.0, self.deadline - time.monotonic()))
        if eof_at is not None:
            waits.append(max(0.0, eof_at + EOF_GRACE - time.monotonic()) or 0.1)
        return min(waits) if waits else None

    def _stop_asked(self) -> bool:
        """A SIGTERM/SIGHUP came (what waits to be shown may go); past the grace, the child is killed now."""
        self._enforce_deadline()
        return self.asked is not None

    def _enforce_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline and self.proc.poll() is None:
            self.proc.kill()
            self.deadline = None

    def _drain_wake(self) -> None:
        assert self.wake is not None
        try:
            while self.wake[0].recv(4096):
                pass
        except BlockingIOError:
            pass

    def stop(self) -> None:
        """The child ended, or ended now: SIGTERM, then SIGKILL after the grace; reaped either way."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when *pid* exits (Linux 5.3+); None elsewhere."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None
