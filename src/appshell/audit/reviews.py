"""Auditors' reviews of sessions: append-only and hash-chained like the audit records.

A review is a record sealed with :func:`appshell.audit.records.seal` —
``v``, ``seq``, ``ts``, ``session`` (the reviewed one), ``event`` ("review"),
``auditor``, ``state`` (reviewed | flagged), ``note``, ``prev``, ``hash`` — in
its own chain:

- beside a file sink: ``reviews.jsonl`` in the log's directory (0600; appended
  under ``flock``, whole lines, fsynced);
- with an SQL sink: table ``appshell_review`` in the same database (INSERT
  only; ``seq`` unique, so two auditors cannot fork the chain).

Loading verifies the chain: an edited, removed or reordered review breaks it,
and the page says where. As with the records, whoever can write the file can
rewrite it whole and rehash it; the page shows the chain's head hash for the
auditor to note off the host.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appshell.audit.records import GENESIS, canonical, digest, now_rfc3339, seal

__all__ = ["STATES", "Review", "Reviews", "FileReviews", "SqlReviews", "open_reviews", "reviews_path", "TABLE"]

STATES = ("reviewed", "flagged")
TABLE = "appshell_review"
NOTE_MAX = 10_000


def reviews_path(log: Path) -> Path:
    return log.parent / "reviews.jsonl"


@dataclass
class Review:
    seq: int
    ts: str
    session: str
    auditor: str
    state: str
    note: str
    hash: str
    verified: bool  # False: at or after the point where the chain is broken


@dataclass
class Reviews:
    """All reviews, and whether their chain is intact."""

    where: str
    items: list[Review] = field(default_factory=list)
    broken: str | None = None  # where and why the chain breaks
    head: str = GENESIS  # the last review's hash
    _latest: tuple[int, dict[str, Review]] | None = field(default=None, repr=False, compare=False)

    def of(self, session: str) -> list[Review]:
        return [r for r in self.items if r.session == session]

    def state(self, session: str) -> str:
        """The latest review's state, or "pending"."""
        latest = self.latest.get(session)
        return latest.state if latest is not None else "pending"

    @property
    def latest(self) -> dict[str, Review]:
        """Each reviewed session's latest review (computed once: the list asks for every session)."""
        if self._latest is None or self._latest[0] != len(self.items):
            found: dict[str, Review] = {}
            for r in self.items:
                found[r.session] = r
            self._latest = (len(self.items), found)
        return self._latest[1]


def _body(session: str, auditor: str, state: str, note: str) -> dict[str, Any]:
    if state not in STATES:
        raise ValueError(f"review state must be one of {', '.join(STATES)}")
    return {"ts": now_rfc3339(), "session": session, "event": "review", "auditor": auditor, "state": state, "note": note[:NOTE_MAX]}


def _load(where: str, rows: list[tuple[str, bytes]]) -> Reviews:
    """Verify the chain of (where, raw) rows and read the reviews in it."""
    out = Reviews(where)
    prev, seq = GENESIS, 0
    for at, raw in rows:
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        ok = out.broken is None
        if not isinstance(record, dict):
            out.broken = out.broken or f"{at}: not a JSON record — the line was edited or damaged"
            continue
        if ok and digest(record) != record.get("hash"):
            out.broken = f"{at}: hash mismatch — the review was edited after it was written"
        elif ok and (record.get("prev") != prev or record.get("seq") != seq + 1):
            out.broken = f"{at}: chain broken — a review before it was deleted, inserted or reordered"
        prev, seq = str(record.get("hash")), int(record.get("seq") or 0)
        out.items.append(Review(seq, str(record.get("ts")), str(record.get("session")), str(record.get("auditor")),
                                str(record.get("state")), str(record.get("note") or ""), prev, out.broken is None))
    out.head = prev
    return out


class FileReviews:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Reviews:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Reviews(str(self.path))
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return _load(str(self.path), [(f"{self.path}:{i}", raw) for i, raw in enumerate(lines, start=1)])

    def append(self, session: str, auditor: str, state: str, note: str) -> dict[str, Any]:
        body = _body(session, auditor, state, note)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # two auditors at once: one linear chain
            from appshell.audit.filesink import read_tail

            size = os.fstat(fd).st_size
            last, _, damage = read_tail(fd, size)
            if damage:
                raise OSError(errno.EIO, f"{self.path} ends with bytes that are not a review — it was edited; not appending to it")
            record = seal(body, int(last["seq"]) + 1 if last else 1, str(last["hash"]) if last else GENESIS)
            data = canonical(record) + b"\n"
            written = 0
            try:
                while written < len(data):
                    n = os.write(fd, data[written:])
                    if n <= 0:
                        raise OSError(errno.ENOSPC, "the write made no progress")
                    written += n
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, size)  # whole or not at all
                raise
            return record
        finally:
            os.close(fd)


class SqlReviews:
    def __init__(self, url: str) -> None:
        self.url = url

    def _table(self, metadata: Any) -> Any:
        """appshell_review, named with the audit table's schema, for the reason sqlsink gives."""
        from sqlalchemy import BigInteger, Column, Integer, String, Table, Text

        from appshell.audit.sqlsink import schema_of

        return Table(
            TABLE, metadata,
            Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
            Column("session", String(64), nullable=False),
            Column("hash", String(64), nullable=False),
            Column("record", Text, nullable=False),
            schema=schema_of(self.url),
        )

    def load(self) -> Reviews:
        from sqlalchemy import MetaData, inspect, select

        from appshell.audit.sqlsink import _engine

        engine = _engine(self.url)
        try:
            table = self._table(MetaData())
            with engine.connect() as conn:
                if not inspect(conn).has_table(TABLE, schema=table.schema):
                    return Reviews(TABLE)
                rows = conn.execute(select(table.c.seq, table.c.record).order_by(table.c.seq)).all()
        finally:
            engine.dispose()
        return _load(TABLE, [(f"{TABLE}#seq={s}", str(r).encode("utf-8")) for s, r in rows])

    def append(self, session: str, auditor: str, state: str, note: str) -> dict[str, Any]:
        from sqlalchemy import MetaData, select
        from sqlalchemy.exc import IntegrityError

        from appshell.audit.sqlsink import _engine

        body = _body(session, auditor, state, note)
        engine = _engine(self.url)
        try:
            metadata = MetaData()
            table = self._table(metadata)
            metadata.create_all(engine)
            for _ in range(5):  # a concurrent review took the same seq: chain onto it instead
                with engine.connect() as conn:
                    last = conn.execute(select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1)).first()
                record = seal(body, int(last[0]) + 1 if last else 1, str(last[1]) if last else GENESIS)
                try:
                    with engine.begin() as conn:
                        conn.execute(table.insert().values(seq=record["seq"], session=session, hash=record["hash"],
                                                           record=canonical(record).decode("utf-8")))
                    return record
                except IntegrityError:
                    continue
            raise OSError(errno.EAGAIN, f"{TABLE}: could not append the review (the chain kept moving)")
        finally:
            engine.dispose()


def open_reviews(log_path: Path | None, url: str | None, override: Path | None = None) -> FileReviews | SqlReviews:
    if override is not None:
        return FileReviews(override)
    if log_path is not None:
        return FileReviews(reviews_path(log_path))
    return SqlReviews(url or "")
