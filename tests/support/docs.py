"""The ```console examples of a docs page, which the tests run."""

from __future__ import annotations

import re

__all__ = ["console_blocks"]


def console_blocks(text: str, tag: str = "") -> list[list[tuple[str, str, int]]]:
    """The ```console blocks of a docs page (```console TAG ones, given *tag*): each a list of
    (command, what it prints, exit code), in order; `[exit N]` closing an output names its code."""
    found = []
    for block in re.findall(r"```console" + (" " + re.escape(tag) if tag else "") + r"\n(.*?)```", text, re.S):
        examples = []
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            code = 0
            if m := re.search(r"^\[exit (\d+)\]\n\Z", output, re.M):
                code, output = int(m[1]), output[: m.start()]
            examples.append((command, output, code))
        found.append(examples)
    return found
