"""Per-project shell history: Up-arrow in a new session recalls this project's inputs only.

Each shell keeps its own file under ``.appshell/history/`` in the project root
(``$XDG_STATE_HOME/appshell/history/`` outside a project), created 0600 in a
0700 folder, with secrets masked by the audit's redactor before a line is
stored, and the strings given for protected columns (``email="…"``) masked where the session
protects data (appshell.console.protect): history outlives an ``unlock()``. The profile's
``shell.history`` turns it off; ``shell.history_path`` moves the folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from appshell.private import private_dir

if TYPE_CHECKING:
    from appshell.config.settings import Settings

__all__ = ["History", "history_for"]


@dataclass(frozen=True)
class History:
    folder: Path | None  # None: no history kept
    redact: Callable[[str], str] = field(default=lambda text: text)

    def file(self, shell: str) -> Path | None:
        """This shell's history file, created 0600; None when history is off or cannot be kept here."""
        if self.folder is None:
            return None
        import sqlite3  # IPython's history is an SQLite database

        try:
            path = private_dir(self.folder) / shell
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            if path.suffix == ".sqlite":
                _probe_sqlite(path)
        except (OSError, sqlite3.Error) as exc:
            # History is a convenience: a shell without it is better than no shell.
            print(
                f"appshell: warning: no history this session ({exc}) "
                f"— check {self.folder}, or set shell.history = false",
                file=sys.stderr,
            )
            return None
        return path


def _probe_sqlite(path: Path) -> None:
    """IPython's history is an SQLite database: make sure it can be written (a full disk, a file size limit)."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("CREATE TABLE IF NOT EXISTS appshell_probe (x)")
            conn.execute("DROP TABLE appshell_probe")
    finally:
        conn.close()


def _masking(redact: Callable[[str], str]) -> Callable[[str], str]:
    def masked(text: str) -> str:
        from appshell.console.protect import mask_source

        return mask_source(redact(text))

    return masked


def history_for(settings: Settings, redact: Callable[[str], str]) -> History:
    shell = settings.profile.shell
    if settings.profile.protect.enabled:
        redact = _masking(redact)
    if not shell.history:
        return History(None, redact)
    if shell.history_path:
        folder = Path(shell.history_path).expanduser()
        if not folder.is_absolute() and settings.project_root is not None:
            folder = settings.project_root / folder
    elif settings.project_root is not None:
        folder = settings.project_root / ".appshell" / "history"
    else:
        folder = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "appshell" / "history"
    return History(folder, redact)
