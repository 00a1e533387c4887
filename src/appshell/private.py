"""appshell's private folder in a project: ``.appshell/`` (audit log, seal, history)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["private_dir"]

GITIGNORE = "# appshell's private state: audit log, seal, history. Never commit it.\n*\n"


def private_dir(path: Path) -> Path:
    """Create *path* (0700) if needed; an ``.appshell`` folder on the way gets a ``.gitignore`` of
    ``*``, so the audit log and the history are never committed with the project."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for folder in (path, *path.parents):
        if folder.name == ".appshell":
            ignore = folder / ".gitignore"
            if not ignore.exists():
                ignore.write_text(GITIGNORE)
            break
    return path
