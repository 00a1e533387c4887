"""Privilege-separated mode: the recorder and the session run as two OS users (docs/privsep.md).

The shape is sudo's and OpenSSH's. ``sudo appshell …`` (one sudoers line, ``env_reset``) starts
appshell as root; it reads the root-owned :data:`CONFIG_PATH`, opens what only root can open, and
forks. The child calls :func:`drop_to` the app's user and runs the operator's code; the parent calls
:func:`become_recorder`, the user that owns the log and the sealing state, *before* it reads a byte
from the child. Neither process keeps a way back to root, so the operator's code (the child) can
neither open the log nor signal, trace or read the memory of the recorder: the kernel refuses, not
appshell. The recorder keeps one capability, ``CAP_KILL``, so that it can still end its session
(SIGTERM, then SIGKILL: "SIGTERM always ends a session"); :func:`become_recorder` says why that is
safe. :mod:`appshell.cli.recorded` wires them into ``appshell`` (a :class:`Drop` handed to
:func:`appshell.recorder.forked.record_forked`).

Linux only (``prctl``). Nothing here is imported on the common path: same-user mode never needs it.
"""
# Over 350 lines: the privilege drop (uids, groups, capabilities) and the checks of the root-owned config are one
# security boundary, read together.

from __future__ import annotations

import os
import pwd
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appshell.errors import ConfigError, did_you_mean

__all__ = [
    "CONFIG_PATH",
    "KEYS",
    "SESSION_ENV_KEEP",
    "RecorderConfig",
    "Drop",
    "privileged",
    "drop_to",
    "become_recorder",
    "not_dumpable",
    "session_environ",
    "own_pty",
    "readable_by",
]

# Fixed, never read from the environment or the command line: under sudo the caller still chooses part of
# both, and the file decides which users the recorder and the session become. Looked up when called (not
# bound as a default argument), so a test's driver can point it at a file of its own (tests/test_recorder_privsep.py).
CONFIG_PATH = Path("/etc/appshell/recorder.toml")
KEYS = ("recorder_user", "session_user", "project", "log")
OPTIONAL_KEYS = ("witness_url_file",)  # where an SQL sink's URL is: the recorder's user's file alone
_EXAMPLE = {
    "recorder_user": "appshell-audit",
    "session_user": "shop",
    "project": "/srv/shop",
    "log": "/var/log/appshell/shop/audit.jsonl",
    "witness_url_file": "/etc/appshell/witness.url",
}

# What the session keeps of the caller's environment (sudo's env_reset keeps a list of the same kind): the
# terminal and the locale. Everything else, PYTHON*, LD_*, SUDO_* and APPSHELL_* included, is dropped; the
# recorder passes the session what it needs explicitly.
SESSION_ENV_KEEP = ("TERM", "COLORTERM", "NO_COLOR", "COLUMNS", "LINES", "LANG", "LANGUAGE", "TZ")
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39
_CAP_KILL = 5  # linux/capability.h: kill(2) whatever the target's uid
_CAP_SETPCAP = 8
_CAPABILITY_VERSION_3 = 0x20080522  # capget/capset with two 32-bit words per set


