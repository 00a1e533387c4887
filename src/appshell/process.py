"""What an appshell session changes in the whole interpreter, kept by one owner: :data:`PROCESS`.

An interpreter has one event loop policy, one ``asyncio.run``, one set of
SQLAlchemy class-level listeners and audit hooks that can never be removed
(PEP 578). A session changes each of them; the modules that do so keep that
state here, on :data:`PROCESS`, rather than in module globals, so that:

- the import graph shows who touches process-wide state (every such module
  imports this one; tests/test_layers.py sees it);
- one :meth:`Process.session` gives a session one ordered teardown (an
  ``ExitStack``: each step runs whatever the steps before it raised);
- one :meth:`Process.reset` puts the process back to "no session", which the
  in-process test harness (tests/support/process_state.py) relies on between
  runs, as click's ``CliRunner`` does.

docs/design.md §5 lists each process-wide patch and why it exists. Standard
library only: the base layer, imported by every layer above.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PROCESS", "Process", "SessionLoop", "Listeners"]


@dataclass
class SessionLoop:
    """The session's event loop (appshell.hooks.aio): made on first use, closed at the session's end."""

    loop: Any = None  # asyncio.AbstractEventLoop, typed loosely: asyncio is not imported at start-up
    owner: int = 0  # the thread that made the loop: only it may run the loop
    greenlets: bool = False  # the app is async: statements run inside SQLAlchemy's greenlet
    kept: list[Any] = field(default_factory=list)  # the app's provider generators: closed by the app's teardown
    asyncio_run: Any = None  # asyncio.run as it was before the session put its own in its place
    hinted: bool = False  # the asyncio.run hint was shown (once per session)

    def close(self) -> None:
        """Close the loop (nothing of the operator's runs on it now) and give ``asyncio.run`` back."""
        if self.asyncio_run is not None:
            setattr(sys.modules["asyncio"], "run", self.asyncio_run)
        loop, self.loop = self.loop, None
        self.owner, self.greenlets, self.asyncio_run, self.hinted = 0, False, None, False
        self.kept.clear()
        if loop is None or loop.is_closed():
            return
        try:
            loop.close()
        except RuntimeError:  # a loop another thread still runs (the operator's): it is left to the process's end
            pass


@dataclass
class Listeners:
    """SQLAlchemy's class-level listeners (appshell.safety.engines), by generation.

    They cannot be removed one session at a time without races against threads still running SQL:
    a new session's generation makes the earlier ones' listeners quiet. Never turned back."""

    generation: int = 0
    registered: list[tuple[int, Any, str, Callable[..., Any]]] = field(default_factory=list)
    over_in: int | None = None  # the pid whose session has ended: its main thread runs plain SQLAlchemy again

    def take_over(self) -> int:
        self.generation += 1
        self.over_in = None
        return self.generation

    def over(self) -> None:
        self.over_in = os.getpid()


@dataclass
class Process:
    """Everything process-wide a session changes; :data:`PROCESS` is the one instance."""

    standalone: bool = False  # the console script (cli.entry): the process ends with os._exit after the session
    launch_environ: dict[str, str] | None = None  # the environment as appshell started, before .env was exported
    loop: SessionLoop = field(default_factory=SessionLoop)
    listeners: Listeners = field(default_factory=Listeners)
    coverage: Any = None  # the session's safety.database.Coverage: the rules raw DBAPI connects are checked against
    journal: Any = None  # the session's record.journal.Journal: where nested code (code.interact, pdb) is recorded
    protection: Any = None  # the session's console.protect.Protection: protected columns and hosts, while locked
    hooks: set[str] = field(default_factory=set)  # audit hooks installed, by name: once per process
    ends: ExitStack | None = None  # the running session's teardown

    def audit_hook(self, name: str, hook: Callable[[str, tuple[Any, ...]], None]) -> None:
        """Install *hook* once per process. Audit hooks cannot be removed (PEP 578): each of
        appshell's goes quiet on its own when no session is active (its state here is None)."""
        if name not in self.hooks:
            self.hooks.add(name)
            sys.addaudithook(hook)

    @contextmanager
    def session(self) -> Iterator[ExitStack]:
        """One session's teardown: what is pushed on the stack runs in reverse order at the end,
        each step whatever the steps before it raised (the last error is the one raised)."""
        if self.ends is not None:
            raise RuntimeError("a session is already running in this process")  # a bug, not the operator's input
        with ExitStack() as ends:
            self.ends = ends
            try:
                yield ends
            finally:
                self.ends = None

    def reset(self) -> None:
        """Back to "no session" (the in-process test harness, after each run): a session that did not reach
        its teardown has it run, the loop closed, ``asyncio.run`` given back. Not turned back: the listener
        generation (the listeners of sessions that ran must stay quiet) and the audit hooks (they cannot be)."""
        ends, self.ends = self.ends, None
        try:
            if ends is not None:
                ends.close()
        finally:
            self.loop.close()
            if self.listeners.generation:
                self.listeners.over()
            self.standalone = False
            self.launch_environ = None
            self.coverage = None
            self.journal = None
            self.protection = None


PROCESS = Process()
