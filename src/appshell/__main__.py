from __future__ import annotations

from appshell.cli import entry

entry()