@dataclass(frozen=True)
class RecorderConfig:
    """``/etc/appshell/recorder.toml``: who the recorder and the session run as, the project and the log."""

    recorder_user: str
    session_user: str
    project: Path
    log: Path
    path: Path  # the file it was read from
    witness_url_file: Path | None = None  # the SQL sink's URL, credentials included: read by the recorder alone

    @classmethod
    def load(cls, path: Path | None = None) -> RecorderConfig:
        """Read and check *path* (default :data:`CONFIG_PATH`: root's alone, known keys, real users, the log
        directory the recorder's alone)."""
        path = CONFIG_PATH if path is None else path
        data = _read_trusted(path)
        known = (*KEYS, *OPTIONAL_KEYS)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"{path}: unknown key '{unknown[0]}'{did_you_mean(unknown[0], known)}",
                f"the keys are {', '.join(known)} (docs/privsep.md)",
            )
        for key in KEYS:
            if key not in data:
                raise ConfigError(f"{path} has no {key}", f'add {key} = "{_EXAMPLE[key]}" to it (docs/privsep.md)')
            if not isinstance(data[key], str) or not data[key]:
                raise ConfigError(f"{path}: {key} is not a non-empty string", f'write it as {key} = "{_EXAMPLE[key]}"')
        recorder = _user(path, "recorder_user", data["recorder_user"])
        session = _user(path, "session_user", data["session_user"])
        if recorder.pw_uid == session.pw_uid:
            raise ConfigError(
                f"{path}: recorder_user and session_user are the same user (uid {recorder.pw_uid})",
                f'give the recorder a user of its own: recorder_user = "{_EXAMPLE["recorder_user"]}"',
            )
        project, log = _absolute(path, "project", data["project"]), _absolute(path, "log", data["log"])
        if not project.is_dir():
            raise ConfigError(f"{path}: project {project} is not a directory", "name the app's directory in project")
        _check_log(path, log, recorder)
        witness = data.get("witness_url_file")
        if witness is not None and (not isinstance(witness, str) or not witness):
            raise ConfigError(
                f"{path}: witness_url_file is not a non-empty string",
                f'write it as witness_url_file = "{_EXAMPLE["witness_url_file"]}"',
            )
        witness_file = _absolute(path, "witness_url_file", witness) if witness else None
        return cls(recorder.pw_name, session.pw_name, project, log, path, witness_file)


@dataclass(frozen=True)
class Drop:
    """What a forked session and its recorder become (:func:`appshell.recorder.forked.record_forked`)."""

    recorder_user: str
    session_user: str
    project: Path  # the session's working directory
    environ: Mapping[str, str]  # what the app needs beyond session_environ(): its .env, DATABASE_URL
    witness_url_file: Path | None = None  # read by the recorder once it is the recorder's user (read_witness_url)


def privileged(path: Path | None = None) -> bool:
    """Privilege-separated mode: running as root with *path* (default :data:`CONFIG_PATH`) present (a broken
    file then refuses, never falls back)."""
    return os.geteuid() == 0 and os.path.lexists(CONFIG_PATH if path is None else path)


def readable_by(path: Path, user: str) -> bool:
    """Could *user* open *path* for reading (each directory above it searchable, the file readable)? Root reads
    what the command line names (a script, an --env-file) before anyone drops: what the session's user could not
    read must not reach the session through it."""
    pw = _lookup(user)
    groups = set(os.getgrouplist(pw.pw_name, pw.pw_gid))

    def allowed(st: os.stat_result, bits: tuple[int, int, int]) -> bool:
        if st.st_uid == pw.pw_uid:
            return bool(st.st_mode & bits[0])
        return bool(st.st_mode & (bits[1] if st.st_gid in groups else bits[2]))

    real = Path(os.path.realpath(path))
    try:
        searchable = all(allowed(os.stat(d), (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)) for d in real.parents)
        return searchable and allowed(os.stat(real), (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH))
    except OSError:
        return False


def own_pty(slave: int, user: str) -> None:
    """Hand a pty's slave to *user* (owner, group ``tty``, mode 620), as sshd's ``pty_setowner`` does: the session
    can then reopen ``/dev/tty`` and set its modes after it dropped."""
    import grp

    pw = _lookup(user)
    try:
        gid = grp.getgrnam("tty").gr_gid
    except KeyError:
        gid = pw.pw_gid
    os.fchown(slave, pw.pw_uid, gid)
    os.fchmod(slave, 0o620)


def drop_to(user: str, *, no_new_privs: bool = True, keep_kill: bool = False) -> pwd.struct_passwd:
    """Become *user* for good: its groups, gid and uid, real, effective and saved; root cannot be regained.

    With *no_new_privs* (the default) no later exec can gain privileges either (setuid programs such as
    sudo and su run without them), as OpenSSH's sandboxed child does. With *keep_kill* (the recorder) the
    process keeps ``CAP_KILL`` and no other capability, in any set (:func:`become_recorder` says why)."""
    pw = _lookup(user)
    _require_root(user, pw)
    groups = sorted(os.getgrouplist(pw.pw_name, pw.pw_gid))
    libc = _libc()  # loaded before the drop: the interpreter's own files may be readable by root only
    kept = 1 << _CAP_KILL if keep_kill else 0
    if keep_kill:
        _bound(libc, kept)  # needs CAP_SETPCAP: while root
        _prctl(libc, _PR_SET_KEEPCAPS, 1)  # the permitted set survives setresuid (the effective set is cleared)
    os.initgroups(pw.pw_name, pw.pw_gid)  # the groups first: setgroups needs root, which setresuid gives up
    os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
    os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    if keep_kill:
        _prctl(libc, _PR_SET_KEEPCAPS, 0)
        _capset(libc, kept)  # permitted and effective: CAP_KILL alone; inheritable (so ambient) empty
    if no_new_privs:
        _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1)
        if _prctl(libc, _PR_GET_NO_NEW_PRIVS, 0) != 1:
            raise ConfigError(
                f"no_new_privs did not hold after becoming '{user}'",
                "run appshell on a Linux kernel of 3.5 or later (prctl PR_SET_NO_NEW_PRIVS)",
            )
    _check_dropped(pw, groups)
    _check_capabilities(libc, pw, kept)
    return pw


