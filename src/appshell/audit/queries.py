"""Questions the review page asks of an audit log: sessions newest first, filtered, and one session's chain.

Built on :mod:`appshell.audit.review` (``Log``, ``Session``, reading one
session from its ``session_start``) and on the session index
(:mod:`appshell.audit.index`): a list page reads the index (one line per
session), then only the sessions it shows, newest first. What it learns about a
session (its summary) is kept in memory, so later pages and filters do not read
it again; :meth:`Catalog.warm` fills that cache in the background.

Chain state of one session (:func:`verify_session`): for a file, every line
from the session's first record to its last — the session's records and the
other sessions' records between them — is checked as ``audit verify`` checks
the whole file (hash, ``seq``/``prev`` link to the line before), and with the
verification key the seal (``epoch``/``mac``) of each. That proves the
session's records were not edited, removed or reordered in place; only a
whole-file ``audit verify`` proves nothing was cut off after them.
"""
# Over 350 lines: the review page's catalog (scan, cache, filters) and one session's chain check share state.

from __future__ import annotations

import hmac
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appshell.audit.records import GENESIS, digest
from appshell.audit.review import Log, Session, add_record, scan_session
from appshell.audit.seal import evolve, record_mac
from appshell.audit.wrote import session_wrote, wrote_sql

__all__ = [
    "Summary",
    "Filters",
    "Catalog",
    "ChainState",
    "verify_session",
    "KeyLadder",
    "summarize",
    "wrote_sql",
    "fold",
]


@dataclass
class Summary:
    """What the list page shows and filters on, for one session (its records are not kept)."""

    id: str
    start: dict[str, Any]
    statements: int
    status: str
    errors: int
    wrote: bool
    ended: bool
    text: str  # reason and statement sources, folded (see fold): the text search looks here
    flags: list[str] = field(default_factory=list)  # what is odd about its records (Session.flags)
    sensitive: int = 0  # sensitive_access records
    protected_hosts: int = 0  # refused connections to protected hosts (protected_host records)
    record_flags: int = 0  # how many of its records are flagged

    def get(self, key: str) -> Any:
        return self.start.get(key)


@dataclass
class Filters:
    """The list page's filters; empty means "any"."""

    state: str = ""  # pending | reviewed | flagged
    profile: str = ""
    user: str = ""  # user or real_user
    host: str = ""
    since: str = ""  # YYYY-MM-DD (UTC), inclusive
    until: str = ""  # YYYY-MM-DD (UTC), inclusive
    errors: bool = False
    wrote: bool = False
    sandbox: str = ""  # "yes" | "no"
    read_only: str = ""  # "yes" | "no"
    sensitive: bool = False  # sessions with sensitive access (unlock(reason): appshell.console.protect) only
    q: str = ""

    def matches_start(self, start: dict[str, Any], review_state: str) -> bool:
        """The filters that the session_start record (and the reviews) can answer alone."""
        ts = str(start.get("ts") or "")
        checks = (
            not self.state or review_state == self.state,
            not self.profile or start.get("profile") == self.profile,
            not self.user or self.user in (start.get("user"), start.get("real_user")),
            not self.host or start.get("host") == self.host,
            not self.since or ts[:10] >= self.since,
            not self.until or ts[:10] <= self.until,
            not self.sandbox or bool(start.get("sandbox")) == (self.sandbox == "yes"),
            not self.read_only or bool(start.get("read_only")) == (self.read_only == "yes"),
        )
        return all(checks)

    def matches(self, s: Summary, review_state: str) -> bool:
        return self.matches_start(s.start, review_state) and all(
            (
                not self.errors or s.errors > 0 or s.status == "error",
                not self.wrote or s.wrote,
                not self.sensitive or s.sensitive > 0,
                not self.q or fold(self.q) in s.text,
            )
        )


def fold(text: str) -> str:
    """Case-folded for the text search: ASCII letters only, as the byte scan of the file folds them."""
    return text.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")


def summarize(s: Session) -> Summary:
    results = [r for r in s.records if r.get("event") == "result"]
    sources = [str(st.get("source") or "") for st in s.records if st.get("event") == "statement"]
    return Summary(
        id=s.id,
        start=s.start,
        statements=len(sources),
        status=s.status,
        errors=sum(1 for r in results if r.get("status") == "error"),
        wrote=session_wrote(s),
        ended=s.end is not None,
        text=fold("\n".join([str(s.start.get("reason") or ""), *sources])),
        flags=s.flags(),
        sensitive=s.sensitive(),
        protected_hosts=s.protected_hosts(),
        record_flags=sum(1 for f in s.record_flags() if f),
    )


