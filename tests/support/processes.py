"""Real processes besides the harness's: appshell caught mid-statement, the example shop's web server, a free port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from support.environment import clean_environ
from support.paths import APPSHELL

__all__ = ["free_port", "shop_web", "started"]


def started(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The real `appshell ARGS` running, once its program has printed `go` (a line of its own): a
    signal sent now lands mid-statement. stdout and stderr are pipes; the caller ends the process."""
    proc = subprocess.Popen(
        [APPSHELL, *args],
        cwd=cwd,
        env=clean_environ(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"go":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"appshell did not start its statement: {(line + err).decode(errors='replace')}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def shop_web(shop: Path, env: Mapping[str, str] | None = None) -> Iterator[int]:
    """The example shop's web process on a free port, ready to answer; yields the port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shop.web"],
        cwd=shop,
        env=clean_environ({**(env or {}), "PORT": str(port)}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"the shop's web process exited ({proc.returncode}) before answering /health")
                time.sleep(0.1)
        else:
            pytest.fail(f"the shop's web process did not answer /health on port {port} within 10 s")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
