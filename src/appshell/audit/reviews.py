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
and the page says where. A hash chain alone proves nothing against whoever can
write the store (issue 22 attack 7: a correctly chained review appended by the
operator showed as verified), so each review is also *authenticated*: ``auth``
is an HMAC-SHA256, under the review server's key, of the record without ``auth``
and ``hash``; ``key_id`` names the key. The key is a file the review server
creates at its first start (0600, in a 0700 folder): ``APPSHELL_REVIEW_KEY_FILE``,
else ``$XDG_CONFIG_HOME/appshell/review.key`` (``~/.config/…``) of the user who
runs ``appshell audit serve``. A review without a valid ``auth`` is shown
flagged and does not count: its session stays pending. Run the review server as
a user the operator is not — an operator who can read the key can forge reviews
(docs/audit.md, threat model).
"""
# Over 350 lines: the reviews' store, its authentication and
# its two backends (file, SQL) are one contract, read together.

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appshell.audit.records import GENESIS, canonical, digest, now_rfc3339

__all__ = [
    "STATES",
    "Review",
    "Reviews",
    "FileReviews",
    "SqlReviews",
    "open_reviews",
    "reviews_path",
    "TABLE",
    "review_key_path",
    "load_review_key",
]

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
    verified: bool  # chained and authenticated by the review server's key
    problem: str | None = None  # why not verified: the chain broken, or no valid auth


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
        """Each reviewed session's latest verified review (computed once: the list asks for every session).

        An unverified review (broken chain, no valid auth) never takes a session off the pending list."""
        if self._latest is None or self._latest[0] != len(self.items):
            found: dict[str, Review] = {}
            for r in self.items:
                if r.verified:
                    found[r.session] = r
            self._latest = (len(self.items), found)
        return self._latest[1]


def _body(session: str, auditor: str, state: str, note: str) -> dict[str, Any]:
    if state not in STATES:
        raise ValueError(f"review state must be one of {', '.join(STATES)}")
    return {
        "ts": now_rfc3339(),
        "session": session,
        "event": "review",
        "auditor": auditor,
        "state": state,
        "note": note[:NOTE_MAX],
    }


def review_key_path(environ: Any = None) -> Path:
    """The review server's key: APPSHELL_REVIEW_KEY_FILE, else $XDG_CONFIG_HOME/appshell/review.key."""
    env = os.environ if environ is None else environ
    if env.get("APPSHELL_REVIEW_KEY_FILE"):
        return Path(env["APPSHELL_REVIEW_KEY_FILE"]).expanduser()
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "appshell" / "review.key"


def load_review_key(path: Path, create: bool = False) -> bytes | None:
    """The key in *path* (64 hex digits); with *create*, made first where there is none (0600, folder 0700)."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        if not create:
            return None
    except ValueError:
        return None  # not a key: every review shows unauthenticated
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another server made it at the same moment
        return load_review_key(path)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return load_review_key(path)


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"appshell-review-key" + key).hexdigest()[:16]


def _auth(key: bytes, record: dict[str, Any]) -> str:
    return hmac.digest(key, canonical({k: v for k, v in record.items() if k not in ("auth", "hash")}), "sha256").hex()


def _sealed_review(key: bytes | None, body: dict[str, Any], seq: int, prev: str) -> dict[str, Any]:
    """The review record: chained (``seq``, ``prev``, ``hash``) and, with the server's key, authenticated (``auth``)."""
    if key is None:
        raise OSError(errno.EACCES, "the review server has no review key: reviews cannot be authenticated")
    record: dict[str, Any] = {"v": 1, "seq": seq, **body, "prev": prev, "key_id": _key_id(key)}
    record["auth"] = _auth(key, record)
    record["hash"] = digest(record)
    return record


