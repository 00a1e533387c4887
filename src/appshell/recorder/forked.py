"""The recorder's life around a forked session: fork first, then open the record, then let the session go.

The console script forks as soon as it knows what runs (argv parsed, settings and the program read,
nothing of the app imported). The order is what keeps the record out of the session's reach:

1. ``fork()``: the child (the session) is a copy of a process that has not yet opened a sink nor
   read the sealing key, so it never holds the log's descriptor, the key or the witness connection;
2. the parent (the recorder) makes itself non-dumpable, opens the sinks and seals ``session_start``
   (``"by": "recorder"``), holding the raw input it read: the ``-c`` code, a script's bytes and their
   sha256, a program read from stdin. A sink that cannot be opened ends the child before it ran
   anything (exit 3);
3. only then does the recorder tell the child to go (one byte on a pipe; the pipe's end without it
   means "stop": the child exits 3 without booting the app);
4. the recorder serves the child's channel (every structured report checked and sealed,
   :mod:`appshell.recorder.server`) and, at a terminal, relays the pty between the operator's terminal
   and the child (every byte typed recorded before the child can read it; what was shown, opt-in,
   :mod:`appshell.recorder.relay`);
5. ``waitpid`` says how the child ended, and the recorder seals ``session_end`` from it: also when the
   child was killed, crashed, or closed its channel early.

Fork, not exec, because a second interpreter with appshell's imports costs ~60 ms on every ``-c``
(the budget is 10 % over the app's own start); the child is the same program, already started.
What a fork cannot give: variables of the environment the operator started appshell with stay
readable in the child's ``/proc/self/environ`` (the kernel's copy), so a sink credential given that
way is known to the session — in same-user mode the operator set it anyway. The
privilege-separated mode reads the recorder's credentials after the fork, as the recorder's user.

Privilege-separated (*drop*, docs/privsep.md): started as root, the pty's slave is handed to the
session's user before the fork; the child becomes that user for good (and its environment the
session's: :func:`~appshell.recorder.privsep.session_environ` plus the app's) before it waits for
the go; the parent becomes the recorder's user, not dumpable, before it opens the record or reads
a byte from the child. The session cannot signal its recorder; the recorder keeps ``CAP_KILL``
alone (:func:`~appshell.recorder.privsep.become_recorder`), so a SIGTERM or SIGHUP it receives ends
the session as in same-user mode: passed on (at a terminal, a hang-up of the pty), then SIGKILL after
the grace.
"""
# Over 350 lines: the fork's two sides and their order (fork, drop, open the record, go, serve, end) are one contract.

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appshell.errors import EXIT_AUDIT, EXIT_USER_ERROR, AuditFailure
from appshell.recorder.channel import Channel
from appshell.recorder.server import Recorder, as_writer, exit_code
from appshell.recorder.spawn import GRACE, Supervisor, end_with_parent, harden, scrubbed_env

if TYPE_CHECKING:
    from appshell.recorder.privsep import Drop
    from appshell.recorder.tee import Tee

__all__ = ["ForkedChild", "record_forked", "io_fields", "Io"]

# What the recorder (its relay) handles itself, back to the default in the session; SIGINT and SIGQUIT are
# left as the operator's launcher set them (an ignored SIGINT stays ignored without a terminal).
_RESET = (signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH)


