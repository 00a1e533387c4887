"""Protected hosts (``protect.hosts``): a connection or name lookup to one is refused, whoever makes it, by an
audit hook (Python raises an audit event before every socket connect and lookup), and recorded."""

from __future__ import annotations

import sys
import threading
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from appshell.console.protect import Protection, active
from appshell.errors import HostRefused
from appshell.process import PROCESS

if TYPE_CHECKING:
    from appshell.record.journal import Journal

__all__ = ["HostRefused", "guard_hosts"]


# -- protected hosts ----------------------------------------------------------------
# Python raises an audit event before every socket connect and name lookup, whoever makes it (requests,
# httpx, a driver, the app's own client): one hook per process sees them all (audit hooks cannot be
# removed: it goes quiet where no session protects hosts), and reads the running session's rules.


_busy = threading.local()  # recording a refusal: what the journal's sinks connect to is not checked again


def _port_text(port: Any) -> str | None:
    if port is None:
        return None
    if isinstance(port, bytes):
        port = port.decode("ascii", "replace")
    text = str(port)
    if text.isdigit() or not text:
        return text or None
    import socket

    try:
        return str(socket.getservbyname(text))  # "https" -> 443
    except OSError:
        return text


def _protected(protection: Protection, host: str, port: str | None) -> str | None:
    """The entry of ``protect.hosts`` that *host*:*port* matches, or None. A lookup of a name without a port
    matches whatever port the entry names: the connect after it sees an address, not the name."""
    host = host.lower().strip("[]")
    for host_glob, port_glob, entry in protection.hosts:
        if fnmatchcase(host, host_glob) and (port_glob is None or port is None or fnmatchcase(port, port_glob)):
            return entry
    return None


def _appshells_own(frame: Any) -> bool:
    """Is the connection appshell's own or SQLAlchemy's (the database, an audit sink), not the operator's or the app's?

    The innermost frame outside the libraries decides: appshell or SQLAlchemy let it through; the operator's code,
    the app's, or no one (a thread a library started) does not."""
    from appshell.hooks.frames import is_library_file

    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if name.startswith(("appshell.", "sqlalchemy.")):
            return True
        if not is_library_file(frame.f_code.co_filename):
            return False
        frame = frame.f_back
    return False


_SOCKET_EVENTS = frozenset(
    {"socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.sendmsg"}
)  # connect_ex's is connect's


def _host_hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _SOCKET_EVENTS:
        return  # every audit event of the process comes here: the others leave at once
    protection = active()
    if protection is None or not protection.hosts or protection.unlocked_all or getattr(_busy, "on", False):
        return
    if protection.journal is None or protection.journal.closed:
        return  # the session is over (its teardown had no chance to deactivate it): quiet, as after deactivate()
    if event != "socket.getaddrinfo":  # an address: a connect's, or a datagram's (sendto, sendmsg: None when connected)
        address = args[1]
        if not isinstance(address, tuple) or len(address) < 2 or not isinstance(address[0], str):
            return  # a Unix socket's path, a netlink address: not a host
        host, port = address[0], _port_text(address[1])
    else:
        host = args[0].decode("ascii", "replace") if isinstance(args[0], bytes) else args[0]
        port = _port_text(args[1])
        if not isinstance(host, str) or not host:
            return
    entry = _protected(protection, host, port)
    if entry is None or _appshells_own(sys._getframe(1)):
        return
    _refuse_host(protection, host, port, entry, event)


def _refuse_host(protection: Protection, host: str, port: str | None, entry: str, event: str) -> None:
    """Record the attempt (a ``protected_host`` statement under the running one), then refuse it in one line."""
    import ipaddress

    where = f"[{host}]:{port}" if ":" in host and port else f"{host}:{port}" if port else host
    if event == "socket.getaddrinfo":
        try:
            ipaddress.ip_address(host)
            # an address is not looked up: create_connection() asks getaddrinfo() for every connect
            event = "socket.connect"
        except ValueError:
            pass
    _busy.on = True
    try:
        if protection.journal is not None:
            what = {"socket.getaddrinfo": "look up", "socket.connect": "connect to"}.get(event, "send to")
            protection.journal.nested(f"# refused: {what} {where}", kind="protected_host", host=where, pattern=entry)
    finally:
        _busy.on = False
    raise HostRefused(
        f'{where} is a protected host (protect.hosts {entry!r}) — unlock("reason") first, which is recorded, '
        "or open the session with a profile that does not list it"
    )


def guard_hosts(protection: Protection, journal: Journal) -> None:
    """Refuse sockets to ``protect.hosts`` while *protection* is the session's and is locked, recording each
    attempt in *journal*. Nothing is installed where the profile lists no host (start-up)."""
    protection.journal = journal
    if not protection.hosts:
        return
    PROCESS.audit_hook("protect_hosts", _host_hook)
