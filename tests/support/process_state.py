"""Everything process-wide that a session changes, saved and put back: one context manager.

An ``appshell`` process changes what belongs to the whole interpreter: the
environment (``export_environment``), the working directory, ``sys.path`` and
``sys.modules`` (the app is imported), ``sys.argv`` (a script's arguments),
signal handlers (SIGTERM/SIGHUP become ``SystemExit``), ``sys.ps1``, the
display and except hooks, asyncio's event loop, logging handlers (SQLAlchemy's
``echo``) and appshell's own module globals. The console script ends right
after, so none of it matters there. :func:`process_state` makes several
sessions in one process possible, as click's ``CliRunner.isolation()`` does:
the in-process test harness (tests/support/harness.py) runs ``cli.main`` inside it.
appshell's own process-wide state has one owner, ``appshell.process.PROCESS``,
whose ``reset()`` puts it back: this module is the tests' (it is not in the wheel).

What cannot be put back is left inert instead: audit hooks cannot be removed
(appshell's go quiet when no session is active), SQLAlchemy's class-level
listeners belong to a generation that ends with its session
(docs/design.md §5), ``atexit`` handlers and threads the operator started
stay (tests that need those run in a real process: docs/design.md §9).

Standard library only, and nothing imported that the process has not
imported already: entering and leaving costs well under a millisecond.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from appshell.hooks.frames import library_dirs
from appshell.process import PROCESS

__all__ = ["process_state"]

_SYS_ATTRS = (
    "argv",
    "stdin",
    "stdout",
    "stderr",
    "displayhook",
    "excepthook",
    "breakpointhook",
    "unraisablehook",
    "ps1",
    "ps2",
    "last_type",
    "last_value",
    "last_traceback",
    "last_exc",
    "dont_write_bytecode",
)
_MISSING = object()


def _is_library(module: Any) -> bool:
    """A module of the standard library, an installed package or appshell: kept once imported
    (importing it again would duplicate its classes and hooks). Anything else — the app, the
    operator's modules — is dropped, so the next session imports its own copy."""
    file = getattr(module, "__file__", None)
    places = [file] if file else list(getattr(module, "__path__", None) or ())
    if not places:
        return (
            getattr(module, "__name__", None) in sys.builtin_module_names
            or getattr(module, "__spec__", None) is not None
            and getattr(module.__spec__, "origin", None) in ("built-in", "frozen")
        )
    try:
        return all(os.path.realpath(p).startswith(library_dirs()) for p in places)
    except (TypeError, ValueError):
        return False


