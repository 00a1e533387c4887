"""The CI rule: what a developer's machine may skip (a server, a browser, ssh), CI must run."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["IN_CI", "unavailable"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str, required: str) -> NoReturn:
    """Skip the test with *message*; under CI, which must run every test, fail it ("CI requires *required*")."""
    if IN_CI:
        pytest.fail(f"CI requires {required}: {message}")
    pytest.skip(message)