def become_recorder(user: str) -> pwd.struct_passwd:
    """Become the recorder's *user* for good (:func:`drop_to`), keeping ``CAP_KILL`` alone, and not dumpable
    (:func:`not_dumpable`).

    ``CAP_KILL``: once the recorder is another user than its session, kill(2) of the session needs it, and
    without it a SIGTERM or SIGHUP to the recorder (systemd stopping it, an ssh hang-up, an admin's kill)
    could not be passed on, nor a session that ignores it be killed after the grace: without a terminal to
    hang up, nothing would end the session (docs/privsep.md, "Ending a session"). Holding it is safe here
    because nothing of the operator's reaches this process: another uid, not dumpable, and holding a
    capability the session lacks, so ptrace, ``/proc/PID/mem`` and ``pidfd_getfd`` stay refused (the
    kernel's ptrace check wants the tracer's capabilities to cover the tracee's). What it adds is bounded:
    a bug in the recorder could signal any process on the host, never read, write or run anything as
    another user; no other capability is left in any set but the bounding set (emptied too where root may),
    and ``no_new_privs`` holds. The alternatives cost more: a root monitor kept for the session's life, or
    a cgroup that not every host (nor container) delegates.

    Not dumpable: the kernel already clears "dumpable" when the uid changes, but to ``fs.suid_dumpable``,
    which a host may set to 1 to collect core dumps; a core file of the recorder holds the sealing key, and
    one press of Ctrl-\\ at the operator's terminal would write it. So it is set here, and checked."""
    pw = drop_to(user, keep_kill=True)
    not_dumpable()
    return pw


def not_dumpable() -> None:
    """Not dumpable: no core file; tracing it or opening its /proc files needs CAP_SYS_PTRACE, even for its own uid.

    :func:`become_recorder` calls it; a same-user recorder should too (its own user cannot then trace it or
    read its memory, though it can still signal it and open its files)."""
    libc = _libc()
    _prctl(libc, _PR_SET_DUMPABLE, 0)
    if _prctl(libc, _PR_GET_DUMPABLE, 0) != 0:
        raise ConfigError(
            "the recorder is still dumpable after prctl(PR_SET_DUMPABLE, 0)",
            "run appshell on a Linux kernel that honours prctl (not under an emulator)",
        )


def session_environ(pw: pwd.struct_passwd, environ: Mapping[str, str]) -> dict[str, str]:
    """The session's environment: the terminal and locale of *environ*, and HOME, USER, LOGNAME, SHELL of *pw*."""
    env = {k: v for k, v in environ.items() if k in SESSION_ENV_KEEP or k.startswith("LC_")}
    env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name, SHELL=pw.pw_shell or "/bin/sh", PATH=_SAFE_PATH)
    return env


def _read_trusted(path: Path) -> dict[str, Any]:
    """The TOML in *path*, if root alone can have written it: the file and every directory above it."""
    import tomllib  # only privileged mode reads this file

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist",
            "create it as root (docs/privsep.md), or run appshell without sudo (same-user mode)",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{path} cannot be read: {exc.strerror}", f"make it a root-owned file, mode 644: chmod 644 {path}"
        ) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())  # the file that is read, not whatever the name points to a moment later
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path} is not a regular file", f"make {path} a file owned by root, mode 644")
        if st.st_uid != 0:
            raise ConfigError(f"{path} is owned by {_owner(st.st_uid)}, not root", f"chown root:root {path}")
        if st.st_mode & 0o022:
            raise ConfigError(
                f"{path} can be written by others than root (mode {stat.S_IMODE(st.st_mode):o})", f"chmod go-w {path}"
            )
        raw = f.read()
    # Whoever can write a directory above the file can swap the file: OpenSSH's StrictModes checks the same.
    for directory in _ancestors(path):
        _check_root_dir(path, directory)
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", f"correct {path} where the message points") from None


