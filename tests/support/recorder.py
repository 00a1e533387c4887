"""The tests' recorder of an exec'd child: appshell's Recorder and Supervisor around a script, not a fork.

appshell itself forks its session (appshell.recorder.forked); the channel tests drive the recorder's
server with hand-written sessions in their own interpreter, which find their end of the channel in
``APPSHELL_RECORDER_FD`` (:func:`channel_from_env`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

from appshell.recorder.channel import MAX_MESSAGE, Channel
from appshell.recorder.server import REPLY_TIMEOUT, Recorder, as_writer, exit_code
from appshell.recorder.spawn import GRACE, Supervisor, harden, scrubbed_env

__all__ = ["FD_VARIABLE", "run_recorded", "channel_from_env"]

FD_VARIABLE = "APPSHELL_RECORDER_FD"


def channel_from_env() -> Channel:
    """In the session script: its end of the channel, the variable taken out of ``os.environ``."""
    return Channel.from_fd(int(os.environ.pop(FD_VARIABLE)))


def run_recorded(
    argv: Sequence[str],
    env: Mapping[str, str],
    auditor: Any,
    session_start: dict[str, Any],
    *,
    grace: float = GRACE,
    hardened: bool = True,
    max_message: int = MAX_MESSAGE,
    reply_timeout: float = REPLY_TIMEOUT,
    **popen: Any,
) -> int:
    """Record a session of *argv* (run with *env*, scrubbed, the channel's number in FD_VARIABLE): its exit code,
    or 128 + the signal that ended it.

    *auditor*: an ``Auditor`` (or any :class:`~appshell.recorder.server.AuditWriter`), opened by the
    caller; its sinks are closed on return. *session_start*: what the recorder knows (argv, mode, raw
    input), sealed with ``"by": "recorder"`` before the child starts; an AuditFailure there propagates
    and nothing is started. *popen*: more arguments for ``subprocess.Popen`` (stdin, cwd, ...).
    """
    writer = as_writer(auditor)
    if hardened:
        harden()
    writer.start({**session_start, "by": "recorder"})
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    began = time.monotonic()
    try:
        fds = (theirs.fileno(), *popen.pop("pass_fds", ()))
        environ = {**scrubbed_env(env), FD_VARIABLE: str(theirs.fileno())}
        proc = subprocess.Popen(list(argv), env=environ, pass_fds=fds, **popen)
    except BaseException as exc:
        ours.close()
        try:
            writer.write(
                "session_end",
                {
                    "by": "recorder",
                    "status": "not started",
                    "exit_code": None,
                    "signal": None,
                    "reported": None,
                    "statements": 0,
                    "refused": 0,
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
        finally:
            writer.close()
        raise
    finally:
        theirs.close()  # the child's copy is the only one: its exit is the channel's end
    recorder = Recorder(writer, ours, max_message=max_message, reply_timeout=reply_timeout)
    supervisor = Supervisor(proc, grace)
    with supervisor.signals():  # until the session_end is sealed: a second SIGTERM must not cut it
        try:
            supervisor.serve(recorder)
        finally:
            try:
                supervisor.stop()  # on an error of the recorder's own: the child is not left running unrecorded
                duration = round((time.monotonic() - began) * 1000, 3)
                recorder.end(
                    proc.returncode,
                    pid=proc.pid,
                    duration_ms=duration,
                    **({"channel": recorder.closed_early} if recorder.closed_early else {}),
                )
            finally:
                ours.close()
    return exit_code(proc.returncode)