class ForkedChild:
    """A forked child as much of ``subprocess.Popen`` as :class:`Supervisor` uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.refused: list[int] = []  # signals the kernel refused (EPERM): recorded in the session_end

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = EXIT_USER_ERROR  # reaped elsewhere: its status is lost
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)  # negative: the signal that ended it
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        # The pid cannot name another process: an exited child stays a zombie, its pid taken, until poll() reaps it.
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass
            except PermissionError:
                # Privilege-separated, the recorder holds CAP_KILL for this (privsep.become_recorder): a refusal
                # means something above the uids (an LSM) said no. Noted, not raised: the record still gets its end.
                self.refused.append(signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Io:
    """Terminal input and output as ``io`` records: the relay's events, text decoded without losing a byte.

    A record that cannot be written (a required sink failing) does not end the session here: the
    keys still reach the session, whose next statement's record fails on the same sink, so the
    statement is refused there, with its one-line reason. The operator is told once, at once.
    """

    def __init__(self, write: Callable[[str, dict[str, Any]], None]) -> None:
        self.write = write
        self.failed = False

    def __call__(self, t: float, code: str, data: bytes) -> None:
        try:
            self.write("io", io_fields(t, code, data))
        except AuditFailure as exc:
            if not self.failed:
                self.failed = True
                os.write(
                    2,
                    f"\r\nappshell: error: the recorder cannot record the terminal: {exc.what}\r\n".encode(
                        errors="replace"
                    ),
                )


def io_fields(t: float, code: str, data: bytes) -> dict[str, Any]:
    """One relay event as a record's fields. Bytes that are not UTF-8 stay as lone surrogates, which the
    record escapes losslessly (``undecodable``): replay gives back the very bytes."""
    return {"by": "recorder", "t": round(t, 4), "stream": code, "data": data.decode("utf-8", "surrogateescape")}


def _scrub_environment() -> None:
    """The session's ``os.environ`` (and its children's) without the sinks' credentials and configuration."""
    environ = scrubbed_env(os.environ)
    os.environ.clear()
    os.environ.update(environ)


def _become_session(drop: Drop) -> None:
    """Privilege-separated: the session's user for good, its environment and the project as working directory."""
    from appshell.recorder.privsep import drop_to, session_environ

    pw = drop_to(drop.session_user)
    environ = {**drop.environ, **session_environ(pw, os.environ)}
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(drop.project)


def _child(
    parent: int,
    slave: int | None,
    master: int | None,
    tee: Tee | None,
    ready: tuple[int, int],
    theirs: socket.socket,
    ours: socket.socket,
    main: Callable[[Channel], int],
    drop: Drop | None,
) -> None:
    """In the forked child: become the session, wait for the recorder's go, run *main*, and leave."""
    code = EXIT_USER_ERROR
    try:
        ours.close()
        os.close(ready[1])  # the recorder's end: while any copy of it is open, the go could never end in EOF
        if drop is not None:
            _become_session(drop)  # first: nothing after this point runs as root
        signal.set_wakeup_fd(-1)
        for signum in _RESET:
            signal.signal(signum, signal.SIG_DFL)
        end_with_parent(parent)  # after the drop, which would clear it
        if slave is not None:
            os.setsid()
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            os.close(slave)
            if master is not None:
                os.close(master)
        if tee is not None:
            tee.in_child()
        _scrub_environment()
        if not os.read(ready[0], 1):  # the recorder could not open the record: nothing runs
            os._exit(EXIT_AUDIT)
        os.close(ready[0])
        code = main(Channel.from_fd(theirs.detach()))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def record_forked(
    main: Callable[[Channel], int],
    open_writer: Callable[[], Any],
    session_start: dict[str, Any],
    *,
    terminal: bool = False,
    record_output: bool = False,
    output_cap: int | None = None,
    grace: float = GRACE,
    drop: Drop | None = None,
) -> int:
    """Run ``main(channel)`` in a forked child, recorded; its exit code (128 + a signal that ended it).

    *open_writer* opens the auditor (sinks, key), called in the recorder after the fork. *terminal*:
    put a pty between the operator's terminal and the child, recording what is typed (and shown,
    with *record_output*, at most *output_cap* bytes); without a terminal, *record_output* passes the
    child's stdout and stderr through the recorder (:mod:`appshell.recorder.tee`). *drop*: privilege-separated,
    started as root; the child becomes ``drop.session_user``, the recorder ``drop.recorder_user`` (docs/privsep.md).
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # what is buffered now would otherwise be written twice, once by each process
    import ctypes  # noqa: F401  # once, before the fork: the recorder's harden() and the session's end_with_parent()

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ready_r, ready_w = os.pipe()
    relay = None
    tee = None
    if record_output and not terminal:
        from appshell.recorder.tee import Tee

        tee = Tee(output_cap)
    if terminal:
        from appshell.recorder.relay import Relay

        # Its record is the recorder's Io, set once the record is open (the relay reads nothing before run()).
        relay = Relay(lambda t, code, data: None, record_output=record_output, output_cap=output_cap)
        relay.__enter__()
    try:
        if relay is not None:

            def fork_on(slave: int) -> int:
                if drop is not None:
                    from appshell.recorder.privsep import own_pty

                    own_pty(slave, drop.session_user)  # while root: the session reopens /dev/tty as its user
                return _fork(slave, relay.master, None, (ready_r, ready_w), theirs, ours, main, drop)

            pid = relay.start(fork_on)
        else:
            pid = _fork(None, None, tee, (ready_r, ready_w), theirs, ours, main, drop)
        if tee is not None:
            tee.in_recorder()
        os.close(ready_r)
        theirs.close()
        child = ForkedChild(pid)
        began = time.monotonic()
        if drop is not None:
            from appshell.recorder.privsep import become_recorder

            try:
                become_recorder(drop.recorder_user)  # before the record opens and before a byte of the child is read
            except BaseException:
                os.close(ready_w)  # the child exits without running anything
                child.wait()
                raise
        else:
            harden()
        try:
            writer = as_writer(open_writer())  # the sinks open (and fail) before the session boots anything
        except BaseException:
            os.close(ready_w)  # the child reads the end of the pipe: it exits without running anything
            child.wait()
            raise
        start = {
            **session_start,
            "pid": pid,
            "terminal": {"relay": True, "output_recorded": record_output} if relay is not None else None,
            **({"output": {"recorded": True, **tee.kinds}} if tee is not None else {}),
        }
        recorder = Recorder(writer, ours, start=start)
        if relay is not None:
            relay.record = Io(recorder.write)
        if tee is not None:
            tee.record = Io(recorder.write)
        os.write(ready_w, b"1")
        os.close(ready_w)
        supervisor = Supervisor(child, grace)  # type: ignore[arg-type]  # a ForkedChild is the Popen it uses
        try:
            if relay is None:
                with supervisor.signals():
                    supervisor.serve(recorder, tee)
            else:
                _relay(relay, recorder, supervisor)
        finally:
            supervisor.stop()
            duration = round((time.monotonic() - began) * 1000, 3)
            assert child.returncode is not None
            extra: dict[str, Any] = {"channel": recorder.closed_early} if recorder.closed_early else {}
            if supervisor.asked is not None:  # who ended it: the recorder was asked to (a service stop, a hang-up)
                extra["stopped_by"] = signal.Signals(supervisor.asked).name
            if child.refused:  # the session may have outlived what the recorder asked: the record says so
                extra["signals_refused"] = [signal.Signals(s).name for s in child.refused]
            try:
                recorder.end(child.returncode, pid=pid, duration_ms=duration, **extra)
            except AuditFailure:
                if child.returncode != EXIT_AUDIT:
                    raise
                # The session ended on an audit failure and said so; the same sink failing the end says nothing new.
            finally:
                ours.close()
        return exit_code(child.returncode)
    finally:
        if relay is not None:
            relay.__exit__(None, None, None)
        if tee is not None:
            tee.close()


def _fork(*child: Any) -> int:
    """Fork; the child runs ``_child(*child)`` (the same arguments, in its order) and never returns here."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child leaves through os._exit; its tests run it as a process
        _child(parent, *child)
    return pid


