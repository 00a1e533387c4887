"""The command line: argv → settings → a command; errors printed once, in one place.

``entry`` is the console script's (pyproject.toml: ``appshell = "appshell.cli:entry"``)."""

from __future__ import annotations

from appshell.cli.main import entry, main

__all__ = ["entry", "main"]
