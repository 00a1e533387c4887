"""Which source files are libraries' (the standard library, installed packages, appshell): the rest is the operator's.

One answer for every hook that tells the operator's code from a library's: the nested-code
recorder (appshell.record.nested), ``asyncio.run`` on the session's loop (appshell.hooks.aio),
the protected-host guard (appshell.console.protect), the SQL echo's ``file:line``.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

__all__ = ["is_library_file", "library_dirs", "FROZEN_IMPORT"]

FROZEN_IMPORT = ("<frozen importlib.", "<frozen zipimport>")  # the import system's own frames
_library_dirs: tuple[str, ...] = ()


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.add(str(Path(__file__).resolve().parents[1]))  # appshell's own compiles (programs, transformers)
    return tuple(sorted(str(Path(r).resolve()) + "/" for r in roots))


def library_dirs() -> tuple[str, ...]:
    """The folders library code lives in (read once per process)."""
    global _library_dirs
    if not _library_dirs:
        _library_dirs = _library_roots()
    return _library_dirs


def is_library_file(filename: str) -> bool:
    """Whether code in *filename* is the standard library's, an installed package's or appshell's."""
    if filename.startswith(FROZEN_IMPORT):
        return True  # the import system compiling a module's source: the module is recorded on "exec"
    if filename.startswith("<"):
        return False  # code typed at a prompt, -c, exec'd strings: the operator's
    try:
        resolved = str(Path(filename).resolve())
    except OSError:
        return False
    return resolved.startswith(library_dirs())
