"""The release id: APPSHELL_RELEASE, SOURCE_VERSION, or git HEAD read from .git (SPEC §8)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["release_id", "git_head"]


def _git_dir(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / ".git"
        if candidate.is_dir():
            return candidate
        if candidate.is_file():  # a worktree or submodule: "gitdir: PATH"
            text = candidate.read_text(encoding="utf-8").strip()
            if text.startswith("gitdir:"):
                return (folder / text.split(":", 1)[1].strip()).resolve()
    return None


def git_head(start: Path) -> str | None:
    """The commit HEAD points at, read from files: spawning git would cost time and may be absent."""
    git = _git_dir(start)
    if git is None or not (git / "HEAD").is_file():
        return None
    head = (git / "HEAD").read_text(encoding="utf-8").strip()
    if not head.startswith("ref:"):
        return head or None  # detached HEAD
    ref = head.split(":", 1)[1].strip()
    common = git
    if (git / "commondir").is_file():
        common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
    for base in (git, common):
        loose = base / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            if line.endswith(" " + ref) and not line.startswith("#"):
                return line.split(" ", 1)[0]
    return None  # a branch with no commits yet


def release_id(root: Path | None, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    for name in ("APPSHELL_RELEASE", "SOURCE_VERSION"):
        if environ.get(name):
            return environ[name]
    head = git_head(root or Path.cwd())
    return head[:12] if head else "unknown"
