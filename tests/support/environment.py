"""The environment a test's appshell gets: the test process's, without any appshell setting or database URL."""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["clean_environ", "is_cleared"]


def is_cleared(name: str) -> bool:
    """An environment variable no test inherits: an appshell setting, a database URL, a startup file."""
    return name.startswith("APPSHELL_") or name in ("DATABASE_URL", "SOURCE_VERSION", "PYTHONSTARTUP")


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any appshell setting or database URL."""
    env = {k: v for k, v in os.environ.items() if not is_cleared(k)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # pexpect does not answer a terminal's cursor position request (CPR): prompt_toolkit (IPython,
    # ptpython) would wait up to a second for the answer after every input, idle.
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"
    env.update(extra or {})
    return env
