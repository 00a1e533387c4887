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

from appshell.runtime.process_state import process_state


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
    from appshell.record import nested
    from appshell.runtime import session

    session.STANDALONE = True
    nested._active = object()  # type: ignore[assignment]


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
    (
        "appshell's globals",
        lambda: (sys.modules["appshell.runtime.session"].STANDALONE, sys.modules["appshell.record.nested"]._active),
        _session_globals,
    ),
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
    import appshell.record.nested
    import appshell.runtime.session  # noqa: F401

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
