"""The app's own code raised while booting: told apart from "not found", shown without appshell's frames."""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from appshell.errors import AppCrashed, AppNotFound

__all__ = ["AppCrashed", "import_user_module", "format_crash"]


def import_user_module(name: str, option: str) -> ModuleType:
    """Import *name*; "not found" is a one-line error, a crash inside it is not."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Only the named module (or one of its parents) missing counts as "not
        # found"; a missing import *inside* the app is the app's own bug.
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise AppNotFound(
                f"cannot import {option} module '{name}' (no module named '{exc.name}')",
                f"check {option} and that the project root or its package is on the path",
            ) from None
        raise AppCrashed(f"importing '{name}' failed", exc) from exc
    except Exception as exc:  # the app's own code raised while importing
        raise AppCrashed(f"importing '{name}' failed", exc) from exc


def call_app_code(func: Callable[[], Any], what: str) -> Any:
    try:
        return func()
    except Exception as exc:
        raise AppCrashed(what, exc) from exc


def format_crash(crash: AppCrashed) -> str:
    """The traceback of the app's own exception, without appshell's frames."""
    exc = crash.exc
    tb = exc.__traceback__
    # Drop the leading frames of appshell and importlib: the story starts in the app.
    ours = str(Path(__file__).resolve().parents[1])  # the appshell package
    while tb is not None and (
        tb.tb_frame.f_code.co_filename.startswith(ours) or "importlib" in tb.tb_frame.f_code.co_filename
    ):
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    out = "".join(lines) + f"appshell: error: {crash.what} (the traceback above is from the app's own code)\n"
    if "greenlet library is required" in str(exc):  # SQLAlchemy 2.1 no longer installs greenlet for asyncio
        out += "appshell: hint: the app's async engine needs greenlet: pip install 'appshell[async]'\n"
    if "requires an async driver" in str(exc):  # create_async_engine() given a sync URL (e.g. by --database-url)
        out += (
            "appshell: hint: the app makes an async engine: give DATABASE_URL/--database-url an async driver, "
            "such as postgresql+asyncpg://, sqlite+aiosqlite:// or mysql+aiomysql:// (pip install 'appshell[async]')\n"
        )
    return out