class _Saved:
    """What :func:`process_state` puts back; each part is cheap to take."""

    def __init__(self) -> None:
        self.environ = dict(os.environ)
        try:
            self.cwd: str | None = os.getcwd()
        except OSError:
            self.cwd = None
        self.umask = os.umask(0o022)
        os.umask(self.umask)
        self.sys = {name: getattr(sys, name, _MISSING) for name in _SYS_ATTRS}
        self.path = list(sys.path)
        self.meta_path = list(sys.meta_path)
        self.path_hooks = list(sys.path_hooks)
        self.importer_cache = dict(sys.path_importer_cache)
        self.modules = dict(sys.modules)
        self.recursion = sys.getrecursionlimit()
        self.trace = (sys.gettrace(), sys.getprofile())
        import builtins

        self.builtins = dict(vars(builtins))
        self.signals = self._signals()
        self.asyncio = self._asyncio()
        self.logging = self._logging()
        self.warnings = self._warnings()
        linecache = sys.modules.get("linecache")
        self.linecache = dict(linecache.cache) if linecache is not None else None  # type: ignore[attr-defined]
        readline = sys.modules.get("readline")
        self.readline = (readline.get_completer(), readline.get_completer_delims()) if readline is not None else None  # type: ignore[attr-defined]

    @staticmethod
    def _signals() -> dict[int, Any]:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}  # signal handlers can only be set from the main thread
        saved: dict[int, Any] = {}
        for sig in signal.valid_signals():
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            try:
                handler = signal.getsignal(sig)
            except (OSError, ValueError):
                continue
            if handler is not None:  # None: set outside Python, which cannot be put back from here
                saved[sig] = handler
        return saved

    @staticmethod
    def _asyncio() -> tuple[Any, Any, Any] | None:
        asyncio: Any = sys.modules.get("asyncio")
        if asyncio is None:
            return None
        policy = asyncio.events._event_loop_policy
        local = getattr(policy, "_local", None)
        return asyncio.run, policy, getattr(local, "_loop", None)

    @staticmethod
    def _logging() -> dict[str, tuple[Any, ...]] | None:
        logging: Any = sys.modules.get("logging")
        if logging is None:
            return None
        loggers = {
            "": logging.root,
            **{n: lg for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)},
        }
        state: dict[str, tuple[Any, ...]] = {
            name: (lg.level, list(lg.handlers), lg.propagate, lg.disabled) for name, lg in loggers.items()
        }
        state[" disable"] = (logging.root.manager.disable,)
        return state

    @staticmethod
    def _warnings() -> tuple[list[Any], Any] | None:
        warnings: Any = sys.modules.get("warnings")
        if warnings is None:
            return None
        return list(warnings.filters), warnings.showwarning

    def restore(self) -> None:
        # First what a late callback might write to (streams), then the rest; every part on its own,
        # so one that fails cannot leave the others changed.
        for part in (
            self._sys,
            self._appshell,
            self._asyncio_back,
            self._modules,
            self._environ,
            self._cwd,
            self._signals_back,
            self._logging_back,
            self._warnings_back,
            self._small,
        ):
            part()

    def _sys(self) -> None:
        for name, value in self.sys.items():
            if value is _MISSING:
                if hasattr(sys, name):
                    delattr(sys, name)
            elif getattr(sys, name, _MISSING) is not value:
                setattr(sys, name, value)
        sys.path[:] = self.path
        sys.meta_path[:] = self.meta_path
        sys.path_hooks[:] = self.path_hooks
        sys.path_importer_cache.clear()
        sys.path_importer_cache.update(self.importer_cache)
        sys.setrecursionlimit(self.recursion)
        sys.settrace(self.trace[0])
        sys.setprofile(self.trace[1])
        import builtins

        now = vars(builtins)
        for name in [n for n in now if n not in self.builtins]:
            del now[name]
        for name, value in self.builtins.items():
            if now.get(name, _MISSING) is not value:
                now[name] = value

    def _appshell(self) -> None:
        PROCESS.reset()  # a session that did not reach its teardown: its loop closed, asyncio.run given back

    def _asyncio_back(self) -> None:
        asyncio: Any = sys.modules.get("asyncio")
        if asyncio is None:
            return
        if self.asyncio is None:
            run, policy, loop = asyncio.runners.run, None, None
        else:
            run, policy, loop = self.asyncio
        asyncio.run = run
        current_policy = asyncio.events._event_loop_policy
        local = getattr(current_policy, "_local", None)
        current = getattr(local, "_loop", None)
        if current is not None and current is not loop and not current.is_running() and not current.is_closed():
            current.close()  # a loop the session left set: closed, as the process's end would
        asyncio.events._event_loop_policy = policy
        if policy is not None and getattr(policy, "_local", None) is not None:
            policy._local._loop = loop
        elif current_policy is not None and local is not None:
            local._loop = None

    def _modules(self) -> None:
        now = sys.modules
        for name in [n for n in now if n not in self.modules]:
            if not _is_library(now[name]):
                del now[name]
        for name, module in self.modules.items():
            if now.get(name) is not module:
                now[name] = module

    def _environ(self) -> None:
        for key in [k for k in os.environ if k not in self.environ]:
            del os.environ[key]
        for key, value in self.environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        time: Any = sys.modules.get("time")
        if time is not None and hasattr(time, "tzset"):
            time.tzset()

    def _cwd(self) -> None:
        if self.cwd is not None:
            os.chdir(self.cwd)
        os.umask(self.umask)

    def _signals_back(self) -> None:
        import signal

        for sig, handler in self.signals.items():
            if signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)

    def _logging_back(self) -> None:
        logging: Any = sys.modules.get("logging")
        if logging is None:
            return
        saved = self.logging or {}
        manager = logging.root.manager
        loggers = {
            "": logging.root,
            **{n: lg for n, lg in manager.loggerDict.items() if isinstance(lg, logging.Logger)},
        }
        streams = {id(s) for s in (*self.sys.values(), sys.__stdout__, sys.__stderr__)}
        for name, logger in loggers.items():
            if name not in saved:
                # A logger made during the session (a library imported then, the app's own): its
                # handlers that wrote to the session's streams go; its level and NullHandlers stay.
                logger.handlers[:] = [
                    h
                    for h in logger.handlers
                    if not isinstance(h, logging.StreamHandler) or id(getattr(h, "stream", None)) in streams
                ]
                continue
            level, handlers, propagate, disabled = saved[name]
            if logger.handlers != handlers:
                logger.handlers[:] = handlers
            if logger.level != level:
                logger.setLevel(level)  # also clears the loggers' level caches
            logger.propagate, logger.disabled = propagate, disabled
        manager.disable = saved.get(" disable", (0,))[0]

    def _warnings_back(self) -> None:
        warnings: Any = sys.modules.get("warnings")
        if warnings is None:
            return
        filters, showwarning = self.warnings or (None, None)
        if filters is not None:
            warnings.filters[:] = filters
            warnings.showwarning = showwarning
            mutated = getattr(warnings, "_filters_mutated", None) or getattr(
                warnings, "_filters_mutated_lock_held", None
            )
            if mutated is not None:
                mutated()  # the filters' version: cached "already warned" decisions are made again

    def _small(self) -> None:
        linecache: Any = sys.modules.get("linecache")
        if linecache is not None:
            linecache.cache.clear()
            linecache.cache.update(self.linecache or {})
        readline: Any = sys.modules.get("readline")
        if readline is not None and self.readline is not None:
            readline.set_completer(self.readline[0])
            readline.set_completer_delims(self.readline[1])


@contextmanager
def process_state() -> Iterator[None]:
    """Save the process-wide state a session changes; put all of it back on the way out."""
    saved = _Saved()
    try:
        yield
    finally:
        saved.restore()
