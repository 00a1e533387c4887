"""How many processes each test starts, for the terminal summary's share of tests that start none."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

__all__ = ["install", "record", "started", "summary"]

_installed = False
_started = 0
_by_test: dict[str, int] = {}


def _counting(fn: Callable[..., object]) -> Callable[..., object]:
    def counted(*args: object, **kwargs: object) -> object:
        global _started
        _started += 1
        return fn(*args, **kwargs)

    return counted


def install() -> None:
    """Count from now on: every process a test starts passes through subprocess.Popen, os.fork or os.forkpty
    (pexpect)."""
    global _installed
    if _installed:
        return
    _installed = True
    subprocess.Popen._execute_child = _counting(subprocess.Popen._execute_child)  # type: ignore[attr-defined]
    os.fork = _counting(os.fork)  # type: ignore[assignment]
    os.forkpty = _counting(os.forkpty)  # type: ignore[assignment]


def started() -> int:
    """How many processes this test process has started so far."""
    return _started


def record(test: str, count: int) -> None:
    """*test* (a node id) started *count* processes."""
    _by_test[test] = count


def summary() -> str | None:
    """The terminal summary's line, once any test was recorded."""
    if not _by_test:
        return None
    alone = sum(1 for n in _by_test.values() if n == 0)
    share = 100 * alone // len(_by_test)
    return f"in-process: {alone} of {len(_by_test)} test cases started no process ({share}%)"
