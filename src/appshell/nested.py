"""Code a statement runs that no input shows: nested consoles, pdb, ``exec(input())``.

A statement such as ``import code; code.interact()`` or ``breakpoint()`` is
recorded, but what the operator then types inside is not an input of
appshell's shell. Python's audit hooks see every ``compile()`` of source text
and every line ``input()`` returns, whoever asks for it, so this module hooks
there (the layer every path passes) and records such code as ``nested``
statements under the running one, before it is compiled: if the audit cannot
record it, the compile raises and the code does not run.

Library code that generates and compiles source (dataclasses, namedtuple,
SQLAlchemy, importlib) is not the operator's input and is left out: a compile
is recorded when it is asked for by the operator's own code, or by one of the
standard REPL machineries (code, codeop, pdb, cmd, IPython's compiler,
ptpython's REPL).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from appshell.errors import AppshellError

if TYPE_CHECKING:
    from appshell.journal import Journal

__all__ = ["watch", "unwatch"]

_EVENTS = frozenset({"compile", "builtins.input/result"})
# Modules whose compile() calls compile what a person typed into a nested console.
_REPL_MODULES = frozenset({
    "code", "codeop", "pdb", "bdb", "cmd",
    "IPython.core.compilerop", "IPython.core.debugger", "IPython.terminal.debugger",
    "ptpython.repl",
})

_active: Journal | None = None
_installed = False
_library_dirs: tuple[str, ...] = ()


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.add(str(Path(__file__).resolve().parent))  # appshell's own compiles (programs, transformers)
    return tuple(sorted(str(Path(r).resolve()) + "/" for r in roots))


def watch(journal: Journal) -> None:
    """Record nested code into *journal* until :func:`unwatch`; the hook is installed once per process."""
    global _active, _installed, _library_dirs
    _active = journal
    if not _installed:
        _library_dirs = _library_roots()
        sys.addaudithook(_hook)  # audit hooks cannot be removed: it goes quiet when no journal is active
        _installed = True


def unwatch(journal: Journal) -> None:
    global _active
    if _active is journal:
        _active = None


def _caller(frame: FrameType | None) -> tuple[str, str]:
    """(module name, file name) of the Python code that made the audited call."""
    if frame is None:
        return "", ""
    return str(frame.f_globals.get("__name__", "")), frame.f_code.co_filename


def _is_library(filename: str) -> bool:
    if filename.startswith("<"):
        return False  # code typed at a prompt, -c, exec'd strings: the operator's
    try:
        resolved = str(Path(filename).resolve())
    except OSError:
        return False
    return resolved.startswith(_library_dirs)


def _text(source: Any) -> str | None:
    if isinstance(source, str):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source).decode("utf-8", "surrogateescape")
    return None  # an AST or a code object: compiled from text that was recorded as such


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS:
        return
    journal = _active
    if journal is None or journal.current is None:
        return
    try:
        module, filename = _caller(sys._getframe(1))
        repl = module in _REPL_MODULES
        if not repl and _is_library(filename):
            return
        if event == "compile":
            _record_compile(journal, _text(args[0]), str(args[1]), module)
        elif not repl:  # a line typed at input(): REPLs compile theirs, which is recorded above
            journal.nested(str(args[0]), kind="input")
    except AppshellError:
        raise  # the audit failed: the compile (or input) raises, the code does not run
    except Exception as exc:  # noqa: BLE001 - a bug here must not break the operator's code
        print(f"appshell: warning: nested-code recording failed ({type(exc).__name__}: {exc})", file=sys.stderr)


def _record_compile(journal: Journal, text: str | None, filename: str, module: str) -> None:
    if text is None or not text.strip():
        return
    key = text.strip()
    current = journal.current
    if current is None or key == current.source.strip() or key in journal.expected:
        return  # the running statement itself, compiled by the shell that recorded it
    journal.expected.add(key)  # codeop and friends compile one input several times: record it once
    journal.nested(text, kind="nested", filename=filename, via=module)
