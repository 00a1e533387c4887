"""Tables fit the terminal, in a real pseudo-terminal (issue 25 item 1): helpers(), where() on a real
app's 30-column model and describe() print no line wider than the terminal, at 80 and 160 columns."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from support.harness import run
from support.terminal import end_input, spawn_shell

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b\][^\x07]*\x07")


@pytest.fixture
def wide(app_dir: Callable[[str], Path], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = app_dir("wideapp")
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'wide.db'}"}
    seeded = run(
        ["-q", "-c", "metadata.create_all(engine); __import__('wideapp.models').models.seed(session)"],
        cwd=root,
        env=env,
    )
    assert seeded.exit_code == 0, seeded.output
    return root, env


@pytest.mark.parametrize("columns", [80, 160])
def test_no_line_is_wider_than_the_terminal(wide: tuple[Path, dict[str, str]], columns: int) -> None:
    root, env = wide
    child = spawn_shell(root, "--shell", "python", "-q", env=env, columns=columns)
    child.expect(">>> ")
    for statement, done in [
        ("helpers()", r"\(\d+ rows\)"),
        ("where(Run)", r"\(2 rows\)"),
        ("describe(Run)", r"\(30 rows\)"),
    ]:
        child.sendline(statement)
        child.expect(done)
        child.expect(">>> ")
        shown = ANSI.sub("", child.before or "")
        lines = [line.rstrip("\r") for line in shown.split("\n")]
        too_wide = [line for line in lines if len(line) > columns]
        assert not too_wide, f"{statement} at {columns} columns: {too_wide[:3]}"
    child.sendline("print(where(Run, columns=['id', 'name_01']))")
    child.expect(r"│ +1 │ run 1 column 1 x+ │")
    end_input(child)
