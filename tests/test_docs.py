"""Every ```console example in docs/ runs against the example shop and prints what the page says."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.docs import console_blocks
from support.harness import run
from support.paths import ROOT

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?")


@dataclass
class Example:
    page: str
    command: str
    expected: str
    exit_code: int


def blocks() -> list[list[Example]]:
    """Each ```console block: its commands run in order, in one copy of the shop."""
    return [
        [Example(page.name, *example) for example in block]
        for page in sorted((ROOT / "docs").glob("*.md"))
        for block in console_blocks(page.read_text(encoding="utf-8"))
    ]


@pytest.mark.parametrize("block", blocks(), ids=lambda b: f"{b[0].page}: {b[0].command[:50]}")
def test_doc_block(block: list[Example], shop: Path) -> None:
    for example in block:
        check(example, shop)


def check(example: Example, shop: Path) -> None:
    words = shlex.split(example.command)
    stdin = ""
    if "|" in words:  # echo "PROGRAM" | appshell ARGS
        bar = words.index("|")
        assert words[0] == "echo", example.command
        stdin, words = " ".join(words[1:bar]) + "\n", words[bar + 1 :]
    assert words[0] == "appshell", example.command
    result = run(words[1:], cwd=shop, input=stdin)
    assert result.exit_code == example.exit_code, result.output
    assert TIMESTAMP.sub("YYYY-MM-DD hh:mm:ss", result.output) == example.expected
