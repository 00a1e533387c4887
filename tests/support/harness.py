"""Running appshell without a tty: `main()` in this process (a CliRunner-style harness) or the real console script."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.environment import clean_environ
from support.paths import APPSHELL, ROOT

__all__ = ["ALL_SUBPROCESS", "InProcessTimeout", "Result", "in_process_mode", "run", "run_in_process", "run_module"]


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


# In-process or a real process (docs/design.md §9). A test module opts in with
# `pytestmark = pytest.mark.in_process`: then run() calls cli.main in this process, inside
# support.process_state.process_state(), like click's CliRunner. A test that only a real
# process can show (signals, ptys, re-exec, fork, os._exit/atexit, threads left running, the
# console script's entry() itself) carries @pytest.mark.subprocess, or passes process=True.
# Set per test by conftest's _run_mode fixture (in_process_mode).
_in_process_test = False
# APPSHELL_TEST_SUBPROCESS=1: every run() a real process, as before the in-process harness (to compare, or to
# rule it out).
ALL_SUBPROCESS = os.environ.get("APPSHELL_TEST_SUBPROCESS", "") not in ("", "0")


@contextmanager
def in_process_mode(in_process: bool) -> Iterator[None]:
    """While it lasts, run() and run_module() without *process* run in this process if *in_process*
    (and APPSHELL_TEST_SUBPROCESS does not say otherwise)."""
    global _in_process_test
    _in_process_test = in_process and not ALL_SUBPROCESS
    try:
        yield
    finally:
        _in_process_test = False


def _may_reexec(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> bool:
    """Would appshell re-execute itself (os.execve would replace this test process)?"""
    if "--no-reexec" in args or env.get("APPSHELL_REEXECUTED"):
        return False
    return bool(env.get("APPSHELL_PYTHON")) or any((folder / ".venv").exists() for folder in (cwd, *cwd.parents))


def run(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
    *,
    process: bool | None = None,
) -> Result:
    """Run appshell without a tty: in this process in modules marked in_process (unless *process*
    is true), else the real `appshell` console script in a subprocess."""
    environ = clean_environ(env)
    in_process = _in_process_test if process is None else not process
    if in_process and not ALL_SUBPROCESS and not _may_reexec(args, Path(cwd), environ):
        return run_in_process(args, cwd, environ, input, timeout)
    proc = subprocess.run(
        [APPSHELL, *args],
        cwd=cwd,
        env=environ,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


class _Stream(io.TextIOWrapper):
    """A captured standard stream: text over bytes (``.buffer`` works), never a tty, no file descriptor."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8", errors="surrogateescape", write_through=True)

    def close(self) -> None:  # the program may close sys.stdout; what it wrote stays readable
        self.flush()

    def text(self) -> str:
        self.flush()
        data = self.buffer.getvalue()  # type: ignore[attr-defined]
        # As subprocess.run(text=True) reads it: universal newlines.
        return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")


# sys.path as the console script starts with it: its own folder first, not pytest's rootdir or cwd.
_SCRIPT_PATH = [str(Path(APPSHELL).parent)] + [
    p for p in sys.path if p not in ("", str(ROOT), str(ROOT / "tests"), os.getcwd())
]


class InProcessTimeout(Exception):
    """An in-process run took longer than its timeout."""


def _timed_out(signum: int, frame: object) -> None:
    raise InProcessTimeout("the in-process run did not end in time")


def run_in_process(
    args: Sequence[str], cwd: Path, environ: Mapping[str, str], input: str | None = None, timeout: float = 120
) -> Result:
    """appshell's `main(args)` in this process, as the console script would run it: environment,
    working directory, argv, stdin/stdout/stderr, sys.path set, everything put back after."""
    from appshell.cli.main import main

    out, err = _Stream(), _Stream()
    extra = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in _SCRIPT_PATH]
    # A test's own PYTHONPATH, as the interpreter reads it.
    with _as_a_process(environ, cwd, [APPSHELL, *args], [_SCRIPT_PATH[0], *extra, *_SCRIPT_PATH[1:]]):
        sys.stdin, sys.stdout, sys.stderr = _Stream((input or "").encode()), out, err
        signal.signal(signal.SIGALRM, _timed_out)  # as subprocess.run(timeout=...) would: a hung run fails the test
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's --help and --version; what Python does with the rest
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            if not isinstance(exc.code, (int, type(None))):
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for stream in (out, err):
                stream.flush()
            _forget_sqlmodel_tables()
    _retire_session_listeners()
    return Result(code, out.text(), err.text())


def run_module(module: str, cwd: Path, env: Mapping[str, str] | None = None, *, process: bool | None = None) -> None:
    """`python -m MODULE` for a test app's own script (a seed), which must succeed: in this process
    in modules marked in_process (inside process_state, as run() does), else a subprocess. A
    fixture wider than a test (a template seeded once) says which with *process*: the in_process
    mark is read per test, after such a fixture is made."""
    environ = clean_environ(env)
    in_process = _in_process_test if process is None else not process
    if ALL_SUBPROCESS or not in_process:
        subprocess.run([sys.executable, "-m", module], cwd=cwd, env=environ, check=True, capture_output=True)
        return
    import runpy

    with _as_a_process(
        environ, cwd, [module], [str(cwd), *_SCRIPT_PATH[1:]]
    ):  # `python -m` puts the working directory first
        runpy.run_module(module, run_name="__main__", alter_sys=True)


@contextmanager
def _as_a_process(environ: Mapping[str, str], cwd: Path, argv: list[str], path: list[str]) -> Iterator[None]:
    """This process set up as a new one would start with *environ*, *cwd*, *argv* and *path*
    (sys.path), and everything put back after (process_state)."""
    from support.process_state import process_state

    with _before_the_run_unseen(), process_state():
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
        sys.argv = argv
        sys.path[:] = path
        sys.dont_write_bytecode = True  # PYTHONDONTWRITEBYTECODE=1, as clean_environ gives a subprocess
        yield


@contextmanager
def _before_the_run_unseen() -> Iterator[None]:
    """What is alive before a run — the fixtures' and the test's own engines, earlier runs' not yet
    collected, the whole test process — would not exist in the console script's process: frozen
    (gc.freeze), it is out of appshell's sight, whose sandbox, read-only and audit cover every engine
    alive in the process (docs/design.md §5): its one pass over the heap for them sees only the
    run's own objects, as in the console script. (Over the whole test process's heap that pass
    was most of an in-process run's time.) Frozen objects are not collected either: no earlier
    run's pool is finalised in the middle of this one."""
    import gc

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _retire_session_listeners() -> None:
    """The ended session's listeners on SQLAlchemy's classes: a process runs one session, so in the
    console script they die with it; here they would pile up, quiet but called on every statement
    of every later test (thousands by the end of the suite)."""
    engines = sys.modules.get("appshell.safety.engines")
    if engines is not None:
        engines.retire_ended()


def _forget_sqlmodel_tables() -> None:
    """SQLModel keeps every app's tables in one process-wide MetaData and registry (a library's
    global, not appshell's): the next app that defines `hero` must not find the last one's."""
    sqlmodel = sys.modules.get("sqlmodel")
    if sqlmodel is None:
        return
    base = sqlmodel.SQLModel
    for table in list(base.metadata.tables.values()):
        base.metadata.remove(table)
    base._sa_registry.dispose()
