"""Real shells through a real pseudo-terminal (pexpect): IPython, ptpython and plain."""

from __future__ import annotations

import re
from pathlib import Path

import pexpect
import pytest
from support.environment import clean_environ
from support.paths import APPSHELL
from support.terminal import end_input, leave, spawn_shell

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def expect_output(child: pexpect.spawn, text: str) -> None:
    """Wait for *text* in the output, colour codes aside."""
    child.expect(re.escape(text))


@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_short_session(shop: Path, shell: str) -> None:
    child = spawn_shell(shop, "--shell", shell)
    expect_output(child, "appshell: loading shop.db")  # a status line while the app imports
    expect_output(child, "profile development")
    expect_output(child, "helpers() lists the helpers")
    child.expect(r"\[dev\]")  # the prompt carries the profile's label
    child.sendline("print('customers', count(Customer))")
    child.expect(r"customers 20")
    child.sendline("1/0")
    child.expect("ZeroDivisionError")
    child.sendline("print('still', 'alive', count(Order, status='paid'))")
    child.expect(r"still alive 13")
    child.sendline("show(audit_log())")
    child.expect(r"│ 2 │ error")  # the failed statement, recorded as such
    child.expect(r"\[dev\]")  # Ctrl-D only at a fresh prompt: during a statement the tty is not in raw mode
    leave(child)


@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_production_prompt_is_red(shop: Path, shell: str) -> None:
    child = spawn_shell(shop, "--shell", shell, "--profile", "production", "--reason", "INC-42 check refunds")
    child.expect(r"reason\s+INC-42 check refunds")
    # Red (31) on the label, wherever each shell puts its escape codes.
    child.expect(r"\x1b\[[0-9;]*31[0-9;]*m[^\n]*shop PRODUCTION")
    child.sendline("print('rw', engine.url.drivername)")
    child.expect("rw sqlite")
    child.expect("shop PRODUCTION")
    leave(child)


def test_reason_is_asked_for_at_a_tty(shop: Path) -> None:
    child = spawn_shell(shop, "--shell", "python", "--profile", "production")
    child.expect("Reason for this production session")
    child.sendline("")
    child.expect("A reason is required.")
    child.sendline("JIRA-7 look at order 3")
    child.expect(r"reason\s+JIRA-7 look at order 3")
    child.sendline("print(find(Order, 3).status)")
    child.expect("shipped")
    child.expect(r"\[shop PRODUCTION\]")
    leave(child)


def test_quiet_has_no_banner(shop: Path) -> None:
    child = spawn_shell(shop, "--shell", "python", "-q")
    child.expect(r">>> ")
    assert "appshell" not in ANSI.sub("", child.before)
    end_input(child)


def test_no_colour_codes_when_output_is_not_a_terminal(shop: Path) -> None:
    """stdin at a terminal (so the shell is interactive), stdout into a pipe (a log): no escape codes."""
    import os
    import pty
    import subprocess

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [APPSHELL, "--shell", "python", "--profile", "production", "--reason", "colour check"],
        cwd=shop,
        env=clean_environ(),
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    os.write(master, b"print('plain', count(Customer))\n")
    os.write(master, b"\x04")  # Ctrl-D at the terminal
    out, err = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0, err
    assert b"plain 20" in out and b"[shop PRODUCTION] >>> " in out
    assert b"profile production" in err  # the plain console writes its banner to stderr
    assert b"\x1b[" not in out + err


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a wrapper's `trap '' INT` leaves it, inherited over exec


@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_ctrl_c_stops_a_statement_even_when_the_launcher_ignored_sigint(shop: Path, shell: str) -> None:
    child = spawn_shell(shop, "--shell", shell, "-q", preexec_fn=_ignore_sigint)
    child.expect(r"\[dev\]")
    child.sendline("import time; print('sleep' + 'ing', flush=True); time.sleep(30)")  # the echo does not match
    child.expect("sleeping")
    child.sendintr()
    child.expect("KeyboardInterrupt", timeout=10)  # not the prompt after 30 s
    child.expect(r"\[dev\]")
    leave(child)


def test_sigint_ignored_stays_ignored_without_a_terminal(shop: Path) -> None:
    """`nohup appshell -c …` and the like: not an operator at a terminal, so what the launcher chose holds."""
    import subprocess

    proc = subprocess.Popen(
        [APPSHELL, "-c", "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"],
        cwd=shop,
        env=clean_environ(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint,
    )
    out, _ = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, "True\n")