def _ancestors(path: Path) -> list[Path]:
    """The directories above *path* as named and as resolved (a symlinked file has two chains)."""
    named, resolved = Path(os.path.abspath(path)).parents, Path(os.path.realpath(path)).parents
    return list(dict.fromkeys([*named, *resolved]))


def _check_root_dir(path: Path, directory: Path) -> None:
    st = os.stat(directory)
    # A root-owned sticky directory (/tmp) lets others add names but not rename or remove root's: safe.
    writable = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
    if st.st_uid != 0 or writable:
        raise ConfigError(
            f"{directory}, above {path}, can be changed by others than root "
            f"(owner {_owner(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):o})",
            f"chown root:root {directory} && chmod go-w {directory}",
        )


def _user(path: Path, key: str, name: str) -> pwd.struct_passwd:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(
            f"{path}: {key} '{name}' is not a user on this host",
            f"create it (useradd --system {name}) or name an existing user in {key}",
        ) from None
    if pw.pw_uid == 0:
        raise ConfigError(
            f"{path}: {key} '{name}' is root",
            f"name an unprivileged user in {key}: in this mode neither process keeps root",
        )
    return pw


def read_witness_url(path: Path) -> str:
    """The SQL sink's URL, read as the recorder's user from its own file (0600 or stricter): the app's user can
    neither read the witness's credentials nor choose where the witness is."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(
            f"the recorder cannot read witness_url_file {path}: {exc.strerror}",
            f"create it as the recorder's user ({_owner(os.geteuid())}), mode 0600, holding the SQL sink's URL",
        ) from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
            raise ConfigError(
                f"witness_url_file {path} is {_owner(st.st_uid)}'s, mode {stat.S_IMODE(st.st_mode):04o}: "
                "others could read the witness's credentials",
                f"chown {_owner(os.geteuid())} {path} && chmod 600 {path}",
            )
        url = os.read(fd, 65536).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    if not url:
        raise ConfigError(f"witness_url_file {path} is empty", "write the SQL sink's URL in it, on one line")
    return url


def _absolute(path: Path, key: str, value: str) -> Path:
    if not os.path.isabs(value):
        raise ConfigError(
            f"{path}: {key} '{value}' is a relative path",
            f"give {key} as an absolute path: the recorder does not resolve it against the caller's directory",
        )
    return Path(value)


def _check_log(path: Path, log: Path, recorder: pwd.struct_passwd) -> None:
    """The log's directory is the recorder's alone (0700): nothing in it, the sealing state included, is in reach."""
    directory, user = log.parent, recorder.pw_name
    fix = f"install -d -o {user} -g {recorder.pw_gid} -m 700 {directory}"
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise ConfigError(
            f"the log directory {directory} (log in {path}) does not exist", f"create it: {fix}"
        ) from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != recorder.pw_uid or st.st_mode & 0o077:
        raise ConfigError(
            f"the log directory {directory} is not {user}'s alone "
            f"(owner {_owner(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):o})",
            f"chown {user} {directory} && chmod 700 {directory}",
        )
    try:
        lst = os.lstat(log)
    except FileNotFoundError:
        return  # the recorder creates it
    if not stat.S_ISREG(lst.st_mode) or lst.st_uid != recorder.pw_uid:
        raise ConfigError(
            f"the log {log} is not a file owned by {user} (owner {_owner(lst.st_uid)})",
            f"chown {user} {log} && chmod 600 {log}",
        )


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _lookup(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(
            f"'{user}' is not a user on this host",
            f"create it (useradd --system {user}) or name another user in {CONFIG_PATH}",
        ) from None


def _require_root(user: str, pw: pwd.struct_passwd) -> None:
    if sys.platform != "linux":
        raise ConfigError(
            f"privilege-separated mode needs Linux, and this is {sys.platform}",
            "run appshell without sudo here (same-user mode)",
        )
    if os.geteuid() != 0:
        raise ConfigError(
            f"becoming user '{user}' needs root, and appshell runs as {_owner(os.geteuid())}",
            "start it with sudo, through the sudoers line of docs/privsep.md",
        )
    if pw.pw_uid == 0:
        raise ConfigError(
            f"'{user}' is root: there is nothing to drop to", f"name an unprivileged user in {CONFIG_PATH}"
        )


def _check_dropped(pw: pwd.struct_passwd, groups: list[int]) -> None:
    """Every id is *pw*'s and setuid(0) fails: what a capability or a saved uid left behind would let back in."""
    ids = (os.getresuid(), os.getresgid(), sorted(set(os.getgroups())))
    if ids != ((pw.pw_uid,) * 3, (pw.pw_gid,) * 3, sorted(set(groups))):
        raise ConfigError(
            f"after becoming '{pw.pw_name}' the process holds uids/gids/groups {ids}",
            "report this: the kernel did not apply setresuid/setresgid/initgroups",
        )
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise ConfigError(
        f"after becoming '{pw.pw_name}' the process could become root again",
        "start appshell from plain sudo, not from a wrapper that grants capabilities (CAP_SETUID)",
    )


