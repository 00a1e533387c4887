"""One event loop per appshell session: top-level ``await`` in every shell and mode runs on it.

Code is compiled with ``PyCF_ALLOW_TOP_LEVEL_AWAIT`` (as ``python -m asyncio``
does); a code object that awaits is a coroutine function's body, and
:func:`execute` runs it to the end on the session's loop. The loop is made
on first use — ``asyncio`` costs start-up time that a program without
``await`` never pays — and closed when the session ends.

An async app (an ``AsyncEngine``, docs/design.md §8) turns on *greenlet mode*:
every statement then runs inside SQLAlchemy's greenlet on that loop, so the
helpers, lazy loads and ``session.sync_session`` do the async driver's IO
without ``await``, and an awaiting statement may call them too — its coroutine
is driven from inside the greenlet (:func:`_drive`), each future it waits on
handed to the loop. ``asyncio.run()`` runs on the session's loop (with a
hint): a second loop would strand the app's pooled connections.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Awaitable, Callable, Generator
from types import CodeType
from typing import TYPE_CHECKING, Any, TypeVar

from appshell.errors import LoopMisuse
from appshell.process import PROCESS

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "FLAGS",
    "await_",
    "awaits",
    "execute",
    "run",
    "sync_io",
    "use_greenlets",
    "greenlets",
    "finish",
    "keep",
    "close",
    "LoopMisuse",
]

FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect
T = TypeVar("T")

_state = PROCESS.loop  # never rebound: reset() and close() clear it in place

FINISH_TIMEOUT = 5.0  # seconds the operator's tasks and executor threads get to end at the session's end


def awaits(code: CodeType) -> bool:
    """Whether *code* (compiled with :data:`FLAGS`) awaits at top level."""
    return bool(code.co_flags & _CO_COROUTINE)


def greenlets() -> bool:
    """Whether the session's app is async (statements run inside SQLAlchemy's greenlet)."""
    return _state.greenlets


def use_greenlets() -> None:
    """The app is async: from now on statements and helpers run inside SQLAlchemy's greenlet."""
    _state.greenlets = True
    _install_run()


def await_(awaitable: Awaitable[T]) -> T:
    """SQLAlchemy's own wait on an awaitable from inside its greenlet: ``await_`` from 2.1, ``await_only`` in 2.0
    (2.1 keeps the old name as a deprecated alias, 2.2 drops it — so the new name first)."""
    from sqlalchemy.util import concurrency

    wait = getattr(concurrency, "await_", None) or concurrency.await_only
    return wait(awaitable)  # type: ignore[no-any-return]


def _get_loop(what: str = "this") -> asyncio.AbstractEventLoop:
    import asyncio
    import threading

    if _state.loop is None or _state.loop.is_closed():
        _state.loop = asyncio.new_event_loop()
        _state.owner = threading.get_ident()
        asyncio.set_event_loop(_state.loop)
        _install_run()
    elif threading.get_ident() != _state.owner:
        raise LoopMisuse(
            f"{what}() cannot run in another thread: the session's event loop (and the app's connections on it) "
            "belong to the thread of the statements — call it from a statement"
        )
    return _state.loop  # type: ignore[no-any-return]


def run(awaitable: Awaitable[T]) -> T:
    """Run *awaitable* to the end on the session's event loop (inside the greenlet, for an async app)."""
    loop = _get_loop("await")
    if not _state.greenlets:
        return _complete(loop, awaitable)
    from sqlalchemy.util.concurrency import greenlet_spawn, in_greenlet

    if in_greenlet():  # a helper's sync code reached an awaitable: the loop is already ours
        return await_(awaitable)
    return _complete(loop, greenlet_spawn(_drive, awaitable))