class Catalog:
    """Sessions of one log, newest first; summaries cached in memory.

    The sessions of a file are found in the file (:class:`appshell.audit.index.StartScan`: the
    index is only a cache, repaired where it differs), and each session is every record naming it
    from its start to the end of the file. What is appended later is scanned once for the
    sessions it names (:meth:`_sync`): only their cached summaries are read again, from where
    their last read stopped.
    """

    def __init__(self, log: Log) -> None:
        self.log = log
        self._summaries: dict[str, tuple[Summary, int]] = {}  # summary and the file offset it is current up to
        self._starts: dict[
            str, dict[str, Any]
        ] = {}  # session_start records read on their own (a filter on start facts)
        self._lock = threading.Lock()
        self._read: dict[str, tuple[Session, int, int]] = {}  # session: (records so far, start offset, read up to)
        self._hits: tuple[Any, set[str]] | None = None  # the last text search's sessions, for one state of the file
        self._scan: Any = None
        self._synced: tuple[tuple[int, int], int] | None = None  # (file id, size) up to which appends are tracked
        self._last_line: dict[str, int] = {}  # session: the offset of its last line appended since tracking began
        self._late: dict[str, int] | None = (
            None  # session: the offset of its last line in the file (one pass, made once)
        )

    # -- which sessions exist -------------------------------------------------------

    def entries(self) -> list[tuple[str, int]]:
        """(session, position) oldest first: the file offset of its start, or the table id of its start."""
        if self.log.path is not None:
            return self._file_entries(self.log.path)
        return self._sql_entries()

    def _file_entries(self, path: Path) -> list[tuple[str, int]]:
        from appshell.audit.index import StartScan

        with self._lock:
            if self._scan is None:
                self._scan = StartScan(path)
            self._sync(path)
            return list(self._scan.current())

    def _sync(self, path: Path) -> None:
        """Note which sessions the bytes appended since the last call name (their cached reads are then resumed)."""
        st = path.stat()
        fid = (st.st_dev, st.st_ino)
        if self._synced is None or self._synced[0] != fid or st.st_size < self._synced[1]:
            if self._synced is not None:  # another file, or a cut one: forget everything read
                self._summaries.clear()
                self._read.clear()
                self._starts.clear()
            self._synced, self._last_line = (fid, st.st_size), {}
            return
        begin = self._synced[1]
        if st.st_size == begin:
            return
        with path.open("rb") as f:
            f.seek(begin)
            data = f.read(st.st_size - begin)
        cut = data.rfind(b"\n") + 1
        for m in _SESSION_FIELD.finditer(data, 0, cut):
            self._last_line[m[1].decode("utf-8", "replace")] = begin + m.start()
        self._synced = (fid, begin + cut)

    def _late_lines(self, path: Path) -> dict[str, int]:
        """Where each session's last line is in the file: one regex
        pass over a memory map (~0.7 s for 480 MB), made once.

        Lines appended after it are tracked by :meth:`_sync` (``_last_line``)."""
        with self._lock:
            if self._late is not None:
                return self._late
        import mmap
        import os

        last: dict[str, int] = {}
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size:
                with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mm:  # no copies: ~0.7 s for 480 MB
                    for m in _SESSION_FIELD.finditer(mm):  # type: ignore[call-overload]  # re reads any buffer
                        last[m[1].decode("utf-8", "replace")] = (
                            m.start()
                        )  # within its last line: enough to stop after it
        with self._lock:
            self._late = last
        return last

    def _current(self, session: str, upto: int) -> bool:
        """Has nothing naming *session* been appended at or after *upto*?"""
        return self._last_line.get(session, -1) < upto

    def _sql_entries(self) -> list[tuple[str, int]]:
        from sqlalchemy import select

        from appshell.audit.sqlsink import connected, table_at

        t = table_at(self.log.url or "")
        with connected(self.log.url or "") as conn:
            rows = conn.execute(
                select(t.c.session, t.c.id, t.c.record).where(t.c.event == "session_start").order_by(t.c.id)
            ).all()
        for session, _id, record in rows:
            try:
                self._starts[str(session)] = json.loads(record)
            except ValueError:
                pass  # read again with its session: the chain check names it
        return [(str(s), int(i)) for s, i, _ in rows]

    # -- one session ----------------------------------------------------------------

    def session(self, session: str, position: int | None = None) -> Session | None:
        """All records of *session*, read from its start (file) or by its chain (table)."""
        if self.log.path is not None:
            if position is None:
                position = dict(self.entries()).get(session)
                if position is None:
                    return None
            return self._file_session(self.log.path, session, position)
        return _sql_session(self.log.url or "", session)

    def _file_session(self, path: Path, session: str, position: int) -> Session | None:
        """Every record of *session* from its start to the end of the file; read once, then only what was appended."""
        with self._lock:
            cached = self._read.get(session)
        found: Session | None
        if cached is not None and cached[1] == position:
            found, _, upto = cached
            if not self._current(session, upto):
                found, upto = scan_session(path, session, upto, into=found)
        else:
            stop = None
            with self._lock:
                self._sync(path)
                synced = self._synced[1] if self._synced is not None else 0
            if (
                synced - position > FAR
            ):  # not read to the end of the file: to its last line, as one pass over the file found it
                late = self._late_lines(path)
                stop = max(late.get(session, position), self._last_line.get(session, -1))
            found, upto = scan_session(path, session, position, stop=stop)
            if stop is not None:
                upto = max(upto, synced)
        if found is not None:
            with self._lock:
                self._read[session] = (found, position, upto)
        return found

    def summary(self, session: str, position: int) -> Summary | None:
        cached = self._summaries.get(session)
        if cached is not None and self._current(session, cached[1]):
            return cached[0]
        found = self.session(session, position)
        if found is None or not found.start:
            return None
        summary = summarize(found)
        upto = self._read[session][2] if session in self._read else 0
        self._summaries[session] = (summary, upto)
        return summary

    def start(self, session: str, position: int, f: Any) -> dict[str, Any] | None:
        """The session_start record alone: one line at its offset (None: read the whole session instead)."""
        cached = self._summaries.get(session)
        if cached is not None:
            return cached[0].start
        start = self._starts.get(session)
        if start is None and f is not None:
            f.seek(position)
            try:
                record = json.loads(f.readline())
            except ValueError:
                return None
            if isinstance(record, dict) and record.get("event") == "session_start" and record.get("session") == session:
                start = self._starts[session] = record
        return start

    def text_hits(self, q: str) -> set[str] | None:
        """Sessions with a record whose bytes hold *q* (JSON-encoded, ASCII case folded): a superset of the matches.

        One pass over the file with ``bytes.find``, near disk speed; only these
        sessions are read whole. None for a table (the search reads each session).
        """
        path = self.log.path
        if path is None:
            return None
        needle = json.dumps(q, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass").lower()
        st = path.stat()
        key = (needle, st.st_size, st.st_mtime_ns)
        if self._hits is not None and self._hits[0] == key:
            return self._hits[1]
        found: set[str] = set()
        with path.open("rb") as f:
            carry = b""
            while chunk := f.read(1 << 24):
                buf = carry + chunk
                cut = buf.rfind(b"\n") + 1  # whole lines only; the rest goes with the next chunk
                low = buf[:cut].lower()
                i = low.find(needle)
                while i >= 0:
                    start, end = low.rfind(b"\n", 0, i) + 1, low.find(b"\n", i)
                    try:
                        found.add(str(json.loads(buf[start:end])["session"]))
                    except (ValueError, KeyError, TypeError):
                        pass
                    i = low.find(needle, end)
                carry = buf[cut:]
        self._hits = (key, found)
        return found

    # -- the list ---------------------------------------------------------------------

    def _matching(self, filters: Filters, review_state: Any, end: int) -> Iterator[tuple[int, Summary]]:
        """(list position, summary) of the matching sessions before *end*, newest first.

        A session whose start facts do not match is passed over on its start record alone.
        """
        entries = self.entries()
        unread = sum(1 for session, _ in entries if session not in self._summaries) if filters.q else 0
        hits = self.text_hits(filters.q) if unread > 50 else None  # once all are in memory, memory is faster
        f = self.log.path.open("rb") if self.log.path is not None else None
        try:
            for i in range(min(end, len(entries)) - 1, -1, -1):
                session, position = entries[i]
                if hits is not None and session not in hits and session not in self._summaries:
                    continue  # the text is nowhere in its records
                state = review_state(session)
                start = self.start(session, position, f)
                if start is not None and not filters.matches_start(start, state):
                    continue
                s = self.summary(session, position)
                if s is not None and filters.matches(s, state):
                    yield i, s
        finally:
            if f is not None:
                f.close()

    def page(
        self, filters: Filters, review_state: Any, before: int | None = None, limit: int = 50
    ) -> tuple[list[Summary], int | None]:
        """Up to *limit* matching sessions, newest first, older than list position *before*; and the next cursor."""
        found: list[Summary] = []
        for i, s in self._matching(filters, review_state, len(self.entries()) if before is None else max(0, before)):
            if len(found) == limit:
                return found, i + 1
            found.append(s)
        return found, None

    def all(self, filters: Filters, review_state: Any) -> Iterator[Summary]:
        """Every matching session, newest first (for export)."""
        for _, s in self._matching(filters, review_state, len(self.entries())):
            yield s

    def warm(self) -> None:
        """Read every session's summary once, so filters answer from
        memory: a file in one pass, a table session by session."""
        path = self.log.path
        if path is not None:
            self.entries()  # tracking of appends begins here
            self._late_lines(path)  # where each session's last line is: what a page of old sessions needs
            running: dict[str, Session] = {}
            ended: set[str] = set()
            offset = 0
            with path.open("rb") as f:
                for raw in f:
                    where = f"{path}@{offset}"
                    offset += len(raw)
                    if not raw.endswith(b"\n"):
                        break
                    record = add_record(running, raw, where)
                    if record is None:
                        continue
                    sid = str(record["session"])
                    if sid in ended:  # a record after its end: the summary must show it; read it whole when shown
                        self._summaries.pop(sid, None)
                        running.pop(sid, None)
                        continue
                    if record.get("event") == "session_end" and record.get("hash"):
                        done = running.pop(sid)
                        ended.add(sid)
                        if done.start:  # a session begun in a rotated file is not listed
                            self._summaries.setdefault(sid, (summarize(done), offset))
            return  # sessions still open are read when shown: they may grow
        for session, position in reversed(self.entries()):
            try:
                self.summary(session, position)
            except OSError:
                return


FAR = (
    64 << 20
)  # a session that starts this far before the end of the file is read only to its last line (see _late_lines)
_SESSION_FIELD = re.compile(rb'"session"\s*:\s*"([^"\\]*)"')


def _sql_session(url: str, session: str) -> Session | None:
    found: dict[str, Session] = {}
    for _row_id, record in _sql_records(url, session):
        add_record(found, record.encode("utf-8"))
    return found.get(session)


def _sql_records(url: str, session: str) -> list[tuple[int, str]]:
    from sqlalchemy import select

    from appshell.audit.sqlsink import connected, table_at

    t = table_at(url)
    with connected(url) as conn:
        rows = conn.execute(select(t.c.id, t.c.record).where(t.c.session == session).order_by(t.c.seq))
        return [(int(i), str(r)) for i, r in rows]


# -- chain state of one session -------------------------------------------------------


@dataclass
class ChainState:
    state: str  # intact | broken | unknown
    detail: str
    authenticated: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.state == "broken":
            return "broken"
        if self.state == "intact":
            return "intact, authenticated" if self.authenticated else "intact, not authenticated"
        return "unknown"


class KeyLadder:
    """The sealing key of any epoch, from the verification key k0, remembering a rung every 256 epochs."""

    STEP = 256

    def __init__(self, k0: bytes) -> None:
        self.rungs: dict[int, bytes] = {0: k0}  # every multiple of STEP up to self.top
        self.top = 0
        self.last = (0, k0)  # records are checked in order: the next key is one step from the last
        self._lock = threading.Lock()

    def key(self, epoch: int) -> bytes:
        with self._lock:
            base = min(epoch // self.STEP * self.STEP, self.top)
            key = self.rungs[base]
            if base < self.last[0] <= epoch:
                base, key = self.last
            for e in range(base + 1, epoch + 1):
                key = evolve(key)
                if e % self.STEP == 0 and e > self.top:
                    self.rungs[e], self.top = key, e
            self.last = (epoch, key)
            return key


def _line_before(f: Any, offset: int) -> bytes | None:
    """The whole line that ends just before *offset* (None at the start of the file)."""
    if offset == 0:
        return None
    size = 4096
    while True:
        start = max(0, offset - size)
        f.seek(start)
        chunk = f.read(offset - start)
        body = chunk[:-1] if chunk.endswith(b"\n") else chunk
        cut = body.rfind(b"\n")
        if cut >= 0 or start == 0:
            return body[cut + 1 :]
        size *= 4


def verify_session(log: Log, session: Session, offset: int | None, ladder: KeyLadder | None) -> ChainState:
    """The chain state of *session*'s records (see the module docstring for what it proves)."""
    if log.path is None:
        return _verify_sql_session(log.url or "", session.id)
    if offset is None:
        return ChainState("unknown", "the session's start is not in the index")
    return _verify_file_segment(log.path, session, offset, ladder)


def _check(record: dict[str, Any], prev: str | None, seq: int | None) -> str | None:
    if not isinstance(record.get("hash"), str) or not isinstance(record.get("seq"), int):
        return "a whole JSON line with no hash or seq: not written by appshell's sink — forged"
    if digest(record) != record.get("hash"):
        return "hash mismatch — the record was edited after it was written"
    if prev is not None and (record.get("prev") != prev or record.get("seq") != (seq or 0) + 1):
        return (
            "chain broken (prev/seq do not follow the record before) — "
            "a record before it was deleted, inserted or reordered"
        )
    return None


def _verify_file_segment(path: Path, session: Session, offset: int, ladder: KeyLadder | None) -> ChainState:
    last_seq = max((int(r["seq"]) for r in session.records if isinstance(r.get("seq"), int)), default=0)
    prev: str | None
    seq: int | None
    sealed = unsealed = 0
    with path.open("rb") as f:
        before = _line_before(f, offset)
        if before is None:
            prev, seq = GENESIS, 0
        else:
            try:
                rec = json.loads(before)
                prev, seq = str(rec["hash"]), int(rec["seq"])
            except (ValueError, KeyError, TypeError):
                prev = seq = None  # damage before the session: audit verify names it; check from here on
        f.seek(offset)
        number = 0
        for raw in f:
            number += 1
            try:
                record = json.loads(raw)
            except ValueError:
                return ChainState(
                    "broken",
                    f"{number - 1} record(s) after the session's start: not a JSON record — "
                    "edited, or a torn write (`appshell audit verify` tells which)",
                )
            if not isinstance(record, dict):
                return ChainState("broken", f"record {number} of the segment is not a JSON object")
            where = f"record seq {record.get('seq')}"
            problem = _check(record, prev, seq)
            if problem is not None:
                return ChainState("broken", f"broken at {where}: {problem}")
            if "mac" in record and isinstance(record.get("epoch"), int):
                sealed += 1
                if ladder is not None:
                    if not record["epoch"] < record["seq"]:  # one epoch a sealed record: never a hang on a forged one
                        return ChainState(
                            "broken", f"broken at {where}: sealed with epoch {record['epoch']}, beyond its seq — forged"
                        )
                    if not hmac.compare_digest(record_mac(ladder.key(record["epoch"]), record), str(record["mac"])):
                        return ChainState(
                            "broken",
                            f"broken at {where}: MAC mismatch — not sealed by the key of its epoch: forged or edited",
                        )
            else:
                unsealed += 1
            prev, seq = str(record["hash"]), int(record["seq"])
            if seq >= last_seq:
                break
    span = f"records seq {session.start.get('seq')}–{last_seq} (this session's and those between them) hash and link"
    if ladder is None:
        return ChainState("intact", f"{span}; not authenticated: no verification key given (--key)")
    if unsealed:
        return ChainState(
            "intact", f"{span}; {unsealed} record(s) are not sealed (written before `audit init`): not authenticated"
        )
    return ChainState(
        "intact", f"{span}; all {sealed} sealed records authenticated with the verification key", authenticated=True
    )


def _verify_sql_session(url: str, session: str) -> ChainState:
    prev, seq = GENESIS, 0
    for row_id, raw in _sql_records(url, session):
        try:
            record = json.loads(raw)
        except ValueError:
            return ChainState("broken", f"broken at row id {row_id}: not a JSON record — the row was edited")
        problem = _check(record, prev, seq) if isinstance(record, dict) else "not a JSON object"
        if problem is not None:
            return ChainState("broken", f"broken at record seq {record.get('seq')} (row id {row_id}): {problem}")
        prev, seq = str(record["hash"]), int(record["seq"])
    return ChainState(
        "intact",
        f"records seq 1–{seq} hash and link; not authenticated: the SQL sink's records are not sealed "
        "(a session whose last rows were deleted looks like a killed one — compare with the file, --witness)",
    )
