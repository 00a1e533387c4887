"""The journal: every statement a shell or program runs, with its outcome.

All shells and modes report through :meth:`Journal.statement` (or its two
halves, :meth:`begin` and :meth:`end`, where a shell splits them across hooks),
so the audit wraps the shell interface once (STYLE habit 7).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["Entry", "Journal", "Sink", "outcome_of", "file_info"]


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
    return {"path": str(Path(path).resolve()), "sha256": hashlib.sha256(data).hexdigest(), "text": data.decode("utf-8", "replace")}


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


class Journal:
    """Numbers statements, times them, collects their SQL and tells the sinks."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self.entries: list[Entry] = []
        self.sinks: list[Sink] = sinks or []
        self.current: Entry | None = None

    def attach(self, engine: Engine) -> None:
        """Collect the SQL the database runs for each statement (parameters left out)."""
        from sqlalchemy import event

        event.listen(engine, "before_cursor_execute", self._on_sql)

    def _on_sql(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.current is not None:
            self.current.sql.append(statement)

    def begin(self, source: str, kind: str = "code", **extra: Any) -> Entry:
        """Record a statement before it runs; a sink that fails raises, and it does not run."""
        entry = Entry(n=len(self.entries) + 1, source=source, kind=kind)
        self.entries.append(entry)
        for sink in self.sinks:
            sink.statement(entry, extra)
        self.current = entry
        entry.started = time.perf_counter()
        return entry

    def end(self, entry: Entry, exc: BaseException | None = None) -> None:
        entry.duration_ms = round((time.perf_counter() - entry.started) * 1000, 3)
        entry.status, entry.error = outcome_of(exc)
        if self.current is entry:
            self.current = None
        for sink in self.sinks:
            sink.result(entry)

    @contextmanager
    def statement(self, source: str, kind: str = "code", **extra: Any) -> Iterator[Entry]:
        entry = self.begin(source, kind, **extra)
        try:
            yield entry
        except BaseException as exc:
            self.end(entry, exc)
            raise
        self.end(entry)
