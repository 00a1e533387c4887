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
from types import FrameType
from typing import TYPE_CHECKING, Any

from appshell.errors import AppshellError, AuditFailure, BytecodeRefused, Refused
from appshell.hooks.frames import FROZEN_IMPORT, is_library_file, library_dirs
from appshell.process import PROCESS

if TYPE_CHECKING:
    from appshell.record.journal import Journal

__all__ = ["watch", "unwatch", "BytecodeRefused", "import_record"]

_EVENTS = frozenset({"compile", "exec", "builtins.input/result"})
_IMPORT_MACHINERY = frozenset({"importlib._bootstrap", "importlib._bootstrap_external", "zipimport"})
_FROZEN_IMPORT = FROZEN_IMPORT
# Modules whose compile() calls compile what a person typed into a nested console.
_REPL_MODULES = frozenset(
    {
        "code",
        "codeop",
        "pdb",
        "bdb",
        "cmd",
        "IPython.core.compilerop",
        "IPython.core.debugger",
        "IPython.terminal.debugger",
        "ptpython.repl",
    }
)


def watch(journal: Journal) -> None:
    """Record nested code into *journal* until :func:`unwatch`; the hook is installed once per process."""
    PROCESS.journal = journal
    library_dirs()  # read now, not inside the first audited call
    PROCESS.audit_hook("nested", _hook)  # it goes quiet when no journal is active


def unwatch(journal: Journal) -> None:
    if PROCESS.journal is journal:
        PROCESS.journal = None


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


def _text(source: Any) -> str | None:
    if isinstance(source, str):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source).decode("utf-8", "surrogateescape")
    return None  # an AST or a code object: compiled from text that was recorded as such


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS:
        return
    journal: Journal | None = PROCESS.journal
    if journal is None:
        return
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 1000)  # room to record, however deep the operator's code is
    try:
        frame = sys._getframe(0).f_back  # None where C code in a greenlet's first frame asked
        module, filename = _caller(frame)
        if event == "exec":
            if module in _IMPORT_MACHINERY:  # a module's code, maybe from a .pyc: no compile() to see
                _record_import(journal, args[0], _module_globals(frame))
            return
        repl = module in _REPL_MODULES
        if (
            not repl
            and is_library_file(filename)
            and not (event == "compile" and _called_back(frame, module, filename))
        ):
            return
        if journal.current is None and repl:
            return  # the shell compiling the next input, which it records as a statement
        if event == "compile":
            _record_compile(journal, _text(args[0]), str(args[1]), module)
        elif not repl:  # a line typed at input(): REPLs compile theirs, which is recorded above
            journal.nested(str(args[0]), kind="input" if journal.current is not None else "background_input")
    except (AppshellError, Refused):
        raise  # the audit failed, or the code is refused (byte code that is not its source): it does not run
    except Exception as exc:
        # Fail closed: code that could not be recorded does not run (near the recursion
        # limit, say, where recording is exactly what an operator would try to break).
        raise AuditFailure(
            f"nested code could not be recorded ({type(exc).__name__}); it was not run",
            "run it as a statement of its own",
        ) from None
    finally:
        sys.setrecursionlimit(limit)


def _module_globals(frame: FrameType | None) -> dict[str, Any] | None:
    """The globals of the module the import system is about to run: ``_call_with_frames_removed(exec, code,
    module.__dict__)`` is the frame that runs it (importlib._bootstrap_external's exec_module, CPython 3.8+)."""
    if frame is None:
        return None
    args = frame.f_locals.get("args")
    if isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], dict):
        return args[1]
    return None


def _code_sha256(code: Any) -> str:
    """The sha256 of a code object as marshal writes it, in format 2: no back-references, which depend on
    reference counts, so the same code hashes the same whether it was just compiled or read from a .pyc."""
    import hashlib
    import marshal

    return hashlib.sha256(marshal.dumps(code, 2)).hexdigest()


