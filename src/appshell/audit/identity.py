"""Who is running this session, from where (the `session_start` record)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["identity"]


def _tty() -> str | None:
    for stream in (sys.stdin, sys.stdout):
        try:
            if stream.isatty():
                return os.ttyname(stream.fileno())
        except (OSError, ValueError):
            continue
    return None


def identity(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    # The account the process runs as, from the system (not $USER, which the caller sets).
    # pwd and os.uname() rather than getpass and socket: those imports cost `-c` time.
    import pwd

    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry (a container's arbitrary uid)
        user = str(os.getuid())
    ssh = environ.get("SSH_CONNECTION") or environ.get("SSH_CLIENT") or ""
    return {
        "user": user,
        # The person behind a shared account: named by the ssh key's forced command or
        # SetEnv (APPSHELL_OPERATOR, see docs/operations.md), else sudo's or the login's.
        "real_user": environ.get("APPSHELL_OPERATOR")
        or environ.get("SUDO_USER")
        or environ.get("LOGNAME")
        or environ.get("USER")
        or user,
        "uid": os.getuid(),
        "host": os.uname().nodename,
        "pid": os.getpid(),
        "ssh_client": " ".join(ssh.split()[:2]) or None,  # client address and port
        "tty": _tty(),
    }
