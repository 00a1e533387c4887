"""The journal: every statement a shell or program runs, with its outcome.

All shells and modes report through :meth:`Journal.statement` (or its two
halves, :meth:`begin` and :meth:`end`, where a shell splits them across hooks),
so the audit wraps the shell interface once, not once per shell. Statements
nest: a cell that calls ``run_cell``, or ``%run`` inside a cell, is a statement
of its own whose record names its ``parent``. Code a statement runs without
being one — a nested console, ``exec(input())``, pdb — is recorded by
:mod:`appshell.record.nested` through :meth:`Journal.nested`.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from appshell.errors import EXIT_AUDIT, SessionEnded

__all__ = ["Entry", "Journal", "Sink", "SessionEnded", "outcome_of", "file_info", "file_sha256"]


@dataclass
class Entry:
    n: int
    source: str
    kind: str = "code"
    status: str = "running"  # running | ok | error | interrupted
    error: str | None = None
    duration_ms: float = 0.0
    sql: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    parent: int | None = None


# The statement running where a context was made: an asyncio task copies it when it is created,
# so SQL a task runs later is told apart from the statement that happens to run the loop then.
_started_by: contextvars.ContextVar[Entry | None] = contextvars.ContextVar("appshell_statement", default=None)


class Sink(Protocol):
    """Where the journal's records go (the audit log implements this)."""

    def statement(self, entry: Entry, extra: dict[str, Any]) -> None: ...

    def result(self, entry: Entry) -> None: ...


def file_info(path: str | Path, data: bytes | None = None) -> dict[str, str]:
    """A file that runs code no input shows (%run, PYTHONSTARTUP, a script): where, its sha256 and its text.

    Pass *data* when the caller has read the file already: the hash is then of
    the very bytes that run, and the file is not read twice.
    """
    data = Path(path).read_bytes() if data is None else data
    return {
        "path": str(Path(path).resolve()),
        "sha256": hashlib.sha256(data).hexdigest(),
        "text": data.decode("utf-8", "replace"),
    }


def file_sha256(path: str) -> str | None:
    """The sha256 of a file's bytes, read in blocks; None where it cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def outcome_of(exc: BaseException | None) -> tuple[str, str | None]:
    """The (status, error) that an exception, or its absence, stands for."""
    if exc is None:
        return "ok", None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "KeyboardInterrupt"
    if isinstance(exc, SystemExit) or type(exc).__name__ == "ReplExit":
        code = getattr(exc, "code", 0)
        return ("ok", None) if code in (None, 0) else ("error", f"SystemExit: {code}")
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return "error", f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@contextmanager
def _headroom() -> Iterator[None]:
    """Stack for the sinks, however deep the operator's code has recursed: a record that fails
    for want of stack would refuse the statement (or, where the audit is optional, drop the sink)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


class Journal:
    """Numbers statements, times them, collects their SQL and tells the sinks."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self.entries: list[Entry] = []
        self.sinks: list[Sink] = sinks or []
        self.stack: list[Entry] = []  # the statements running now, innermost last
        self.closed = False
        # The process that owns the session: a forked child must not write
        # records under it (they would be duplicates, or unseen by the parent).
        self.pid = os.getpid()
        # Source texts the shell itself is about to compile for the running
        # statement: appshell.record.nested must not record them a second time.
        self.expected: set[str] = set()
        self.imported: set[str] = set()  # module files recorded by appshell.record.nested, once each

    @property
    def current(self) -> Entry | None:
        return self.stack[-1] if self.stack else None

    @property
    def forked(self) -> bool:
        return os.getpid() != self.pid

    def attach(self) -> None:
        """Collect the SQL the database runs for each statement
        (parameters left out), on every engine in the process."""
        from appshell.safety.engines import on_every_engine

        on_every_engine("before_cursor_execute", self._on_sql)

    def _on_sql(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.closed or self.forked:
            where = "a forked child process" if self.forked else "a thread left running after the session ended"
            raise SessionEnded(f"appshell: SQL from {where} is refused: no audit session would record it")
        origin = _started_by.get()
        if origin is not None and origin.status != "running" and origin is not self.current:
            # A task the statement `origin` started, running after that statement ended: recorded
            # under its own statement before it runs, not credited to the one running the loop now.
            self.nested(statement, kind="sql", parent=origin)
        elif self.current is not None:
            self.current.sql.append(statement)
        else:
            # No statement is running: a thread, a signal handler, a result shown after its
            # statement ended. Recorded before it runs, as a statement is; a sink that fails stops it.
            self.nested(statement, kind="sql")

    def _alive(self) -> None:
        """A forked child cannot run statements under its parent's session: it leaves at once."""
        if self.forked:
            print(
                "appshell: error: this forked child process cannot run more audited statements — it exits (status 3)",
                file=sys.stderr,
            )
            os._exit(EXIT_AUDIT)

    def begin(self, source: str, kind: str = "code", **extra: Any) -> Entry:
        """Record a statement before it runs; a sink that fails raises, and it does not run."""
        self._alive()
        parent = self.current
        entry = Entry(n=len(self.entries) + 1, source=source, kind=kind, parent=parent.n if parent else None)
        self.entries.append(entry)
        fields = {"parent": parent.n, **extra} if parent is not None else extra
        with _headroom():
            for sink in self.sinks:
                sink.statement(entry, fields)
        self.stack.append(entry)
        _started_by.set(entry)
        entry.started = time.perf_counter()
        return entry

    def nested(self, source: str, kind: str, parent: Entry | None = None, **extra: Any) -> Entry:
        """Record code that the running statement (or *parent*) executes
        without it being a statement (no result of its own)."""
        self._alive()
        parent = parent or self.current
        entry = Entry(
            n=len(self.entries) + 1, source=source, kind=kind, status="nested", parent=parent.n if parent else None
        )
        self.entries.append(entry)
        with _headroom():
            for sink in self.sinks:
                sink.statement(entry, {"parent": entry.parent, **extra})
        return entry

    def end(self, entry: Entry, exc: BaseException | None = None) -> None:
        if entry in self.stack:
            # Statements nested in this one that never reported their end end with it.
            del self.stack[self.stack.index(entry) :]
            _started_by.set(self.current)
        if self.forked:
            return  # the parent records the outcome; a child's record would be a duplicate
        entry.duration_ms = round((time.perf_counter() - entry.started) * 1000, 3)
        entry.status, entry.error = outcome_of(exc)
        self.expected.clear()
        with _headroom():
            for sink in self.sinks:
                sink.result(entry)

    def close(self) -> None:
        """The session is over: SQL from threads it left behind is refused from now on."""
        self.closed = True

    @contextmanager
    def statement(self, source: str, kind: str = "code", **extra: Any) -> Iterator[Entry]:
        entry = self.begin(source, kind, **extra)
        try:
            yield entry
        except BaseException as exc:
            self.end(entry, exc)
            raise
        self.end(entry)
