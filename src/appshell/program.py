"""Non-interactive modes: ``-c CODE``, ``SCRIPT.py`` and a program on stdin (SPEC §1, §3)."""

from __future__ import annotations

import ast
import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from appshell.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR, AppshellError
from appshell.journal import Journal

__all__ = ["Program", "run_program", "to_jsonable"]


@dataclass(frozen=True)
class Program:
    source: str
    filename: str  # "<string>", "<stdin>" or the script's path
    mode: str  # command | script | stdin
    argv: list[str]
    audit: dict[str, str] = field(default_factory=dict)  # extra statement fields: a script's path and sha256


def _user_frames(tb: TracebackType | None, filename: str) -> TracebackType | None:
    """Skip appshell's own frames, so the traceback reads as Python's would."""
    start = tb
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    return tb or start


def to_jsonable(value: Any) -> Any:
    """ORM objects become dicts of their columns, rows become dicts, the rest as JSON allows."""
    from sqlalchemy import inspect as sa_inspect

    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if hasattr(value, "_mapping"):
        return {k: to_jsonable(v) for k, v in value._mapping.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    state = sa_inspect(value, raiseerr=False)
    if state is not None and hasattr(state, "mapper"):
        return {a.key: to_jsonable(getattr(value, a.key)) for a in state.mapper.column_attrs}
    return str(value)


def _split_last_expression(tree: ast.Module) -> tuple[ast.Module, ast.Expression | None]:
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body.pop()
        return tree, ast.Expression(body=last.value)  # type: ignore[attr-defined]
    return tree, None


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return EXIT_OK
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return EXIT_USER_ERROR


def run_program(program: Program, namespace: dict[str, Any], journal: Journal, want_json: bool = False) -> int:
    """Run the program in the namespace as Python would; returns the exit code."""
    sys.argv = program.argv
    if program.mode == "script":
        namespace["__file__"] = program.filename
        sys.path.insert(0, str(Path(program.filename).resolve().parent))
    try:
        with journal.statement(program.source, kind=program.mode, **program.audit):
            tree = ast.parse(program.source, program.filename, "exec")
            body, last = _split_last_expression(tree) if want_json else (tree, None)
            exec(compile(body, program.filename, "exec"), namespace)
            if last is not None:
                value = eval(compile(last, program.filename, "eval"), namespace)
                print(json.dumps(to_jsonable(value), indent=None, default=str))
            elif want_json:
                print("null")
    except SystemExit as exc:
        return _exit_code(exc)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", file=sys.stderr)
        return EXIT_INTERRUPTED
    except AppshellError:
        raise  # an audit failure: not the user's error, exit code of its own
    except SyntaxError as exc:
        traceback.print_exception(type(exc), exc, None)
        return EXIT_USER_ERROR
    except Exception as exc:
        traceback.print_exception(type(exc), exc, _user_frames(exc.__traceback__, program.filename))
        return EXIT_USER_ERROR
    return EXIT_OK
