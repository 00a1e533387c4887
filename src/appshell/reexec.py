"""Run in the project's own virtual environment, as ``bundle exec`` does (docs/operations.md).

Started by another interpreter while the project has ``.venv/`` (or
``APPSHELL_PYTHON`` names one), appshell re-executes itself there, keeping
argv, stdin and the exit code (exec replaces the process). This runs before
anything heavy is imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from appshell.errors import ConfigError

__all__ = ["project_python", "same_environment", "reexec_target", "maybe_reexec", "install_command", "GUARD"]

GUARD = "APPSHELL_REEXECUTED"  # set in the child: never re-exec twice (a loop guard)


def project_python(root: Path | None, environ: Mapping[str, str]) -> Path | None:
    if environ.get("APPSHELL_PYTHON"):
        return Path(environ["APPSHELL_PYTHON"])
    if root is not None and (root / ".venv" / "bin" / "python").exists():
        return root / ".venv" / "bin" / "python"
    return None


def _environment_of(python: Path) -> Path:
    """The virtual environment a python belongs to (its prefix), without running it."""
    venv = python.parent.parent
    return venv if (venv / "pyvenv.cfg").is_file() else python.parent


def same_environment(python: Path) -> bool:
    # Compare prefixes, not resolved executables: every venv's python is a symlink to one base.
    return _environment_of(python).resolve() == Path(sys.prefix).resolve()


def reexec_target(argv: Sequence[str], environ: Mapping[str, str], root: Path | None) -> Path | None:
    """The python to re-execute with, or None to stay in this process."""
    if "--no-reexec" in argv or environ.get(GUARD):
        return None
    python = project_python(root, environ)
    if python is None or same_environment(python):
        return None
    if not python.exists():
        raise ConfigError(f"APPSHELL_PYTHON={python} does not exist", "fix APPSHELL_PYTHON or pass --no-reexec")
    env_dir = _environment_of(python)
    if not any(env_dir.glob("lib/python*/site-packages/appshell-*.dist-info")):
        raise ConfigError(
            f"the project's environment {env_dir} does not have appshell installed",
            f"install it there: {install_command(python)} — or pass --no-reexec",
        )
    return python


def install_command(python: Path) -> str:
    """A command that installs this appshell into *python*'s environment.

    It runs this interpreter's pip with ``--python`` (pip ≥ 22.3), so it works
    in an environment made without pip too, and installs what runs now: the
    source checkout it comes from, else the same version from the index.
    """
    import shlex

    from appshell import __version__

    checkout = Path(__file__).resolve().parents[2]
    pyproject = checkout / "pyproject.toml"
    source = str(checkout) if pyproject.is_file() and 'name = "appshell"' in pyproject.read_text(encoding="utf-8") else f"appshell=={__version__}"
    return shlex.join([sys.executable, "-m", "pip", "--python", str(python), "install", source])


def maybe_reexec(argv: Sequence[str], root: Path | None) -> None:
    python = reexec_target(argv, os.environ, root)
    if python is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(str(python), [str(python), "-m", "appshell", *argv], {**os.environ, GUARD: "1"})