def _capget(libc: Any) -> tuple[int, int, int]:
    """This process's capability sets as bit masks: (effective, permitted, inheritable)."""
    import ctypes

    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)  # pid 0: this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: the low words, then the high ones
    if libc.capget(header, data) != 0:
        err = ctypes.get_errno()
        raise ConfigError(f"capget failed: {os.strerror(err)}", "run appshell on Linux 2.6.26 or later")
    effective, permitted, inheritable = (data[i] | data[i + 3] << 32 for i in range(3))
    return effective, permitted, inheritable


def _capset(libc: Any, kept: int) -> None:
    """Effective and permitted: *kept*; inheritable: none. Permitted can only shrink, so this can only drop."""
    import ctypes

    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    low, high = kept & 0xFFFFFFFF, kept >> 32
    data = (ctypes.c_uint32 * 6)(low, low, 0, high, high, 0)
    if libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise ConfigError(
            f"the recorder could not keep CAP_KILL after it dropped: capset failed: {os.strerror(err)}",
            "run appshell where root holds CAP_KILL (a container: --cap-add KILL); without it the recorder "
            "could not end its session (docs/privsep.md)",
        )


def _bound(libc: Any, kept: int) -> None:
    """The bounding set: *kept* alone, so that no later exec can give the process any other capability.

    A second fence: the recorder never execs, and no_new_privs already keeps an exec from gaining any. So where
    root lacks CAP_SETPCAP (a container's trimmed set), which dropping from it needs, it is left as it is."""
    if not _capget(libc)[0] >> _CAP_SETPCAP & 1:
        return
    cap = 0
    while _prctl(libc, _PR_CAPBSET_READ, cap, check=False) >= 0:  # EINVAL past the kernel's last capability
        if not kept >> cap & 1:
            _prctl(libc, _PR_CAPBSET_DROP, cap)
        cap += 1


def _check_capabilities(libc: Any, pw: pwd.struct_passwd, kept: int) -> None:
    """Effective and permitted are *kept*, inheritable empty: what setresuid and capset were to leave."""
    held = _capget(libc)
    if held != (kept, kept, 0):
        raise ConfigError(
            f"after becoming '{pw.pw_name}' the process holds capabilities {tuple(hex(c) for c in held)} "
            f"(effective, permitted, inheritable), not {hex(kept)}",
            "start appshell from plain sudo, not from a wrapper that grants capabilities",
        )


def _libc() -> Any:
    import ctypes  # only privileged mode needs it

    return ctypes.CDLL(None, use_errno=True)


def _prctl(libc: Any, option: int, value: int, *, check: bool = True) -> int:
    import ctypes

    result = int(libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)))
    if result < 0 and check:
        err = ctypes.get_errno()
        raise ConfigError(
            f"prctl({option}, {value}) failed: {os.strerror(err)}",
            "run appshell where prctl is allowed (not inside a seccomp filter that blocks it)",
        )
    return result
