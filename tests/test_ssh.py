"""appshell over a real OpenSSH connection (a throwaway sshd on 127.0.0.1, keys made here)."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest
from support.ci import unavailable
from support.paths import APPSHELL
from support.processes import free_port
from support.terminal import leave

SSHD = "/usr/sbin/sshd"


@dataclass
class Ssh:
    port: int
    key: Path
    user: str

    def argv(self, *extra: str) -> list[str]:
        return [
            "ssh",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            *extra,
            f"{self.user}@127.0.0.1",
        ]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ssh]:
    if not os.path.exists(SSHD):
        unavailable(f"{SSHD} is not installed (scripts/test installs openssh-server)", "the ssh tests")
    home = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)], check=True)
    (home / "authorized_keys").write_text((home / "user_key.pub").read_text())
    os.chmod(home / "authorized_keys", 0o600)
    port = free_port()
    (home / "sshd_config").write_text(f"""
Port {port}
ListenAddress 127.0.0.1
HostKey {home / "host_key"}
PidFile {home / "sshd.pid"}
AuthorizedKeysFile {home / "authorized_keys"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel ERROR
AcceptEnv APPSHELL_OPERATOR
""")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(home / "sshd_config")], stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"sshd did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
    yield Ssh(port, home / "user_key", pwd.getpwuid(os.getuid()).pw_name)
    proc.terminate()
    proc.wait(timeout=10)


def remote(shop: Path, log: Path, *args: str) -> str:
    """The command line the remote shell runs: cd into the app, appshell with the audit file."""
    return f"cd {shlex.quote(str(shop))} && {APPSHELL} --audit-log {shlex.quote(str(log))} " + " ".join(
        shlex.quote(a) for a in args
    )


def ssh_shell(sshd: Ssh, shop: Path, log: Path) -> pexpect.spawn:
    """An interactive appshell (plain console) over `ssh -tt`."""
    argv = sshd.argv("-tt")
    return pexpect.spawn(
        argv[0], [*argv[1:], "TERM=dumb " + remote(shop, log, "--shell", "python")], encoding="utf-8", timeout=30
    )


def records(log: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_command_over_ssh(sshd: Ssh, shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    ok = subprocess.run(
        [*sshd.argv(), remote(shop, log, "-c", "print(count(Customer))")],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "20\n"
    failing = subprocess.run(
        [*sshd.argv(), remote(shop, log, "-c", "raise SystemExit(5)")],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert failing.returncode == 5
    start = records(log)[0]
    assert start["ssh_client"].startswith("127.0.0.1 ") and start["tty"] is None and start["mode"] == "command"


def test_operator_named_with_setenv(sshd: Ssh, shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    result = subprocess.run(
        [*sshd.argv("-o", "SetEnv=APPSHELL_OPERATOR=alice"), remote(shop, log, "-c", "1")],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    start = records(log)[0]
    assert start["real_user"] == "alice" and start["user"] == sshd.user


def test_program_on_stdin_over_ssh(sshd: Ssh, shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    program = "n = count(Order, status='paid')\nprint('paid', n)\n"
    result = subprocess.run(
        [*sshd.argv(), remote(shop, log)], input=program, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "paid 13\n"
    recs = records(log)
    assert recs[0]["mode"] == "stdin" and recs[1]["source"] == program


def test_interactive_over_ssh_tt(sshd: Ssh, shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    child = ssh_shell(sshd, shop, log)
    child.expect(r"\[dev\](\x1b\[0m)? >>> ")
    child.sendline("print('over ssh', count(Product))")
    child.expect("over ssh 8")
    child.expect(r"\[dev\](\x1b\[0m)? >>> ")
    leave(child)
    recs = records(log)
    assert recs[0]["mode"] == "interactive" and recs[0]["tty"].startswith("/dev/pts/") and recs[0]["ssh_client"]
    assert recs[-1]["event"] == "session_end" and recs[-1]["status"] == "ok"


def test_dropped_connection_records_and_rolls_back(sshd: Ssh, shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    child = ssh_shell(sshd, shop, log)
    child.expect(r">>> ")
    child.sendline(
        "session.add(Customer(email='ghost@x', name='Ghost', country='DE')); session.flush(); "
        "print('flus' + 'hed', flush=True); import time; time.sleep(120)"
    )  # the echo does not match
    child.expect("flushed")
    child.kill(signal.SIGKILL)  # the operator's laptop drops off the network
    child.close(force=True)
    for _ in range(100):  # sshd hangs up the session; appshell ends it
        if log.exists() and records(log)[-1]["event"] == "session_end":
            break
        time.sleep(0.1)
    recs = records(log)
    statement = next(r for r in recs if r["event"] == "statement")
    assert "time.sleep(120)" in statement["source"]
    assert recs[-1]["event"] == "session_end" and recs[-1]["status"] == "terminated"
    check = subprocess.run(
        [APPSHELL, "-c", "print(count(Customer))"],
        cwd=shop,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert check.stdout == "20\n", check.stderr
    verify = subprocess.run(
        [APPSHELL, "audit", "verify", "--log", str(log)],
        cwd=shop,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert verify.returncode == 0, verify.stderr
