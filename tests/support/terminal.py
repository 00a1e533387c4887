"""The real `appshell` in a pseudo-terminal (pexpect): starting an interactive shell and leaving it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pexpect

from support.environment import clean_environ
from support.paths import APPSHELL

__all__ = ["end_input", "leave", "spawn_shell"]


def spawn_shell(
    cwd: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
    term: str = "xterm",
    columns: int = 120,
    preexec_fn: Callable[[], None] | None = None,
) -> pexpect.spawn:
    """The real `appshell` in a real pseudo-terminal (an interactive shell), 40 rows by *columns*."""
    return pexpect.spawn(
        APPSHELL,
        list(args),
        cwd=str(cwd),
        env={**clean_environ(env), "TERM": term, "COLUMNS": str(columns), "LINES": "40"},
        encoding="utf-8",
        timeout=timeout,
        dimensions=(40, columns),
        preexec_fn=preexec_fn,
    )


def end_input(child: pexpect.spawn) -> None:
    """Ctrl-D at the prompt, and the shell's end (EOF).

    IPython and ptpython redraw the typed line, prompt included, when it is accepted, so a
    prompt pattern can match that redraw while the statement still runs, the terminal in cooked
    mode: there a Ctrl-D is an end-of-file for a read nobody makes, and is gone, as at a real
    terminal. If the shell has not ended after a while, the prompt is a fresh one now: press it again."""
    child.sendcontrol("d")
    if child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=5) == 1:
        child.sendcontrol("d")
        child.expect(pexpect.EOF)


def leave(child: pexpect.spawn) -> None:
    """Ctrl-D at a fresh prompt: the shell must end, and end with exit code 0."""
    end_input(child)
    child.close()
    assert child.exitstatus == 0, child.before
