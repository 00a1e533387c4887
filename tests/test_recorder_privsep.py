"""Privilege-separated mode's building blocks, as root: real OS users, a real process tree (docs/privsep.md).

A driver started as root forks as appshell will: the child drops to the session's user and runs an operator's
program, which tries every way at the recorder it can think of; the parent becomes the recorder's user, records
what the child reports and, when the operator kills its own process, ends the record from waitpid. Then appshell
itself, through its entry point: the operator's code against the record, and SIGTERM/SIGHUP to the recorder ending
the session (the recorder keeps CAP_KILL alone for that), with and without a terminal.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.ci import unavailable
from support.environment import clean_environ
from support.paths import ROOT

from appshell.errors import ConfigError
from appshell.recorder.privsep import RecorderConfig, privileged


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        unavailable("privilege-separated mode is tested as root: the tests create OS users", "root")
    if not shutil.which("useradd"):
        unavailable("useradd is not installed: the tests create OS users with it", "useradd (package passwd)")


@dataclass
class Host:
    """A recorder's user and a session's user made for this run, and their directories under *base*."""

    base: Path  # root's, 0755: the users can pass through it
    recorder: pwd.struct_passwd
    session: pwd.struct_passwd
    project: Path  # the app, which the session's user reads
    secret: bytes  # what the key states hold
    log_dir: Path = field(init=False)  # the recorder's alone, 0700, with a key state in it

    def __post_init__(self) -> None:
        self.log_dir = self.make_log_dir()

    def values(self, log_dir: Path | None = None) -> dict[str, Any]:
        return {
            "recorder_user": self.recorder.pw_name,
            "session_user": self.session.pw_name,
            "project": str(self.project),
            "log": str((log_dir or self.log_dir) / "audit.jsonl"),
        }

    def make_log_dir(self) -> Path:
        """A log directory the recorder's alone (0700), holding a key state (0600) as audit.seal beside audit.jsonl."""
        log_dir = self.directory(0o700, self.recorder.pw_uid)
        key_state = log_dir / "audit.seal"
        key_state.write_bytes(self.secret)
        os.chown(key_state, self.recorder.pw_uid, self.recorder.pw_gid)
        os.chmod(key_state, 0o600)
        return log_dir

    def directory(self, mode: int = 0o755, owner: int = 0) -> Path:
        path = Path(tempfile.mkdtemp(dir=self.base))
        os.chown(path, owner, -1)
        os.chmod(path, mode)
        return path

    def write_config(self, values: dict[str, Any]) -> Path:
        path = self.directory() / "recorder.toml"
        # A JSON string is a TOML basic string; a number or a bool is written the same in both.
        path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items()))
        os.chmod(path, 0o644)
        return path


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    suffix = secrets.token_hex(3)  # names of their own: the xdist workers and an aborted run never collide
    base = Path(tempfile.mkdtemp(prefix=f"appshell-privsep-{suffix}-"))
    made: list[str] = []
    try:
        os.chmod(base, 0o755)
        for role in ("rec", "ses"):
            name = f"apsh-{role}-{suffix}"
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--create-home",
                    "--home-dir",
                    str(base / f"home-{role}"),
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
                check=True,
                capture_output=True,
            )
            made.append(name)
        recorder, session = (pwd.getpwnam(name) for name in made)
        project = base / "project"
        project.mkdir(mode=0o755)
        yield Host(base, recorder, session, project, secrets.token_hex(16).encode())
    finally:
        for name in made:
            subprocess.run(["userdel", "--remove", name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        leftover = [name for name in made if _user_exists(name)]
        assert not leftover, f"userdel left {leftover} behind"


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --- the process tree -------------------------------------------------------------------------------------

# Run by root with this venv's interpreter. Everything the recorder uses after it drops is imported before:
# here Python's own files live under /root (mode 700), which the recorder's user cannot read.
DRIVER = r"""
import ctypes, json, os, pwd, sys
from pathlib import Path
from appshell.recorder.privsep import RecorderConfig, become_recorder, drop_to, session_environ

config = RecorderConfig.load(Path(sys.argv[1]))
python, operator, mode = sys.argv[2], sys.argv[3], sys.argv[4]
key_state = config.log.with_suffix(".seal")
recorder_user = config.recorder_user
if mode == "same-user":  # the control: the recorder as the app's user, which then owns the log, as in same-user mode
    recorder_user = config.session_user
    app = pwd.getpwnam(recorder_user)
    for path in (config.log.parent, key_state):
        os.chown(path, app.pw_uid, app.pw_gid)
ready_r, ready_w = os.pipe()  # "the recorder has dropped": the operator attacks the recorder as it runs
chan_r, chan_w = os.pipe()  # stands in for the channel: the operator's stdout, read by the recorder
pid = os.fork()
if pid == 0:
    try:
        os.close(ready_w)
        os.close(chan_r)
        user = drop_to(config.session_user)
        env = session_environ(user, os.environ)
        os.chdir(config.project)
        os.read(ready_r, 1)
        os.dup2(chan_w, 1)
        os.execve(python, [python, "-I", "-c", operator, str(os.getppid()), str(config.log), str(key_state), mode], env)
    except BaseException as exc:
        os.write(2, f"session: {exc!r}\n".encode())
    finally:
        os._exit(127)
os.close(ready_r)
os.close(chan_w)
become_recorder(recorder_user)  # before a byte from the child is read
key = key_state.read_bytes()  # held in the recorder's memory, as the sealing key is
log = os.open(config.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

def record(**fields):
    os.write(log, (json.dumps(fields) + "\n").encode())

status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
record(event="session_start", recorder=os.getpid(), session=pid, resuid=os.getresuid(), resgid=os.getresgid(),
       dumpable=ctypes.CDLL(None).prctl(3, 0, 0, 0, 0),
       caps={name: int(status[name], 16) for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")})
os.write(ready_w, b".")
with os.fdopen(chan_r, "rb") as channel:
    for line in channel:
        record(event="reported", text=line.decode("utf-8", "replace"))
try:  # the other way round: may the recorder signal its session (unreaped, the session keeps its credentials)?
    os.kill(pid, 0)  # signal 0: only the kernel's permission check
    signal_session = "ALLOWED"
except PermissionError:
    signal_session = "EPERM"
_, status = os.waitpid(pid, 0)
record(event="session_end", by="recorder", signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
       exit=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, signal_session=signal_session)
"""

# The operator's program, as the session's user: each attack's errno (or ALLOWED), then it kills itself.
OPERATOR = r"""
import ctypes, errno, json, os, signal, sys
recorder, log, key_state, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
# The control's recorder can be signalled: there signal 0 asks the same permission without ending the run.
TERM, KILL, STOP = (0, 0, 0) if mode == "same-user" else (signal.SIGTERM, signal.SIGKILL, signal.SIGSTOP)
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
libc.syscall.restype = ctypes.c_long
PTRACE_ATTACH = 16
SYS_pidfd_getfd = 438  # one number on every architecture (Linux 5.6 added it to the common table)

def outcome(attack):
    try:
        attack()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "ALLOWED"

def checked(result):
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))

def read(path):
    with open(path, "rb") as f:
        f.read(1)

def append(path):
    with open(path, "ab") as f:
        f.write(b'{"event": "forged"}\n')

def take_fd():
    pidfd = os.pidfd_open(recorder)
    try:
        checked(libc.syscall(SYS_pidfd_getfd, pidfd, 3, 0))
    finally:
        os.close(pidfd)

attacks = {
    "read the log": lambda: read(log),
    "append to the log": lambda: append(log),
    "list the log directory": lambda: os.listdir(os.path.dirname(log)),
    "create a file beside the log": lambda: open(os.path.join(os.path.dirname(log), "forged.jsonl"), "x").close(),
    "read the key state": lambda: read(key_state),
    "write the key state": lambda: append(key_state),
    "SIGTERM the recorder": lambda: os.kill(recorder, TERM),
    "SIGKILL the recorder": lambda: os.kill(recorder, KILL),
    "SIGSTOP the recorder": lambda: os.kill(recorder, STOP),
    "read the recorder's memory": lambda: read(f"/proc/{recorder}/mem"),
    "read the recorder's environment": lambda: read(f"/proc/{recorder}/environ"),
    "list the recorder's open files": lambda: os.listdir(f"/proc/{recorder}/fd"),
    "ptrace-attach the recorder": lambda: checked(libc.ptrace(PTRACE_ATTACH, recorder, None, None)),
    "take a descriptor of the recorder (pidfd_getfd)": take_fd,
    "become root again (setuid 0)": lambda: os.setuid(0),
}
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
me = {"resuid": os.getresuid(), "resgid": os.getresgid(), "cwd": os.getcwd(), "environ": dict(os.environ),
      "no_new_privs": status["NoNewPrivs"].strip(),
      "caps": {name: int(status[name], 16) for name in ("CapInh", "CapPrm", "CapEff", "CapAmb")}}
print(json.dumps({"attacks": {name: outcome(attack) for name, attack in attacks.items()}, "me": me}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""

CAP_KILL = 5  # linux/capability.h: the one capability the recorder keeps (privsep.become_recorder)

DENIED = {  # what the kernel answers each attack
    "read the log": "EACCES",
    "append to the log": "EACCES",
    "list the log directory": "EACCES",
    "create a file beside the log": "EACCES",
    "read the key state": "EACCES",
    "write the key state": "EACCES",
    "SIGTERM the recorder": "EPERM",
    "SIGKILL the recorder": "EPERM",
    "SIGSTOP the recorder": "EPERM",
    "read the recorder's memory": "EACCES",
    "read the recorder's environment": "EACCES",
    "list the recorder's open files": "EACCES",
    "ptrace-attach the recorder": "EPERM",
    "take a descriptor of the recorder (pidfd_getfd)": "EPERM",
    "become root again (setuid 0)": "EPERM",
}


def _open_to_others(path: Path) -> bool:
    """Another user can reach *path* (every directory above it searchable by others) and read it."""
    dirs_ok = all(os.stat(d).st_mode & stat.S_IXOTH for d in path.parents)
    return path.exists() and dirs_ok and bool(os.stat(path).st_mode & stat.S_IROTH)


def session_python() -> str:
    """An interpreter the session's user can run: this one where others can reach it, else the system's.

    Not a chmod of /root for the test's duration: that is a host-wide change, and two xdist workers doing it
    at once would restore each other's mode wrongly. The operator's program needs only the standard library."""
    for candidate in ("/usr/bin/python3", sys.executable):
        real = Path(os.path.realpath(candidate))
        if _open_to_others(real) and _open_to_others(Path(os.path.realpath(Path(real).parents[1] / "lib"))):
            return str(real)
    unavailable(
        f"no Python that another user can run: {sys.executable} is under a directory closed to others, "
        "and there is no /usr/bin/python3",
        "a Python interpreter other users can execute",
    )


@dataclass
class Tree:
    """What one run of the driver left: its exit, its stderr, the log's records, what the operator reported."""

    exit_code: int
    stderr: str
    log_dir: Path
    records: list[dict[str, Any]]
    log_text: str
    report: dict[str, Any]


def run_tree(host: Host, log_dir: Path, mode: str) -> Tree:
    python = session_python()
    config = host.write_config(host.values(log_dir))
    driver = host.directory() / "driver.py"
    driver.write_text(DRIVER)
    # Stands for the witness's credentials, which the recorder holds and the session must not.
    env = clean_environ({"APPSHELL_TEST_WITNESS_PASSWORD": host.secret.decode()})
    proc = subprocess.run(
        [sys.executable, str(driver), str(config), python, OPERATOR, mode],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    log_text = (log_dir / "audit.jsonl").read_text() if (log_dir / "audit.jsonl").exists() else ""
    records = [json.loads(line) for line in log_text.splitlines()]
    reported = [r for r in records if r["event"] == "reported"]
    report = json.loads(reported[0]["text"]) if reported else {}
    return Tree(proc.returncode, proc.stderr, log_dir, records, log_text, report)


@pytest.fixture(scope="module")
def tree(host: Host) -> Tree:
    """Privilege-separated: the recorder as its own user, the session as the app's."""
    return run_tree(host, host.log_dir, "privsep")


@pytest.fixture(scope="module")
def same_user_tree(host: Host) -> Tree:
    """The control: the same run with the recorder as the app's user, which owns the log (same-user mode)."""
    return run_tree(host, host.make_log_dir(), "same-user")


@pytest.mark.parametrize("attack", sorted(DENIED))
def test_the_operator_cannot_reach_the_recorder(tree: Tree, attack: str) -> None:
    assert tree.report, f"the operator reported nothing; the driver's stderr: {tree.stderr}"
    assert tree.report["attacks"][attack] == DENIED[attack]


def test_every_attack_is_in_the_table(tree: Tree) -> None:
    assert set(tree.report["attacks"]) == set(DENIED)


def test_the_session_runs_as_the_apps_user_and_cannot_gain_privileges(tree: Tree, host: Host) -> None:
    me = tree.report["me"]
    assert me["resuid"] == [host.session.pw_uid] * 3 and me["resgid"] == [host.session.pw_gid] * 3
    assert me["no_new_privs"] == "1"
    assert me["caps"] == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapAmb": 0}
    assert me["cwd"] == str(host.project)
    env = me["environ"]
    session = host.session
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (session.pw_dir, session.pw_name, session.pw_name)
    assert not [key for key in env if key.startswith(("APPSHELL_", "PYTHON", "LD_", "SUDO_"))], env
    assert host.secret.decode() not in json.dumps(tree.report)


def test_the_recorder_runs_as_its_own_user_and_is_not_dumpable(tree: Tree, host: Host) -> None:
    start = tree.records[0]
    assert start["event"] == "session_start"
    assert start["resuid"] == [host.recorder.pw_uid] * 3 and start["resgid"] == [host.recorder.pw_gid] * 3
    assert start["dumpable"] == 0
    kill = 1 << CAP_KILL  # the one capability it keeps, in every set that could give one back
    assert start["caps"] == {"CapInh": 0, "CapPrm": kill, "CapEff": kill, "CapBnd": kill, "CapAmb": 0}


def test_the_recorder_can_signal_its_session_and_not_the_other_way_round(tree: Tree) -> None:
    """By uids alone the kernel's rule is symmetric: once the recorder drops, it could reap its child (waitpid) but
    not signal it, and nothing would end a session on SIGTERM. CAP_KILL gives the recorder that one way; the
    session, without it, still gets EPERM (test_the_operator_cannot_reach_the_recorder)."""
    assert tree.records[-1]["signal_session"] == "ALLOWED"
    assert tree.report["attacks"]["SIGTERM the recorder"] == "EPERM"


def test_a_session_killed_by_its_operator_is_ended_by_the_recorder(tree: Tree, host: Host) -> None:
    assert tree.exit_code == 0, tree.stderr
    assert [r["event"] for r in tree.records] == ["session_start", "reported", "session_end"]
    end = tree.records[-1]
    assert (end["by"], end["signal"], end["exit"]) == ("recorder", 9, None)
    assert "forged" not in tree.log_text
    assert sorted(p.name for p in tree.log_dir.iterdir()) == ["audit.jsonl", "audit.seal"]
    assert (tree.log_dir / "audit.seal").read_bytes() == host.secret
    log = (tree.log_dir / "audit.jsonl").stat()
    assert (log.st_uid, stat.S_IMODE(log.st_mode)) == (host.recorder.pw_uid, 0o600)


# The control: what the same operator program gets where the recorder runs as the app's user. The files and the
# signals are open to it; not being dumpable still keeps it from tracing the recorder or reading its memory.
SAME_USER = {
    **DENIED,
    **dict.fromkeys(
        [
            "read the log",
            "append to the log",
            "list the log directory",
            "create a file beside the log",
            "read the key state",
            "write the key state",
            "SIGTERM the recorder",
            "SIGKILL the recorder",
            "SIGSTOP the recorder",
        ],
        "ALLOWED",
    ),
}


def test_the_control_run_as_one_user_reaches_the_files_and_signals(same_user_tree: Tree, host: Host) -> None:
    """Shows that the table above is the users' doing, not the harness's: the same attacks, one user, succeed."""
    assert same_user_tree.exit_code == 0, same_user_tree.stderr
    assert same_user_tree.report["attacks"] == SAME_USER
    assert same_user_tree.records[0]["resuid"] == [host.session.pw_uid] * 3
    assert '{"event": "forged"}' in same_user_tree.log_text
    assert same_user_tree.records[-1] == {
        "event": "session_end",
        "by": "recorder",
        "signal": 9,
        "exit": None,
        "signal_session": "ALLOWED",
    }


# --- the configuration --------------------------------------------------------------------------------------

Edit = Callable[[Host, dict[str, Any]], object]
Touch = Callable[[Host, Path], object]


def _set(key: str, value: Any) -> Edit:
    return lambda host, values: values.__setitem__(key, value)


def _log_in(mode: int, owner: str) -> Edit:
    def edit(host: Host, values: dict[str, Any]) -> None:
        uid = getattr(host, owner).pw_uid
        values["log"] = str(host.directory(mode, uid) / "audit.jsonl")

    return edit


# (id, change to the values, change to the written file, what the error says, how it says to fix it)
CONFIG_ERRORS: list[tuple[str, Edit | None, Touch | None, str, str]] = [
    (
        "owned by another user",
        None,
        lambda h, p: os.chown(p, h.session.pw_uid, -1),
        "is owned by {session}, not root",
        "chown root:root {path}",
    ),
    (
        "world-writable",
        None,
        lambda h, p: os.chmod(p, 0o666),
        "can be written by others than root (mode 666)",
        "chmod go-w {path}",
    ),
    (
        "group-writable",
        None,
        lambda h, p: os.chmod(p, 0o664),
        "can be written by others than root (mode 664)",
        "chmod go-w {path}",
    ),
    (
        "its directory writable by others",
        None,
        lambda h, p: os.chmod(p.parent, 0o777),
        "{dir}, above {path}, can be changed by others than root",
        "chown root:root {dir} && chmod go-w {dir}",
    ),
    (
        "its directory owned by another user",
        None,
        lambda h, p: os.chown(p.parent, h.session.pw_uid, -1),
        "{dir}, above {path}, can be changed by others than root",
        "chmod go-w {dir}",
    ),
    ("not TOML", None, lambda h, p: p.write_text("recorder_user = \n"), "is not valid TOML", "correct {path}"),
    ("missing", None, lambda h, p: p.unlink(), "{path} does not exist", "run appshell without sudo (same-user mode)"),
    (
        "a key missing",
        lambda h, v: v.pop("session_user"),
        None,
        "{path} has no session_user",
        'add session_user = "shop" to it',
    ),
    (
        "an unknown key",
        lambda h, v: v.__setitem__("recorder_usr", v.pop("recorder_user")),
        None,
        "unknown key 'recorder_usr' (did you mean 'recorder_user'?)",
        "the keys are recorder_user, session_user",
    ),
    ("not a string", _set("log", 5), None, "log is not a non-empty string", 'write it as log = "'),
    (
        "an unknown user",
        _set("recorder_user", "apsh-nosuchuser"),
        None,
        "recorder_user 'apsh-nosuchuser' is not a user on this host",
        "useradd --system apsh-nosuchuser",
    ),
    (
        "root as the session's user",
        _set("session_user", "root"),
        None,
        "session_user 'root' is root",
        "name an unprivileged user in session_user",
    ),
    (
        "one user for both",
        lambda h, v: v.__setitem__("session_user", v["recorder_user"]),
        None,
        "recorder_user and session_user are the same user",
        'recorder_user = "appshell-audit"',
    ),
    (
        "a relative log",
        _set("log", "var/audit.jsonl"),
        None,
        "log 'var/audit.jsonl' is a relative path",
        "give log as an absolute path",
    ),
    (
        "no project directory",
        _set("project", "/nonexistent/shop"),
        None,
        "project /nonexistent/shop is not a directory",
        "name the app's directory in project",
    ),
    (
        "no log directory",
        _set("log", "/nonexistent/appshell/audit.jsonl"),
        None,
        "the log directory /nonexistent/appshell",
        "install -d -o {recorder} -g",
    ),
    ("a log directory others can read", _log_in(0o755, "recorder"), None, "is not {recorder}'s alone", "chmod 700"),
    (
        "a log directory of the session's user",
        _log_in(0o700, "session"),
        None,
        "is not {recorder}'s alone (owner {session}, mode 700)",
        "chown {recorder}",
    ),
]


@pytest.mark.parametrize("edit, touch, what, fix", [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS])
def test_a_config_that_is_not_safe_is_refused_in_one_line_naming_the_fix(
    host: Host, edit: Edit | None, touch: Touch | None, what: str, fix: str
) -> None:
    values = host.values()
    if edit:
        edit(host, values)
    path = host.write_config(values)
    if touch:
        touch(host, path)
    names = {"path": path, "dir": path.parent, "recorder": host.recorder.pw_name, "session": host.session.pw_name}
    with pytest.raises(ConfigError) as caught:
        RecorderConfig.load(path)
    assert what.format(**names) in caught.value.what
    assert fix.format(**names) in caught.value.fix
    assert "\n" not in caught.value.format()


def test_a_safe_config_loads(host: Host) -> None:
    path = host.write_config(host.values())
    config = RecorderConfig.load(path)
    assert config == RecorderConfig(
        host.recorder.pw_name, host.session.pw_name, host.project, host.log_dir / "audit.jsonl", path
    )


def test_a_config_in_a_sticky_directory_of_root_loads(host: Host) -> None:
    """/tmp: others may add names there, not rename or remove root's, so the file cannot be swapped."""
    path = host.write_config(host.values())
    os.chmod(path.parent, 0o1777)
    assert RecorderConfig.load(path).path == path


def test_privileged_means_root_with_the_config_present(host: Host) -> None:
    path = host.write_config(host.values())
    assert privileged(path)
    assert not privileged(path.with_name("absent.toml"))


def test_without_root_the_drops_refuse_in_one_line(host: Host) -> None:
    """Run as the session's user (no root to give up): drop_to and become_recorder name sudo; privileged() is off."""
    config = host.write_config(host.values())
    program = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "from appshell.errors import ConfigError\n"
        "from appshell.recorder.privsep import become_recorder, drop_to, privileged\n"
        f"print(privileged(__import__('pathlib').Path({str(config)!r})))\n"
        f"for step in (drop_to, become_recorder):\n"
        f"    try:\n"
        f"        step({host.recorder.pw_name!r})\n"
        f"    except ConfigError as exc:\n"
        f"        print(exc.format())\n"
    )
    proc = subprocess.run(
        [session_python(), "-I", "-c", program],
        user=host.session.pw_uid,
        group=host.session.pw_gid,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    refused = (
        f"appshell: error: becoming user '{host.recorder.pw_name}' needs root, and appshell runs as "
        f"{host.session.pw_name} — start it with sudo, through the sudoers line of docs/privsep.md"
    )
    assert proc.stdout.splitlines() == ["False", refused, refused]


# --- appshell itself, privilege-separated --------------------------------------------------------------------

# The console script's own entry point with one seam: CONFIG_PATH, a fixed constant by design, pointed at this
# test's file. Not the real /etc/appshell/recorder.toml written for the test's duration: while it exists, every
# appshell started as root on this host (the other xdist worker, the other suites run in this tree) would switch
# to privilege-separated mode. Everything after the seam is what /work/main/.venv/bin/appshell runs: entry() →
# main → run_recorded_session → record_forked, in the venv's interpreter (the console script's shebang).
ENTRY = r"""
import sys
from pathlib import Path

import appshell.recorder.privsep as privsep

privsep.CONFIG_PATH = Path(sys.argv.pop(1))
from appshell.cli.main import entry

entry()
"""

# The operator's -c code, run as the session's user: the kernel's answer to each attempt at the record, then the
# session kills itself. {log} and {seal} are filled in by the test.
SESSION_CODE = r"""
import ctypes, errno, json, os, signal
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
def ptrace_attach(pid):
    if libc.ptrace(16, pid, None, None) == -1:
        raise OSError(ctypes.get_errno(), "ptrace")
def outcome(attack):
    try:
        attack()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "ALLOWED"
recorder = os.getppid()
attacks = {{
    "read the log": lambda: open({log!r}, "rb").read(),
    "append to the log": lambda: open({log!r}, "ab").write(b'{{"event": "forged"}}\n'),
    "read the seal state": lambda: open({seal!r}, "rb").read(),
    "append to the seal state": lambda: open({seal!r}, "ab").write(b"0"),
    "SIGTERM the recorder": lambda: os.kill(recorder, signal.SIGTERM),
    "read the recorder's memory": lambda: open(f"/proc/{{recorder}}/mem", "rb").read(1),
    "ptrace-attach the recorder": lambda: ptrace_attach(recorder),
}}
report = {{name: outcome(attack) for name, attack in attacks.items()}}
print("products:", count(Product))
print("REPORT " + json.dumps({{"attacks": report, "resuid": os.getresuid(), "cwd": os.getcwd(), "recorder": recorder,
                              "environ": dict(os.environ)}}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""

APPSHELL_DENIED = {
    "read the log": "EACCES",
    "append to the log": "EACCES",
    "read the seal state": "EACCES",
    "append to the seal state": "EACCES",
    "SIGTERM the recorder": "EPERM",
    "read the recorder's memory": "EACCES",
    "ptrace-attach the recorder": "EPERM",
}


def open_interpreter(python: str) -> list[str]:
    """A command prefix under which other users can run *python*, whose files may sit under a directory closed to
    them (here /root, mode 700, holds pyenv's Python; the forked session is that same interpreter, and it imports
    lazily after it dropped).

    Not ``chmod o+x /root`` for the test's duration: a host-wide change that another test choosing "a Python other
    users can run" at that moment would see, then lose mid-run. Instead a mount namespace of the test's own
    process tree (unshare, as root): there /root is an empty tmpfs of mode 711 with only the interpreter's
    directory bound into it, so the path resolves for every user while the host's /root is untouched and nothing
    is left to restore. A fleet install avoids all this by installing under /opt (docs/privsep.md)."""
    base = Path(os.path.realpath(sys.base_prefix))
    closed = [d for d in reversed(base.parents) if not os.stat(d).st_mode & stat.S_IXOTH]
    if not closed:
        return []
    if not shutil.which("unshare"):
        unavailable(f"{closed[0]} is closed to other users and unshare (util-linux) is missing", "unshare")
    top = closed[0]
    inner = top / base.relative_to(top).parts[0]  # /root/.pyenv
    if any(not os.stat(d).st_mode & stat.S_IXOTH for d in [inner, *[p for p in base.parents if inner in p.parents]]):
        unavailable(f"{base} is under more than one directory closed to others", "a Python other users can reach")
    script = (
        'set -e; stash=$(mktemp -d); mount --bind "$1" "$stash"; mount -t tmpfs -o mode=711 tmpfs "$2"; '
        'mkdir -p "$1"; mount --bind "$stash" "$1"; umount -l "$stash"; rmdir "$stash"; shift 2; exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(inner), str(top)]


def as_user(user: pwd.struct_passwd) -> list[str]:
    """What ``sudo -u USER`` does to the ids, for a command started by root (sudo itself is not installed here)."""
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]


@dataclass
class Site:
    """A privilege-separated install as docs/operations.md sets it up: a copy of the shop as the app's user's,
    the recorder's log directory with its sealing state, the config; and how to start appshell as sudo would."""

    prefix: list[str]  # what lets the two users run this machine's Python (open_interpreter)
    project: Path
    log: Path
    config: Path
    key: str  # the verification key `audit init` printed
    entry: Path

    def command(self, *args: str) -> list[str]:
        return [*self.prefix, str(ROOT / ".venv" / "bin" / "python"), str(self.entry), str(self.config), *args]

    @staticmethod
    def environ(**extra: str) -> dict[str, str]:
        """What sudo's env_reset leaves, with SUDO_*."""
        return {
            "PATH": "/usr/bin:/bin",
            "TERM": "dumb",
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "SUDO_USER": "alice",
            "SUDO_UID": "1000",
            "SUDO_GID": "1000",
            "PYTHONDONTWRITEBYTECODE": "1",
            **extra,
        }

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def run(self, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
        """`sudo appshell ARGS` from /, without a terminal, its output captured."""
        return subprocess.run(
            self.command(*args),
            cwd="/",
            env=self.environ(**environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def verify(self) -> subprocess.CompletedProcess[str]:
        """``appshell audit verify --key`` on the site's log, as root (as an auditor with a copy would)."""
        return subprocess.run(
            [*self.prefix, str(ROOT / ".venv" / "bin" / "appshell"), "audit", "verify", "--log", str(self.log)]
            + ["--key", self.key],
            cwd="/",
            env=clean_environ(),
            capture_output=True,
            text=True,
            timeout=60,
        )


def make_site(host: Host, shop: Path) -> Site:
    """A site on a copy of *shop*, the seeded example shop (the ``_seeded_shop`` fixture of tests/conftest.py)."""
    if not shutil.which("setpriv"):
        unavailable(
            "setpriv (util-linux) is missing: the log's sealing state is made as the recorder's user", "setpriv"
        )
    prefix = open_interpreter(str(ROOT / ".venv" / "bin" / "python"))
    project = host.directory() / "shop"
    shutil.copytree(shop, project, ignore=shutil.ignore_patterns(".appshell", "__pycache__"))
    # The app's .env: read by the settings as root, handed to the session (the caller's environment is not).
    (project / ".env").write_text(f"DATABASE_URL=sqlite:///{project}/var/shop.db\nSHOP_CURRENCY=CHF\n")
    for path in [project, *project.rglob("*")]:
        os.chown(path, host.session.pw_uid, host.session.pw_gid)  # the app's files are the app's user's
    log_dir = host.directory(0o700, host.recorder.pw_uid)
    log = log_dir / "audit.jsonl"
    config = host.write_config({**host.values(), "project": str(project), "log": str(log)})
    init = subprocess.run(
        [
            *prefix,
            *as_user(host.recorder),
            str(ROOT / ".venv" / "bin" / "appshell"),
            "audit",
            "init",
            "--log",
            str(log),
        ],
        cwd="/",
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    key = next(word for word in init.stdout.split() if word.startswith("fss1-"))
    entry = host.directory() / "entry.py"
    entry.write_text(ENTRY)
    return Site(prefix, project, log, config, key, entry)


@dataclass
class Shell:
    """One privilege-separated run of appshell: its exit, output, the log's records and the operator's report."""

    proc: subprocess.CompletedProcess[str]
    records: list[dict[str, Any]]
    report: dict[str, Any]
    verify: subprocess.CompletedProcess[str]
    log: Path


@pytest.fixture(scope="module")
def shell(host: Host, _seeded_shop: Path) -> Shell:
    """`sudo appshell --audit-log … -c CODE` from / on a copy of the shop, with the recorder's config in place.

    One run for the module's tests (a module fixture runs once per xdist worker: cheap, and each run has its own
    directories)."""
    site = make_site(host, _seeded_shop)
    code = SESSION_CODE.format(log=str(site.log), seal=str(site.log.with_suffix(".seal")))
    elsewhere = host.directory() / "chosen.jsonl"  # where the operator asks the record to go: ignored
    # APPSHELL_AUDIT_LOG: as an env_keep in sudoers might let it through.
    proc = site.run("--audit-log", str(elsewhere), "-c", code, APPSHELL_AUDIT_LOG=str(elsewhere))
    assert not elsewhere.exists()
    line = next((line for line in proc.stdout.splitlines() if line.startswith("REPORT ")), "REPORT {}")
    return Shell(proc, site.records(), json.loads(line.removeprefix("REPORT ")), site.verify(), site.log)


def test_appshell_as_root_runs_the_session_as_the_apps_user_out_of_reach_of_the_record(
    shell: Shell, host: Host
) -> None:
    assert shell.report, f"the session reported nothing: {shell.proc.stdout}{shell.proc.stderr}"
    assert shell.report["attacks"] == APPSHELL_DENIED
    assert shell.report["resuid"] == [host.session.pw_uid] * 3
    env = shell.report["environ"]
    assert shell.report["cwd"] == env["DATABASE_URL"].removeprefix("sqlite:///").removesuffix("/var/shop.db")
    assert (env["USER"], env["HOME"], env["SHOP_CURRENCY"]) == (host.session.pw_name, host.session.pw_dir, "CHF")
    assert not [key for key in env if key.startswith(("APPSHELL_", "SUDO_", "PYTHON"))], env
    assert "products: 8" in shell.proc.stdout


def test_the_record_of_a_session_that_killed_itself_is_complete_and_ended_by_the_recorder(
    shell: Shell, host: Host
) -> None:
    assert shell.proc.returncode == 128 + 9, shell.proc.stderr
    events = [r["event"] for r in shell.records]
    assert events[0] == "session_start" and events[-1] == "session_end" and "statement" in events, events
    start, end = shell.records[0], shell.records[-1]
    assert start["by"] == "recorder" and start["pid"] != shell.report["recorder"]  # the session's pid, not its own
    assert start["privsep"] == {
        "recorder_user": host.recorder.pw_name,
        "session_user": host.session.pw_name,
        "project": shell.report["cwd"],
        "operator": "alice",
    }
    assert start["audit_log"] == str(shell.log)
    statement = next(r for r in shell.records if r["event"] == "statement")
    assert statement["by"] == "session" and "os.kill(os.getpid(), signal.SIGKILL)" in statement["source"]
    assert (end["by"], end["signal"], end["pid"]) == ("recorder", "SIGKILL", start["pid"]), end
    assert "forged" not in events and all(r.get("hash") for r in shell.records)  # every line the recorder's, sealed
    log = shell.log.stat()
    assert (log.st_uid, stat.S_IMODE(log.st_mode) & 0o077) == (host.recorder.pw_uid, 0)


def test_audit_verify_passes_on_the_privilege_separated_record(shell: Shell) -> None:
    assert shell.verify.returncode == 0, shell.verify.stdout + shell.verify.stderr
    assert f"{len(shell.records)} sealed records authenticated" in shell.verify.stdout, shell.verify.stdout


def test_privileged_start_changes_to_the_configs_project(
    host: Host, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What cli.main is to call before it would re-execute into a project's interpreter (docs/privsep.md)."""
    from appshell.cli.recorded import privileged_start
    from appshell.recorder import privsep

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(privsep, "CONFIG_PATH", tmp_path / "absent.toml")
    assert not privileged_start() and Path.cwd() == tmp_path
    monkeypatch.setattr(privsep, "CONFIG_PATH", host.write_config(host.values()))
    assert privileged_start() and Path.cwd() == host.project


# --- ending a session: SIGTERM or SIGHUP to the recorder (issue 22 item 11) ----------------------------------------

# What a session does when the recorder is asked to stop: the operator's endless statement, honest (the CLI turns
# SIGTERM/SIGHUP into SystemExit, so it ends "terminated") or ignoring both signals, as hostile code can.
IGNORE_STOP = (
    "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.signal(signal.SIGHUP, signal.SIG_IGN)"
)
# 'RUN' + 'NING': at a terminal the typed line is echoed, and the pattern must match only what the code prints.
RUNNING = "import os, time; print('RUN' + 'NING', os.getpid(), os.getppid(), flush=True)"
ENDLESS = "while True:\n    time.sleep(0.05)\n"


def capabilities(pid: int) -> dict[str, Any]:
    """The capability sets of *pid* (bit masks) and its NoNewPrivs, as /proc/PID/status shows them to root."""
    status = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line
    )
    sets = {name: int(status[name], 16) for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    return {**sets, "NoNewPrivs": status["NoNewPrivs"].strip()}


@dataclass
class Stopped:
    """One privilege-separated session, stopped by a signal to its recorder: what the processes held, how it ended."""

    exit_code: int
    recorder: dict[str, Any]  # the recorder's capabilities while the session ran
    session: dict[str, Any]  # the session's
    records: list[dict[str, Any]]
    verify: subprocess.CompletedProcess[str]
    output: str  # what was shown between the RUNNING line and the end

    @property
    def end(self) -> dict[str, Any]:
        return self.records[-1] if self.records else {}


def _stop(child: Any, signum: int, sessions: list[int], then: str | None = None) -> tuple[Any, ...]:
    """Wait for the RUNNING line (and *then*, the prompt after it); read both processes' capabilities; signal the
    recorder; wait for the end. The session's pid goes to *sessions* first (killed afterwards if left over).
    The recorder's capabilities, the session's, and what was shown after the signal."""
    pexpect = pytest.importorskip("pexpect")
    child.expect(r"RUNNING (\d+) (\d+)")
    sessions.append(int(child.match.group(1)))
    recorder = int(child.match.group(2))
    if then is not None:
        child.expect(then)
    caps = capabilities(recorder), capabilities(sessions[0])
    os.kill(recorder, signum)
    child.expect(pexpect.EOF)  # within the child's timeout, or TIMEOUT: a recorder that could not end its session
    return (*caps, child.before)


def _kill_leftovers(pids: list[int]) -> None:
    """After a run that failed: the session its recorder could not end, so that nothing of the test keeps running
    (and userdel can remove its user)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_without_a_terminal(site: Site, signum: int, ignore: bool) -> Stopped:
    """``sudo appshell -c …`` with pipes (``ssh host appshell -c``), its code endless; then *signum* to the recorder."""
    pytest.importorskip("pexpect")
    from pexpect.popen_spawn import PopenSpawn

    code = "\n".join([IGNORE_STOP] * ignore + [RUNNING, ENDLESS])
    # A process group of its own (the session, without a terminal, stays in the recorder's): killed if left over.
    child = PopenSpawn(site.command("-c", code), cwd="/", env=site.environ(), timeout=30, preexec_fn=os.setsid)
    sessions: list[int] = []
    try:
        recorder, session, output = _stop(child, signum, sessions)
        exit_code = child.wait()
    finally:
        if child.proc.poll() is None:
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
        _kill_leftovers(sessions)
    return Stopped(exit_code, recorder, session, site.records(), site.verify(), output)


def stop_at_a_terminal(site: Site, signum: int, state: str) -> tuple[Stopped, tuple[int, int]]:
    """``sudo appshell`` at a terminal (the plain shell), at its prompt or in an endless statement; then *signum* to
    the recorder. Also the session's uid and its pty's owner."""
    pexpect = pytest.importorskip("pexpect")
    command = site.command("--shell", "python", "-q")
    child = pexpect.spawn(
        command[0], command[1:], cwd="/", env=site.environ(TERM="xterm"), timeout=30, encoding="utf-8"
    )
    sessions: list[int] = []
    try:
        child.expect(">>> ")
        child.sendline("import os; t = os.ttyname(0); print('TT' + 'Y', os.getuid(), os.stat(t).st_uid)")
        child.expect(r"TTY (\d+) (\d+)")
        tty = int(child.match.group(1)), int(child.match.group(2))
        child.expect(">>> ")
        if state.startswith("ignoring"):
            child.sendline(IGNORE_STOP)
            child.expect(">>> ")
        prompt = state == "at the prompt"
        child.sendline(RUNNING if prompt else f"{RUNNING}; any(time.sleep(0.05) for _ in iter(int, 1))")
        recorder, session, output = _stop(child, signum, sessions, then=">>> " if prompt else None)
        child.close()
    finally:
        if child.isalive():
            child.close(force=True)
        _kill_leftovers(sessions)
    exit_code = child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus
    return Stopped(exit_code, recorder, session, site.records(), site.verify(), output), tty


def assert_ended_by_the_recorder(stopped: Stopped, status: str, exit_code: int) -> None:
    """The session ended; the recorder sealed its session_end (*status*, *exit_code*); the log verifies."""
    assert stopped.exit_code == exit_code, (stopped.output, stopped.end)
    events = [r["event"] for r in stopped.records]
    assert events[0] == "session_start" and events[-1] == "session_end", events
    assert (stopped.end["by"], stopped.end["status"]) == ("recorder", status), stopped.end
    if exit_code == 128 + signal.SIGKILL:
        assert (stopped.end["signal"], stopped.end["exit_code"]) == ("SIGKILL", None), stopped.end
    else:
        assert (stopped.end["signal"], stopped.end["exit_code"]) == (None, exit_code), stopped.end
    assert stopped.verify.returncode == 0, stopped.verify.stdout + stopped.verify.stderr


def assert_only_cap_kill(stopped: Stopped) -> None:
    """The recorder keeps CAP_KILL and nothing else, in every set that could give one back; the session none."""
    kill = 1 << CAP_KILL
    assert stopped.recorder == {
        "CapInh": 0,
        "CapPrm": kill,
        "CapEff": kill,
        "CapBnd": kill,
        "CapAmb": 0,
        "NoNewPrivs": "1",
    }
    assert (stopped.session["CapPrm"], stopped.session["CapEff"], stopped.session["CapAmb"]) == (0, 0, 0)
    assert stopped.session["NoNewPrivs"] == "1"


@pytest.mark.parametrize(
    "signum, ignore",
    [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGTERM, True)],
    ids=["SIGTERM", "SIGHUP", "SIGTERM, the session ignoring it"],
)
def test_without_a_terminal_a_signal_to_the_recorder_ends_the_session(
    host: Host, _seeded_shop: Path, signum: int, ignore: bool
) -> None:
    """`-c` with an endless statement: the recorder forwards the signal (the session ends "terminated"), and kills
    a session that ignores it once the grace is over. Neither needs a terminal to hang up."""
    stopped = stop_without_a_terminal(make_site(host, _seeded_shop), signum, ignore)
    if ignore:
        assert_ended_by_the_recorder(stopped, "killed", 128 + signal.SIGKILL)
    else:
        assert_ended_by_the_recorder(stopped, "terminated", 128 + signum)
    assert_only_cap_kill(stopped)


@pytest.mark.parametrize(
    "signum, state",
    [
        (signal.SIGTERM, "at the prompt"),
        (signal.SIGHUP, "at the prompt"),
        (signal.SIGTERM, "in an endless statement"),
        (signal.SIGTERM, "ignoring the signals, in an endless statement"),
    ],
    ids=lambda v: getattr(v, "name", v),  # a signal by its name
)
def test_at_a_terminal_a_signal_to_the_recorder_ends_the_session(
    host: Host, _seeded_shop: Path, signum: int, state: str
) -> None:
    """The pty's slave is the session's user's (sshd's pty_setowner). SIGTERM/SIGHUP to the recorder hangs up the
    pty: the session gets SIGHUP and ends "terminated", also at its prompt (where a signal alone can go unseen by
    readline); one that ignores both is killed after the grace, which the recorder can do holding CAP_KILL."""
    stopped, (uid, owner) = stop_at_a_terminal(make_site(host, _seeded_shop), signum, state)
    assert (uid, owner) == (host.session.pw_uid, host.session.pw_uid)
    assert any(r["event"] == "io" and "ttyname" in r.get("data", "") for r in stopped.records)
    if state.startswith("ignoring"):
        assert_ended_by_the_recorder(stopped, "killed", 128 + signal.SIGKILL)
    else:
        assert_ended_by_the_recorder(stopped, "terminated", 128 + signal.SIGHUP)  # the hang-up's, whatever signum
    assert_only_cap_kill(stopped)


def test_a_recorder_that_cannot_keep_cap_kill_refuses_in_one_line(host: Host, _seeded_shop: Path) -> None:
    """Root without CAP_KILL (a container started with --cap-drop KILL; here setpriv takes it from the bounding
    set): the recorder could not end its session, so appshell refuses before the session runs anything."""
    site = make_site(host, _seeded_shop)
    command = site.command("-c", "print('RAN')")
    command[len(site.prefix) : len(site.prefix)] = ["setpriv", "--bounding-set", "-kill"]
    proc = subprocess.run(
        command, cwd="/", env=site.environ(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "the recorder could not keep CAP_KILL" in proc.stderr and "--cap-add KILL" in proc.stderr
    assert site.records() == []  # refused before the record opened: nothing ran to be recorded


@pytest.mark.parametrize("how", ["script", "env file"])
def test_a_file_root_reads_for_the_session_must_be_one_its_user_could_read(
    host: Host, _seeded_shop: Path, how: str
) -> None:
    """Root reads the script and the .env before anyone drops: `sudo appshell /root/secret.py` must not show it."""
    site = make_site(host, _seeded_shop)
    hidden = host.directory(0o700, 0)  # root's alone
    if how == "script":
        (hidden / "secret.py").write_text("print('TOPSECRET')\n")
        args = [str(hidden / "secret.py")]
    else:
        (hidden / "secret.env").write_text("LEAK=TOPSECRET\n")
        args = ["--env-file", str(hidden / "secret.env"), "-c", "import os; print(os.environ.get('LEAK'))"]
    proc = subprocess.run(
        site.command(*args),
        cwd="/",
        env=site.environ(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "TOPSECRET" not in proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"cannot be read by '{host.session.pw_name}', the session's user" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("case", ["a config others can write", "sudo without a config", "root without sudo or config"])
def test_as_root_a_wrong_or_missing_config_refuses_in_one_line(host: Host, _seeded_shop: Path, case: str) -> None:
    """A config that exists but is wrong refuses, never falls back; sudo without one refuses (a session as root
    beside its record); root not through sudo (a container's only user) runs as before, one user for both."""
    site = make_site(host, _seeded_shop)
    env = site.environ()
    if case == "a config others can write":
        os.chmod(site.config, 0o666)
    else:
        site.config.unlink()
        if case == "root without sudo or config":
            env = {k: v for k, v in env.items() if not k.startswith("SUDO_")}
    log = host.directory() / "own.jsonl"
    proc = subprocess.run(
        site.command("--audit-log", str(log), "-c", "import os; print('uid', os.getuid())"),
        cwd=site.project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if case == "root without sudo or config":
        assert (proc.returncode, proc.stdout) == (0, "uid 0\n"), proc.stderr
        assert log.exists() and not site.log.exists()
        return
    assert proc.returncode != 0 and proc.stdout == "" and not log.exists()
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    expected = {
        "a config others can write": f"{site.config} can be written by others than root (mode 666)",
        "sudo without a config": "set up privilege-separated mode (docs/privsep.md)",
    }[case]
    assert expected in proc.stderr


# -- the SQL witness: its URL is the recorder's file, never the app's ----------------------------------------


def _witnessed_site(host: Host, shop: Path, witness_file: Path | None) -> Site:
    """A site whose profile keeps the audit in SQL too; the config names *witness_file* (or no file)."""
    site = make_site(host, shop)
    profile = site.project / "profiles" / "witnessed.toml"
    profile.write_text('description = "file and SQL witness"\n[audit]\nsinks = ["file", "sql"]\n')
    # The app's own setting, which must not be where the witness goes: the operator chooses it.
    (site.project / ".env").write_text(
        (site.project / ".env").read_text() + f"APPSHELL_AUDIT_URL=sqlite:///{site.project}/operator_chose.db\n"
    )
    for path in (profile, site.project / ".env"):
        os.chown(path, host.session.pw_uid, host.session.pw_gid)
    values = {**host.values(), "project": str(site.project), "log": str(site.log)}
    if witness_file is not None:
        values["witness_url_file"] = str(witness_file)
    site.config.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items()))
    return site


def test_the_sql_witness_is_written_where_the_recorders_file_says(host: Host, _seeded_shop: Path) -> None:
    witness_dir = host.directory(0o700, host.recorder.pw_uid)
    witness_db = witness_dir / "witness.db"
    witness_file = witness_dir / "witness.url"
    witness_file.write_text(f"sqlite:///{witness_db}\n")
    os.chown(witness_file, host.recorder.pw_uid, host.recorder.pw_gid)
    os.chmod(witness_file, 0o600)
    site = _witnessed_site(host, _seeded_shop, witness_file)
    code = (
        "import os\n"
        f"try:\n    open({str(witness_file)!r}).read(); print('READ')\n"
        "except PermissionError:\n    print('DENIED')\n"
        "print('url' if any('witness' in v for v in os.environ.values()) else 'no url')\n"
    )
    done = site.run("--profile", "witnessed", "-c", code)
    assert done.returncode == 0, done.stderr
    assert "DENIED" in done.stdout and "no url" in done.stdout  # the session can neither read it nor be told it
    import sqlite3

    with sqlite3.connect(witness_db) as db:
        sessions = {row[0] for row in db.execute("select session from appshell_audit")}
    assert sessions == {site.records()[0]["session"]}  # the witness holds this session, where the file says
    assert not (site.project / "operator_chose.db").exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("none", "names no witness_url_file: its credentials would be the app's user's"),
        ("others", "others could read the witness's credentials"),
    ],
)
def test_a_witness_without_a_file_of_the_recorder_is_refused(
    host: Host, _seeded_shop: Path, setup: str, message: str
) -> None:
    witness_file = None
    if setup == "others":
        witness_file = host.directory() / "witness.url"
        witness_file.write_text("sqlite:////tmp/x.db\n")
        os.chown(witness_file, host.recorder.pw_uid, host.recorder.pw_gid)
        os.chmod(witness_file, 0o644)
    site = _witnessed_site(host, _seeded_shop, witness_file)
    done = site.run("--profile", "witnessed", "-c", "print('ran')")
    assert done.returncode == 2, done.stderr
    assert "ran" not in done.stdout
    assert message in done.stderr and done.stderr.startswith("appshell: error: ") and done.stderr.count("\n") == 1