def _load(where: str, rows: list[tuple[str, bytes]], key: bytes | None = None) -> Reviews:
    """Verify the chain of (where, raw) rows and the auth of each, and read the reviews in it."""
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
        problem = None
        if out.broken is not None:
            problem = "the review chain is broken"
        elif key is None:
            problem = "not authenticated: this review server has no review key to check it with"
        elif not isinstance(record.get("auth"), str) or not hmac.compare_digest(
            _auth(key, record), str(record["auth"])
        ):
            problem = "not authenticated by this review server's key: written by someone else (forged?)"
        out.items.append(
            Review(
                seq,
                str(record.get("ts")),
                str(record.get("session")),
                str(record.get("auditor")),
                str(record.get("state")),
                str(record.get("note") or ""),
                prev,
                problem is None,
                problem,
            )
        )
    out.head = prev
    return out


class FileReviews:
    def __init__(self, path: Path, key_file: Path | None = None) -> None:
        self.path = path
        self.key_file = key_file or review_key_path()
        self.key: bytes | None = None

    def ensure_key(self) -> None:
        """The review server holds the key: made at its first start."""
        self.key = load_review_key(self.key_file, create=True)

    def load(self) -> Reviews:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Reviews(str(self.path))
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return _load(str(self.path), [(f"{self.path}:{i}", raw) for i, raw in enumerate(lines, start=1)], self._key())

    def _key(self, create: bool = False) -> bytes | None:
        if self.key is None:
            self.key = load_review_key(self.key_file, create=create)
        return self.key

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
                raise OSError(
                    errno.EIO, f"{self.path} ends with bytes that are not a review — it was edited; not appending to it"
                )
            record = _sealed_review(
                self._key(create=True),
                body,
                int(last["seq"]) + 1 if last else 1,
                str(last["hash"]) if last else GENESIS,
            )
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
    def __init__(self, url: str, key_file: Path | None = None) -> None:
        self.url = url
        self.key_file = key_file or review_key_path()
        self.key: bytes | None = None

    def ensure_key(self) -> None:
        self.key = load_review_key(self.key_file, create=True)

    def _key(self, create: bool = False) -> bytes | None:
        if self.key is None:
            self.key = load_review_key(self.key_file, create=create)
        return self.key

    def _table(self, metadata: Any) -> Any:
        """appshell_review, named with the audit table's schema, for the reason sqlsink gives."""
        from sqlalchemy import BigInteger, Column, Integer, String, Table, Text

        from appshell.audit.sqlsink import schema_of

        return Table(
            TABLE,
            metadata,
            Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
            Column("session", String(64), nullable=False),
            Column("hash", String(64), nullable=False),
            Column("record", Text, nullable=False),
            schema=schema_of(self.url),
        )

    def load(self) -> Reviews:
        from sqlalchemy import MetaData, inspect, select

        from appshell.audit.sqlsink import audit_engine

        engine = audit_engine(self.url)
        try:
            table = self._table(MetaData())
            with engine.connect() as conn:
                if not inspect(conn).has_table(TABLE, schema=table.schema):
                    return Reviews(TABLE)
                rows = conn.execute(select(table.c.seq, table.c.record).order_by(table.c.seq)).all()
        finally:
            engine.dispose()
        return _load(TABLE, [(f"{TABLE}#seq={s}", str(r).encode("utf-8")) for s, r in rows], self._key())

    def append(self, session: str, auditor: str, state: str, note: str) -> dict[str, Any]:
        from sqlalchemy import MetaData, select
        from sqlalchemy.exc import IntegrityError

        from appshell.audit.sqlsink import audit_engine

        body = _body(session, auditor, state, note)
        engine = audit_engine(self.url)
        try:
            metadata = MetaData()
            table = self._table(metadata)
            metadata.create_all(engine)
            for _ in range(5):  # a concurrent review took the same seq: chain onto it instead
                with engine.connect() as conn:
                    last = conn.execute(select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1)).first()
                record = _sealed_review(
                    self._key(create=True), body, int(last[0]) + 1 if last else 1, str(last[1]) if last else GENESIS
                )
                try:
                    with engine.begin() as conn:
                        conn.execute(
                            table.insert().values(
                                seq=record["seq"],
                                session=session,
                                hash=record["hash"],
                                record=canonical(record).decode("utf-8"),
                            )
                        )
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
