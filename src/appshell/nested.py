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

import os
import sys
import sysconfig
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from appshell.errors import AppshellError, AuditFailure

if TYPE_CHECKING:
    from appshell.journal import Journal

__all__ = ["watch", "unwatch"]

_EVENTS = frozenset({"compile", "exec", "builtins.input/result"})
_IMPORT_MACHINERY = frozenset({"importlib._bootstrap", "importlib._bootstrap_external", "zipimport"})
_FROZEN_IMPORT = ("<frozen importlib.", "<frozen zipimport>")
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


_COMPILERS = frozenset({"exec", "eval", "compile"})


def _called_back(frame: FrameType | None, module: str, filename: str) -> bool:
    """A library frame that compiles without naming exec/eval/compile ran one of them as a callback
    it was handed — ``loop.call_soon(exec, src)``, ``Thread(target=exec)``, ``run_in_executor`` —
    so the source is the operator's. (Code-generating libraries call them by name: dataclasses,
    namedtuple, SQLAlchemy; the import system is told apart by its own frames.)"""
    if frame is None or module in _IMPORT_MACHINERY or filename.startswith(_FROZEN_IMPORT):
        return False
    return _COMPILERS.isdisjoint(frame.f_code.co_names)


def _is_library(filename: str) -> bool:
    if filename.startswith(_FROZEN_IMPORT):
        return True  # the import system compiling a module's source: the module is recorded on "exec"
    if filename.startswith("<"):
        return False  # code typed at a prompt, -c, exec'd strings: the operator's
    try:
        resolved = str(Path(filename).resolve())
    except OSError:
        return False
    return resolved.startswith(_library_dirs)


def is_library_file(filename: str) -> bool:
    """Whether code in *filename* is the standard library's, an installed package's or appshell's."""
    global _library_dirs
    if not _library_dirs:
        _library_dirs = _library_roots()
    return _is_library(filename)


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
    if journal is None:
        return
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 1000)  # room to record, however deep the operator's code is
    try:
        frame = sys._getframe(0).f_back  # None where C code in a greenlet's first frame asked
        module, filename = _caller(frame)
        if event == "exec":
            if module in _IMPORT_MACHINERY:  # a module's code, maybe from a .pyc: no compile() to see
                _record_import(journal, args[0])
            return
        repl = module in _REPL_MODULES
        if not repl and _is_library(filename) and not (event == "compile" and _called_back(frame, module, filename)):
            return
        if journal.current is None and repl:
            return  # the shell compiling the next input, which it records as a statement
        if event == "compile":
            _record_compile(journal, _text(args[0]), str(args[1]), module)
        elif not repl:  # a line typed at input(): REPLs compile theirs, which is recorded above
            journal.nested(str(args[0]), kind="input" if journal.current is not None else "background_input")
    except AppshellError:
        raise  # the audit failed: the compile (or input) raises, the code does not run
    except Exception as exc:  # noqa: BLE001
        # Fail closed: code that could not be recorded does not run (near the recursion
        # limit, say, where recording is exactly what an operator would try to break).
        raise AuditFailure(
            f"nested code could not be recorded ({type(exc).__name__}); it was not run",
            "run it as a statement of its own",
        ) from None
    finally:
        sys.setrecursionlimit(limit)


def _record_import(journal: Journal, code: Any) -> None:
    """A module of the operator's (not of the standard library or site-packages) imported during
    the session: its file is recorded before its code runs, once per session."""
    path = getattr(code, "co_filename", "")
    if not path or path.startswith("<") or _is_library(path) or path in journal.imported:
        return
    journal.imported.add(path)
    from appshell.journal import file_info

    source = path if os.path.isfile(path) else None
    info = file_info(source) if source else None
    record = {"path": info["path"], "sha256": info["sha256"]} if info else {"path": path}
    journal.nested(info["text"] if info else f"# import {path} (no source file)", kind="import", files=[record])


def _record_compile(journal: Journal, text: str | None, filename: str, module: str) -> None:
    if text is None or not text.strip():
        return
    key = text.strip()
    current = journal.current
    if current is not None and (key == current.source.strip() or key in journal.expected):
        return  # the running statement itself, compiled by the shell that recorded it
    if module in _REPL_MODULES:
        journal.expected.add(key)  # codeop and friends compile one input several times: record it once
    # With no statement running, it is code a thread, a signal handler or a hook runs between
    # statements: recorded all the same, before it compiles.
    journal.nested(text, kind="nested" if current is not None else "background", filename=filename, via=module)
