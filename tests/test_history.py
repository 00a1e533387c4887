"""Per-project shell history (issue 13 item 1): real shells in a real pty, two sessions each."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from support.terminal import leave, spawn_shell

SHELLS = ["ipython", "ptpython", "python"]
SECRET = "tok-4f9a8b7c6d5e"  # the value of a secret-named variable: masked in the history file
FILES = {"ipython": "ipython.sqlite", "ptpython": "ptpython", "python": "python"}


def stored(path: Path, shell: str) -> str:
    if shell == "ipython":
        with sqlite3.connect(path) as conn:
            return "\n".join(row[0] for row in conn.execute("select source_raw from history"))
    return path.read_text()


@pytest.mark.parametrize("shell", SHELLS)
def test_up_arrow_recalls_the_last_session_of_this_project(shop: Path, tmp_path: Path, shell: str) -> None:
    env = {"SHOP_API_TOKEN": SECRET}
    first = spawn_shell(shop, "--shell", shell, "-q", env=env)
    first.expect(r"\[dev\]")
    first.sendline(f"token = '{SECRET}'; print('history', 6 * 7)")
    first.expect("history 42")
    first.expect(r"\[dev\]")
    leave(first)

    path = shop / ".appshell" / "history" / FILES[shell]
    assert path.stat().st_mode & 0o777 == 0o600
    assert (shop / ".appshell" / ".gitignore").read_text().strip().endswith("*")
    text = stored(path, shell)
    assert "print('history', 6 * 7)" in text and SECRET not in text and "***" in text

    second = spawn_shell(shop, "--shell", shell, "-q", env=env)
    second.expect(r"\[dev\]")
    second.send("\x1b[A")  # Up: the previous session's input, from this project's history
    second.send("\r")
    second.expect("history 42")
    second.expect(r"\[dev\]")
    leave(second)


@pytest.mark.parametrize("shell", SHELLS)
def test_history_can_be_switched_off_by_the_profile(shop: Path, shell: str) -> None:
    (shop / "profiles").mkdir(exist_ok=True)
    (shop / "profiles" / "nohist.toml").write_text("[shell]\nhistory = false\n")
    child = spawn_shell(shop, "--shell", shell, "--profile", "nohist", "-q")
    child.expect(r"\[nohist\]")
    child.sendline("print('no', 'history')")
    child.expect("no history")
    child.expect(r"\[nohist\]")
    leave(child)
    assert not (shop / ".appshell" / "history").exists()
