"""The release id: APPSHELL_RELEASE, SOURCE_VERSION, or git HEAD read from .git (docs/operations.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appshell.config.profiles import Profile

__all__ = ["release_id", "git_head", "Parity", "check_parity"]


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


@dataclass(frozen=True)
class Parity:
    """Whether this console runs the release the web process publishes."""

    state: str  # unchecked | match | mismatch | unknown
    expected: str | None = None
    source: str | None = None
    problem: str | None = None

    def describe(self, release: str) -> str:
        if self.state == "mismatch":
            return f"this console runs release {release}, the web process runs {self.expected} (from {self.source})"
        if self.state == "unknown":
            return f"the web process's release could not be read from {self.source} ({self.problem})"
        return ""


def _published(profile: Profile, root: Path | None) -> tuple[str | None, str | None, str | None]:
    """(release, where it came from, problem) as the web process publishes it."""
    if profile.release.expected_file:
        path = Path(profile.release.expected_file)
        path = path if path.is_absolute() or root is None else root / path
        try:
            return path.read_text(encoding="utf-8").strip(), str(path), None
        except OSError as exc:
            return None, str(path), exc.strerror or str(exc)
    if profile.release.expected_url:
        import json
        import urllib.request

        url = profile.release.expected_url
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                body = response.read().decode("utf-8").strip()
        except (OSError, ValueError) as exc:
            return None, url, str(getattr(exc, "reason", exc))
        try:  # either the bare id, or JSON with a "release" key
            data = json.loads(body)
            return str(data["release"]) if isinstance(data, dict) else str(data), url, None
        except (ValueError, KeyError):
            return body, url, None
    return None, None, None


def check_parity(release: str, profile: Profile, root: Path | None) -> Parity:
    expected, source, problem = _published(profile, root)
    if source is None:
        return Parity("unchecked")
    if expected is None:
        return Parity("unknown", None, source, problem)
    # A short id matches a long one: the web process may publish a 7-char SHA.
    same = expected == release or (
        len(min(expected, release, key=len)) >= 7 and (expected.startswith(release) or release.startswith(expected))
    )
    return Parity("match" if same else "mismatch", expected, source)