def sync_io(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call *fn*, whose SQLAlchemy calls may do an async driver's IO, where that IO can run."""
    if not _state.greenlets:
        return fn(*args, **kwargs)
    from sqlalchemy.util.concurrency import greenlet_spawn, in_greenlet

    if in_greenlet():
        return fn(*args, **kwargs)
    name = getattr(fn, "__name__", "this").lstrip("_")
    loop = _get_loop(name)
    if loop.is_running():
        raise LoopMisuse(
            f"{name}() cannot run inside a task on the event loop: call it from the statement itself, "
            "or await the app's async functions in the task"
        )
    return _complete(loop, greenlet_spawn(fn, *args, **kwargs))


def execute(code: CodeType, globals: dict[str, Any], locals: dict[str, Any] | None = None) -> Any:
    """``eval`` of *code*; one that awaits at top level runs on the session's loop."""
    scope = globals if locals is None else locals
    if _state.greenlets:
        if awaits(code):
            return run(eval(code, globals, scope))
        return sync_io(_eval, code, globals, scope)
    result = eval(code, globals, scope)
    return run(result) if awaits(code) else result


def _complete(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[T]) -> T:
    """Run *awaitable* to its end; Ctrl-C cancels it and waits for it to unwind (as asyncio.Runner
    does), so a query in flight is cancelled and its connection is free for the next statement."""
    import asyncio

    task = asyncio.ensure_future(awaitable, loop=loop)
    try:
        return loop.run_until_complete(task)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, and SIGTERM/SIGHUP (SystemExit from the CLI's handler)
        if not task.done():
            task.cancel()
            try:
                loop.run_until_complete(task)
            except (asyncio.CancelledError, Exception):
                pass
        raise


def _eval(code: CodeType, globals: dict[str, Any], scope: dict[str, Any]) -> Any:
    return eval(code, globals, scope)


class _Step:
    """One thing a driven coroutine waits on (a future, or None for a bare yield), awaited again by the loop's task."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.item)


def _drive(awaitable: Awaitable[T]) -> T:
    """Run a coroutine from inside the greenlet: its code (and the sync helpers it calls) runs
    here, where SQLAlchemy's ``await_`` works; what it waits on is awaited by the loop's task."""
    steps = awaitable.__await__()
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            item = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            value, error = await_(_Step(item)), None
        except BaseException as exc:  # cancelled, interrupted: the coroutine decides what happens
            value, error = None, exc


def _install_run() -> None:
    """``asyncio.run()`` in the operator's code runs on the session's loop, with a one-line hint."""
    asyncio: Any = sys.modules.get("asyncio")
    if asyncio is None or _state.asyncio_run is not None:
        return
    original = _state.asyncio_run = asyncio.run

    def run_on_session_loop(main: Awaitable[T], *, debug: bool | None = None, **kwargs: Any) -> T:
        import threading

        from appshell.hooks.frames import is_library_file

        library = is_library_file(sys._getframe(1).f_code.co_filename)
        loop = _state.loop
        if threading.get_ident() != (_state.owner or threading.main_thread().ident) or (
            library and not (loop is not None and loop.is_running())
        ):
            # prompt_toolkit runs each prompt so (between statements); a thread has its own loops
            return original(main, debug=debug, **kwargs)  # type: ignore[no-any-return]
        if not _state.greenlets and loop is not None and loop.is_running():
            return original(main, debug=debug, **kwargs)  # asyncio's own error: a loop is running
        if not _state.hinted:  # said only where it is true: the coroutine runs on the session's loop
            _state.hinted = True
            print(
                "appshell: hint: write `await …` instead of asyncio.run(…): "
                "it ran on the session's event loop, where the app's connections live",
                file=sys.stderr,
            )
        return run(main)

    run_on_session_loop.__doc__ = original.__doc__
    asyncio.run = run_on_session_loop


def finish() -> None:
    """What ``asyncio.Runner.close`` does, done while the session still records and guards (before
    teardown): the operator's tasks cancelled and awaited, async generators finalised, the default
    executor's threads joined. A task that will not end has its coroutine closed: after this, the
    loop runs only appshell's teardown (the app's engine disposed), never the operator's code."""
    import threading

    if _state.loop is None or _state.loop.is_closed() or threading.get_ident() != _state.owner:
        return
    run(_wind_down())


async def _wind_down() -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks(loop) if t is not me]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=FINISH_TIMEOUT)
    await _close_asyncgens(loop)
    try:
        await asyncio.wait_for(loop.shutdown_default_executor(), FINISH_TIMEOUT)
    except TimeoutError:
        pass  # a thread still busy: it cannot reach the loop any more (sync_io refuses other threads)
    for task in asyncio.all_tasks(loop):
        if task is not me and not task.done():
            task.get_coro().close()  # ignored its cancellation: its finally blocks run now, under the guards


def keep(agen: Any) -> None:
    """*agen* is the app's (a provider's async generator): :func:`finish` leaves it to the app's teardown."""
    _state.kept.append(agen)


async def _close_asyncgens(loop: asyncio.AbstractEventLoop) -> None:
    """``loop.shutdown_asyncgens()`` for every async generator but the app's providers'."""
    import asyncio

    tracked = getattr(loop, "_asyncgens", None)  # asyncio's own loops track them here; another loop closes all
    if tracked is None or not _state.kept:
        await loop.shutdown_asyncgens()
        return
    closing = [agen for agen in list(tracked) if not any(agen is k for k in _state.kept)]
    for agen in closing:
        tracked.discard(agen)
    await asyncio.gather(*(agen.aclose() for agen in closing), return_exceptions=True)


def close() -> None:
    """The session is over: close the loop (nothing of the operator's runs on it now), give asyncio.run back."""
    _state.close()
