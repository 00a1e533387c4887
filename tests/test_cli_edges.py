"""Small command-line edges (issue 13 item 12): each a clear one-line error, or a quiet end."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support.environment import clean_environ
from support.harness import Result
from support.paths import APPSHELL

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reason", " ", "-c", "1"], "appshell: error: the reason for this session is blank — say why in words"),
        (["--reason", "", "-c", "1"], "appshell: error: the reason for this session is blank"),
        (["--database-url", "", "-c", "1"], "appshell: error: --database-url is empty — give the database's URL"),
        (["shop"], "appshell: error: 'shop' is a directory, not a script — name the .py file to run"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    shop: Path, invoke: Callable[..., Result], args: list[str], message: str
) -> None:
    result = invoke(args, cwd=shop)
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_blank_reason_from_the_environment_is_refused_too(shop: Path, invoke: Callable[..., Result]) -> None:
    result = invoke(["-c", "1"], cwd=shop, env={"APPSHELL_REASON": "   "})
    assert result.exit_code == 2 and "reason for this session is blank" in result.stderr


def test_output_into_a_closed_pipe_ends_quietly(shop: Path) -> None:
    """`appshell profiles | head -1`: the reader is gone before appshell writes."""
    proc = subprocess.Popen(
        [APPSHELL, "profiles"], cwd=shop, env=clean_environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader leaves at once: every write of appshell's meets a broken pipe
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"Traceback" not in err and b"BrokenPipe" not in err


@pytest.mark.parametrize(
    ("word", "choices", "hint"),
    [
        ("prodution", ["development", "staging", "production"], " (did you mean 'production'?)"),
        ("ipyton", ["auto", "ipython", "ptpython", "python"], " (did you mean 'ipython'?)"),
        ("audit.requird", ["audit.required", "audit.sinks"], " (did you mean 'audit.required'?)"),
        ("zzz", ["development", "staging"], ""),
        ("x", [], ""),
    ],
)
def test_did_you_mean(word: str, choices: list[str], hint: str) -> None:
    from appshell.errors import did_you_mean

    assert did_you_mean(word, choices) == hint


@pytest.mark.parametrize(
    ("args", "profile_text", "message"),
    [
        (["--profile", "prodution", "-c", "1"], None, "unknown profile 'prodution' (did you mean 'production'?)"),
        (["--shell", "ipyton", "-c", "1"], None, "unknown shell 'ipyton' (did you mean 'ipython'?)"),
        (
            ["--profile", "typo", "-c", "1"],
            "[audit]\nrequird = true\n",
            "unknown key 'audit.requird' (did you mean 'audit.required'?)",
        ),
    ],
)
def test_unknown_names_suggest_the_nearest(
    shop: Path, invoke: Callable[..., Result], args: list[str], profile_text: str | None, message: str
) -> None:
    if profile_text is not None:
        (shop / "profiles" / "typo.toml").write_text(profile_text)
    result = invoke(args, cwd=shop)
    assert result.exit_code == 2 and message in result.stderr and result.stderr.startswith("appshell: error: ")


def test_json_stdout_holds_only_the_json_even_when_the_app_prints_while_booting(shop: Path) -> None:
    from support.harness import run

    (shop / "noisy.py").write_text(
        "print('booting the noisy app')\nfrom shop.db import engine, SessionLocal\nfrom shop.models import *\n"
    )
    result = run(["--app", "noisy", "--json", "-c", "count(Product)"], cwd=shop)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "8\n"
    assert "booting the noisy app" in result.stderr


def test_the_private_folder_is_never_committed(shop: Path) -> None:
    """`.appshell/` (audit log, seal, history) gets a .gitignore of `*` as soon as appshell writes there."""
    from support.harness import run

    assert not (shop / ".appshell").exists()
    assert run(["-c", "1"], cwd=shop).exit_code == 0
    assert (shop / ".appshell" / "audit.jsonl").is_file()
    assert (shop / ".appshell" / ".gitignore").read_text().splitlines()[-1] == "*"
    subprocess.run(["git", "init", "-q"], cwd=shop, check=True)
    assert (
        subprocess.run(["git", "check-ignore", "-q", ".appshell/audit.jsonl"], cwd=shop).returncode == 0
    )  # git agrees
