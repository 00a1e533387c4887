"""Non-interactive modes: ``-c CODE``, ``SCRIPT.py`` and a program on stdin (docs/usage.md)."""

from __future__ import annotations

import ast
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from appshell.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR, AppshellError, UsageError
from appshell.hooks import aio
from appshell.record.journal import Journal, file_info

if TYPE_CHECKING:
    from appshell.console.refusals import Refusals

__all__ = ["Program", "run_program", "to_jsonable"]


@dataclass(frozen=True)
class Program:
    """What runs instead of a shell; *argv* becomes ``sys.argv``, as ``python`` sets it."""

    source: str
    filename: str  # "<string>", "<stdin>" or the script's path
    mode: str  # command | script | stdin
    argv: list[str]
    audit: dict[str, str] = field(default_factory=dict)  # extra statement fields: a script's path and sha256

    @classmethod
    def from_command(cls, code: str, args: Sequence[str] = ()) -> Program:
        """``-c CODE [ARGS…]``."""
        return cls(code, "<string>", "command", ["-c", *args])

    @classmethod
    def from_stdin(cls, args: Sequence[str] = (), stream: TextIO | None = None) -> Program:
        """The program on stdin (``-``, or no terminal), read to its end."""
        return cls((sys.stdin if stream is None else stream).read(), "<stdin>", "stdin", ["-", *args])

    @classmethod
    def from_script(cls, script: str, args: Sequence[str] = ()) -> Program:
        """``SCRIPT.py [ARGS…]``: read once, so that what runs is what is hashed for the audit."""
        path = Path(script)
        if path.is_dir():
            raise UsageError(f"'{script}' is a directory, not a script", "name the .py file to run")
        if not path.is_file():
            raise UsageError(f"cannot open script '{script}' (no such file)", "check the path")
        data = path.read_bytes()
        source = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text() would
        audit = {k: v for k, v in file_info(path, data).items() if k != "text"}
        return cls(source, str(path), "script", [script, *args], audit)


def _user_frames(tb: TracebackType | None, filename: str) -> TracebackType | None:
    """Skip appshell's own frames, so the traceback reads as Python's would."""
    start = tb
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    return tb or start


def to_jsonable(value: Any) -> Any:
    """--json's conversion (appshell.console.jsonable), imported only when a program asks for JSON."""
    from appshell.console.jsonable import to_jsonable as convert

    return convert(value)


def _writes_to_fd1(stream: Any) -> bool:
    try:
        return bool(stream.fileno() == 1)
    except (AttributeError, OSError, ValueError):  # a test harness's capture object
        return False


@contextmanager
def _stdout_to_stderr() -> Iterator[Callable[[str], None]]:
    """While a --json program runs, whatever it (or the app's logging) writes to stdout goes to stderr.

    Yields the function that writes the JSON to the real stdout. Both ``sys.stdout``
    and file descriptor 1 are redirected, and fd 1 stays on stderr afterwards: a
    logging handler made before the program started (SQLAlchemy's ``echo=True``)
    holds the old stream object and still writes to fd 1 during teardown (its
    ROLLBACK), after the JSON. The process ends right after; nothing else is owed to stdout.
    """
    real = sys.stdout
    real.flush()
    if not _writes_to_fd1(real):  # in-process (a test harness): swapping the object is all there is
        sys.stdout = sys.stderr
        try:
            yield lambda text: print(text, file=real)
        finally:
            sys.stdout = real
        return
    saved = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def write_json(text: str) -> None:
        with open(saved, "w", encoding="utf-8", closefd=False) as out:
            out.write(text + "\n")

    try:
        yield write_json
    finally:
        sys.stdout.flush()
        sys.stdout = real  # still fd 1, which now reaches stderr
        os.close(saved)


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


def run_program(
    program: Program,
    namespace: dict[str, Any],
    journal: Journal,
    want_json: bool = False,
    refusals: Callable[[], Refusals] | None = None,
) -> int:
    """Run the program in the namespace as Python would; returns the exit code. *refusals* makes, on the
    error path only, what says a refusal in one line (appshell.console.refusals)."""
    sys.argv = program.argv
    if program.mode == "script":
        namespace["__file__"] = program.filename
        sys.path.insert(0, str(Path(program.filename).resolve().parent))
    try:
        with journal.statement(program.source, kind=program.mode, **program.audit):
            tree = ast.parse(program.source, program.filename, "exec")
            if not want_json:
                aio.execute(compile(tree, program.filename, "exec", aio.FLAGS), namespace)  # top-level await allowed
                return EXIT_OK
            body, last = _split_last_expression(tree)
            with _stdout_to_stderr() as write_json:
                aio.execute(compile(body, program.filename, "exec", aio.FLAGS), namespace)
                value = (
                    None if last is None else aio.execute(compile(last, program.filename, "eval", aio.FLAGS), namespace)
                )
                write_json(
                    json.dumps(aio.sync_io(to_jsonable, value), indent=None, default=str)
                )  # an async app's lazy loads
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
        from appshell.console.refusals import Refusals  # the error path only

        line = (refusals() if refusals is not None else Refusals()).line(
            exc
        )  # read-only, destructive, sandbox: one line, not SQLAlchemy's frames
        if line is not None:
            print(line, file=sys.stderr)
        else:
            traceback.print_exception(type(exc), exc, _user_frames(exc.__traceback__, program.filename))
        return EXIT_USER_ERROR
    return EXIT_OK