def import_record(code: Any, module: dict[str, Any] | None) -> tuple[dict[str, Any], str, str | None]:
    """What an import runs: (the record's file entry, the source text to record, why it is refused or None).

    The entry holds the source file's path and sha256, the sha256 of the code object that runs
    (``code_sha256``), the byte-code file beside it (``bytecode``: path and sha256) and whether that
    code is what the source compiles to (``matches_source``). The import system picks a ``.pyc`` by
    the source's size and mtime alone (SourceFileLoader.get_code), so a .pyc compiled from other
    source, then covered by a file of the same size and mtime, runs while the source reads benign."""
    path = module.get("__file__") if module is not None else None
    path = path if isinstance(path, str) else getattr(code, "co_filename", "")
    cached = module.get("__cached__") if module is not None else None
    entry: dict[str, Any] = {"path": path, "code_sha256": _code_sha256(code)}
    if isinstance(cached, str) and os.path.isfile(cached):
        from appshell.record.journal import file_sha256

        entry["bytecode"] = {"path": cached, "sha256": file_sha256(cached)}
    data = _source_of(path, module)
    if data is None:
        entry["matches_source"] = None
        what = (
            f"{path} is byte code with no source"
            if os.path.isfile(path)
            else f"{path} (no source file) ran from byte code"
        )
        return (
            entry,
            f"# import {path} (no source file)",
            (
                f"{what}: what it runs cannot be read in the audit log — "
                "put its .py source beside it, or delete the byte code"
            ),
        )
    from appshell.record.journal import file_info

    info = file_info(path, data)
    entry.update(path=info["path"], sha256=info["sha256"])
    try:
        # dont_inherit: this module's own `from __future__ import annotations` must not change the compile.
        matches = compile(data, path, "exec", dont_inherit=True) == code
    except (SyntaxError, ValueError):
        matches = False  # the source does not even compile: the code that runs came from elsewhere
    entry["matches_source"] = matches
    if matches:
        return entry, info["text"], None
    pyc = entry.get("bytecode", {}).get("path") or "its __pycache__ entry"
    return (
        entry,
        info["text"],
        (
            f"the byte code {pyc} does not match its source {info['path']} (altered, or stale with the same size "
            f"and mtime) — delete {pyc} and import it again"
        ),
    )


def _source_of(path: str, module: dict[str, Any] | None) -> bytes | None:
    """The source the module says it was made from: its file, else what its loader hands out (a zip archive's)."""
    if path.endswith((".pyc", ".pyo")):
        return None
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    spec = module.get("__spec__") if module is not None else None
    get_source = getattr(getattr(spec, "loader", None), "get_source", None)
    try:
        text = get_source(spec.name) if spec is not None and callable(get_source) else None
    except (ImportError, OSError):
        text = None
    # Decoded by the loader (a coding cookie honoured): its UTF-8 compiles to the same code, the cookie aside.
    return text.encode("utf-8") if isinstance(text, str) and "coding" not in text[:200] else None


def _record_import(journal: Journal, code: Any, module: dict[str, Any] | None) -> None:
    """A module of the operator's (not of the standard library or site-packages) imported during
    the session: what runs is recorded before it runs, once per session — and refused where its
    byte code is not its source (or has none): the record could not say what ran."""
    path = getattr(code, "co_filename", "")
    where = module.get("__file__") if module is not None else None
    key = where if isinstance(where, str) else path
    if (
        not path
        or path.startswith("<")
        or (is_library_file(path) and (not isinstance(where, str) or is_library_file(where)))
        or key in journal.imported
    ):
        return
    entry, text, refusal = import_record(code, module)
    if refusal is not None:
        entry["refused"] = refusal
    else:
        journal.imported.add(key)  # a refused one is refused again, and recorded again, at its next import
    journal.nested(text, kind="import", files=[entry])
    if refusal is not None:
        name = module.get("__name__") if module is not None else None
        raise BytecodeRefused(f"import {name or path} refused: {refusal}")


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
