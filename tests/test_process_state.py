"""process_state(): what a session changes process-wide is put back (the in-process test harness relies on it)."""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from support.process_state import process_state


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _import_app(tmp: Path) -> None:
    (tmp / "probeapp").mkdir()
    (tmp / "probeapp" / "__init__.py").write_text("VALUE = 1\n")
    sys.path.insert(0, str(tmp))
    import probeapp  # type: ignore[import-not-found]  # noqa: F401


def _set_loop(tmp: Path) -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())
    asyncio.run = print  # type: ignore[assignment]


def _sqlalchemy_echo(tmp: Path) -> None:
    logger = logging.getLogger("sqlalchemy.engine.Engine")
    logger.addHandler(logging.StreamHandler(sys.stderr))
    logger.setLevel(logging.INFO)


def _session_globals(tmp: Path) -> None:
    from appshell.process import PROCESS

    PROCESS.standalone = True
    PROCESS.journal = PROCESS.coverage = PROCESS.protection = object()
    PROCESS.launch_environ = {"APPSHELL_PROBE": "1"}
    PROCESS.loop.greenlets = True


def _appshell_state() -> object:
    from appshell.process import PROCESS

    return (
        PROCESS.standalone,
        PROCESS.journal,
        PROCESS.coverage,
        PROCESS.protection,
        PROCESS.launch_environ,
        PROCESS.loop.greenlets,
    )


def _streams(tmp: Path) -> None:
    sys.stdin = sys.stdout = sys.stderr = open(os.devnull, "w+")


def _loop_state() -> object:
    return asyncio.get_event_loop_policy()._local._loop, asyncio.run


# (what, read the state, change it the way a session does)
CASES: list[tuple[str, Callable[[], object], Callable[[Path], object]]] = [
    (
        "environ",
        lambda: dict(os.environ),
        lambda tmp: (os.environ.update(APPSHELL_PROBE="1"), os.environ.pop("HOME", None)),
    ),
    ("cwd", os.getcwd, os.chdir),
    ("sys.path", lambda: list(sys.path), lambda tmp: sys.path.insert(0, str(tmp))),
    ("sys.argv", lambda: list(sys.argv), lambda tmp: setattr(sys, "argv", ["script.py", "x"])),
    (
        "signals",
        lambda: (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)),
        lambda tmp: (signal.signal(signal.SIGTERM, lambda *a: None), signal.signal(signal.SIGHUP, signal.SIG_IGN)),
    ),
    (
        "prompts and hooks",
        lambda: (getattr(sys, "ps1", None), getattr(sys, "ps2", None), sys.displayhook, sys.excepthook),
        lambda tmp: (
            setattr(sys, "ps1", "[x] >>> "),
            setattr(sys, "ps2", "... "),
            setattr(sys, "displayhook", print),
            setattr(sys, "excepthook", print),
        ),
    ),
    ("streams", lambda: (sys.stdin, sys.stdout, sys.stderr), _streams),
    (
        "builtins",
        lambda: dict(vars(builtins)),
        lambda tmp: (setattr(builtins, "appshell_probe", 1), setattr(builtins, "exit", None)),
    ),
    ("the app's modules", lambda: ("probeapp" in sys.modules, list(sys.path)), _import_app),
    ("event loop and asyncio.run", _loop_state, _set_loop),
    (
        "logging handlers",
        lambda: (
            list(logging.getLogger("sqlalchemy.engine.Engine").handlers),
            logging.getLogger("sqlalchemy.engine.Engine").level,
        ),
        _sqlalchemy_echo,
    ),
    ("warning filters", lambda: list(warnings.filters), lambda tmp: warnings.simplefilter("error")),
    ("appshell's own state (PROCESS)", _appshell_state, _session_globals),
    (
        "recursion limit and umask",
        lambda: (sys.getrecursionlimit(), _umask()),
        lambda tmp: (sys.setrecursionlimit(sys.getrecursionlimit() + 500), os.umask(0o077)),
    ),
]


@pytest.mark.parametrize(("what", "read", "change"), CASES, ids=[c[0] for c in CASES])
def test_what_a_session_changes_is_put_back(
    what: str, read: Callable[[], object], change: Callable[[Path], object], tmp_path: Path
) -> None:
    before = read()
    with process_state():
        change(tmp_path)
        changed = read()
    assert changed != before, f"the probe did not change {what}"
    assert read() == before


def test_modules_of_installed_packages_stay_imported(tmp_path: Path) -> None:
    """Importing a library again would duplicate its classes and hooks: only the app's modules go."""
    sys.modules.pop("colorsys", None)
    with process_state():
        import colorsys  # noqa: F401 - the standard library's: stays

        _import_app(tmp_path)
    assert "colorsys" in sys.modules
    assert "probeapp" not in sys.modules


# The listeners on every Engine's before_cursor_execute, as one program line (it runs inside a session too).
LISTENERS = "sum(len(fns) for fns in __import__('sqlalchemy').Engine.dispatch.before_cursor_execute._clslevel.values())"


def test_an_in_process_run_leaves_no_listener_of_its_session(shop: Path) -> None:
    """A session's class-level listeners end with it in the harness (engines.retire_ended), where
    one process runs many sessions; they were there while it ran."""
    from support.environment import clean_environ
    from support.harness import run_in_process

    before = eval(LISTENERS)
    during = run_in_process(["-c", f"print({LISTENERS})"], shop, clean_environ())
    assert during.exit_code == 0, during.output
    assert int(during.stdout) > before
    assert eval(LISTENERS) == before


def test_a_sessions_teardown_runs_every_step_in_order_whatever_fails() -> None:
    """PROCESS.session(): the steps pushed run last-pushed first, each whatever the ones before raised,
    and the last error is the one raised (docs/design.md §2)."""
    from appshell.process import Process

    process, ran = Process(), []

    def fails(name: str) -> Callable[[], None]:
        def step() -> None:
            ran.append(name)
            raise RuntimeError(name)

        return step

    with pytest.raises(RuntimeError, match="close_app"):
        with process.session() as ends:
            ends.callback(ran.append, "end_audit")
            ends.callback(fails("close_app"))
            ends.callback(fails("finish"))
    assert ran == ["finish", "close_app", "end_audit"]
    assert process.ends is None
    with process.session():
        with pytest.raises(RuntimeError, match="already running"):
            with process.session():
                pass


def test_reset_leaves_no_session_but_never_turns_the_listeners_back() -> None:
    """reset(): a session that did not reach its teardown has it run, its loop closed and asyncio.run given
    back; the listener generation stays (earlier sessions' listeners must stay quiet) and the main thread is quiet."""
    from appshell.process import Process

    process, ran = Process(), []
    real_run = asyncio.run
    running = process.session()  # entered and never left: a session that did not reach its teardown
    ends = running.__enter__()
    ends.callback(ran.append, "teardown")
    loop = asyncio.new_event_loop()
    process.loop.loop, process.loop.asyncio_run, process.loop.greenlets = loop, real_run, True
    asyncio.run = print  # type: ignore[assignment]
    process.listeners.take_over()
    process.standalone, process.journal = True, object()
    process.reset()
    assert ran == ["teardown"] and process.ends is None
    assert loop.is_closed() and asyncio.run is real_run and not process.loop.greenlets
    assert process.listeners.generation == 1 and process.listeners.over_in == os.getpid()
    assert (process.standalone, process.journal) == (False, None)