def _relay(relay: Any, recorder: Recorder, supervisor: Supervisor) -> None:
    """One loop for the pty and the channel, until the pty closes; then the channel alone, until the child exits.

    A SIGTERM/SIGHUP that ended the relay's loop (the relay's handlers had it) hangs up the session's terminal,
    and the session is killed if it is still running a grace later (privilege-separated, the recorder keeps
    CAP_KILL for that). The hang-up, not the signal passed on: the kernel sends the session SIGHUP, and its read
    of the terminal ends as well. A signal alone can land just before a line editor blocks reading the terminal
    (CPython's readline checks for signals, then calls select() without a timeout), and then goes unseen until
    a key is pressed: the session would sit at its prompt until the SIGKILL. Not both either: a second signal
    would raise a second SystemExit in the middle of the session's teardown.
    """

    def on_channel() -> None:
        if not recorder.on_readable():
            relay.unwatch(recorder.fileno())

    relay.watch(recorder.fileno(), on_channel)
    relay.run(pid=supervisor.proc.pid)
    relay.unwatch(recorder.fileno())
    if relay.signal is not None:
        relay.__exit__(None, None, None)  # the terminal restored, the master closed; the second exit does nothing
        supervisor.asked_to_stop(relay.signal)
    with supervisor.signals():
        supervisor.serve(recorder)  # the session's teardown still reports (its session_end) after its terminal closed
