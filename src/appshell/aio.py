"""One event loop per appshell session: top-level ``await`` in every shell and mode runs on it.

Code is compiled with ``PyCF_ALLOW_TOP_LEVEL_AWAIT`` (as ``python -m asyncio``
does); a code object that awaits is a coroutine function's body, and
:func:`execute` runs it to the end on the session's loop. The loop is made
on first use — ``asyncio`` costs start-up time that a program without
``await`` never pays — and closed when the session ends.
"""

from __future__ import annotations

import ast
from collections.abc import Awaitable
from types import CodeType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = ["FLAGS", "awaits", "execute", "run", "close"]

FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect
T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None


def awaits(code: CodeType) -> bool:
    """Whether *code* (compiled with :data:`FLAGS`) awaits at top level."""
    return bool(code.co_flags & _CO_COROUTINE)


def run(awaitable: Awaitable[T]) -> T:
    """Run *awaitable* to the end on the session's event loop."""
    global _loop
    import asyncio

    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
    return _loop.run_until_complete(awaitable)


def execute(code: CodeType, globals: dict[str, Any], locals: dict[str, Any] | None = None) -> Any:
    """``eval`` of *code*; one that awaits at top level runs on the session's loop."""
    result = eval(code, globals, globals if locals is None else locals)
    return run(result) if awaits(code) else result


def close() -> None:
    """The session is over: finish async generators and close the loop."""
    global _loop
    if _loop is None or _loop.is_closed():
        return
    try:
        _loop.run_until_complete(_loop.shutdown_asyncgens())
    finally:
        _loop.close()
        _loop = None
