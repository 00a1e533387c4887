"""`appshell audit verify`: the chain, the seal and the end of a file sink, fast.

The common case is checked on the raw bytes, without a JSON parser: the sink
writes canonical JSON, so a record's line without its ``"hash"`` member is
exactly the text its hash was taken of, and without ``"mac"`` as well exactly
what its MAC covers. A line holding any of those keys more than once, or one
whose hash does not match its bytes, goes through the full JSON check, which
names the fault. What the fast path accepts, the JSON check would accept too for
every line the sink wrote; a line crafted to pass only the fast path would need
a valid MAC under ``--key``, and without a key any line can be forged anyway.

Verification may start from a checkpoint that an earlier verify wrote (kept by
the auditor, off the host): the record at the checkpoint must still be there,
with the same hash; the lines before it are not read again.

Beside the chain, verify checks each session's records against what a session
writes (issue 22 item 6): a statement number recorded twice, a result with no
statement before it, a second ``session_start`` or ``session_end``, records after
the end. Records forged with the current sealing key are authentic, so these are
*findings*, not chain faults: every one is named (line and session), the walk goes
on to the end, and verify fails (exit 4).
"""
# Over 350 lines: one walk with one contract (the fast path on raw bytes and the slow path that names the
# line must agree); its parallel pass merges the same state.

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from appshell.audit.records import GENESIS, digest
from appshell.audit.seal import STEP, SealState, evolve, fingerprint, state_path

__all__ = ["Report", "verify_files", "rotation_set", "Checkpoint"]


def rotation_set(path: Path) -> list[Path]:
    """The files of one chain, oldest first: ``audit.<first seq>.jsonl`` … then ``audit.jsonl``."""
    rotated = sorted(
        (
            p
            for p in path.parent.glob(f"{path.stem}.*{path.suffix}")
            if p.name[len(path.stem) + 1 : -len(path.suffix) or None].isdigit()
        ),
        key=lambda p: int(p.name[len(path.stem) + 1 : -len(path.suffix) or None]),
    )
    return [*rotated, path] if path.exists() else rotated


@dataclass
class Report:
    ok: bool
    summary: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class Checkpoint:
    """Where a verify stopped: enough to go on from there, with or without the key."""

    first_hash: str  # the hash of the first record of the file the checkpoint is in
    offset: int
    line: int
    seq: int
    hash: str
    epoch: int | None  # the next record's epoch, once records are sealed
    key: str | None  # the key of that epoch (hex), if verified with --key
    records: int

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, sort_keys=True) + "\n")
        path.chmod(0o600)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        return cls(**json.loads(path.read_text()))


class _Broken(Exception):
    pass


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "hash" in record else None


def _whole_lines(data: bytes) -> str | None:
    """What in damaged bytes is not a torn write: a whole JSON object on a line of its own, with no seal or hash."""
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        whole = i < len(lines) - 1  # ended by its own end of line
        if whole or digest(record) != record.get("hash"):
            what = "a whole JSON line" if whole else "a whole JSON object"
            return (
                f"{what} with no seal or hash (event {record.get('event')!r}), not written by appshell's sink: forged"
            )
    return None


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_ZEROS = bytes(32)
_sha256 = hashlib.sha256
_STATEMENT, _RESULT = b"statement", b"result"  # most records' events (run() tells them apart by identity)


def _hmac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) under a 32-byte key, as two SHA-256 calls.

    The same bytes as ``hmac.digest(key, data, "sha256")`` (tested), at less cost per call: under
    OpenSSL 3 each ``hmac.digest`` fetches the MAC anew, and verify calls it once per record.
    """
    padded = key + _ZEROS  # a key shorter than SHA-256's 64-byte block is padded with zeros
    return _sha256(padded.translate(_OPAD) + _sha256(padded.translate(_IPAD) + data).digest()).digest()


class _Session:
    """What verify keeps of one session while it is open: the numbers its statements and results used."""

    __slots__ = ("started", "first_is_start", "statements", "results", "unmatched")

    def __init__(self, first_is_start: bool) -> None:
        self.started = False
        self.first_is_start = first_is_start
        self.statements: set[int] = set()
        self.results: set[int] = set()
        self.unmatched: set[int] = set()  # results whose statement may be before where this walk began


MAX_FINDINGS = 100  # named one by one; beyond, counted


class _Sessions:
    """Per-session order checks over the records of one walk (issue 22 item 6).

    Sessions interleave in a file, so the state is keyed by session id. Memory: the statement
    and result numbers of each session open at that point of the file (dropped at its
    ``session_end``), and the id and end line of each ended session — on the 1,000,000-record
    bench log (sessions of 100 records) about 2 MB; at worst, one session of N statements, a
    set of N numbers (~60 bytes each).

    *partial*: the walk does not start at the beginning of the log (a checkpoint, or one part
    of a parallel pass), so a session first seen without its ``session_start`` may have its
    statements before; its results are kept aside (``unmatched``), not flagged. *part*: one
    part of a parallel pass, whose sessions :func:`_merge_sessions` checks against the others'.
    """

    def __init__(self, partial: bool = False, part: bool = False) -> None:
        self.partial = partial or part
        self.part = part
        self.open: dict[bytes, _Session] = {}
        self.ended: dict[bytes, tuple[Path, int]] = {}
        self.closed: list[tuple[bytes, _Session]] = []  # partial only: sessions that ended here but began before
        self.findings: list[str] = []
        self.count = 0

    def _find(self, path: Path, number: int, session: bytes, what: str) -> None:
        self.count += 1
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(f"{path}:{number}: session {session.decode('utf-8', 'replace')}: {what}")

    def record(self, path: Path, number: int, session: bytes, event: bytes, n: object) -> None:
        ended = self.ended.get(session)
        if ended is not None:
            at = f"{ended[0]}:{ended[1]}"
            if event == b"session_end":
                self._find(path, number, session, f"a second session_end (the first is at {at}): a session ends once")
            else:
                self._find(
                    path,
                    number,
                    session,
                    f"a {event.decode('utf-8', 'replace')} record after the session's session_end at {at}",
                )
            return
        s = self.open.get(session)
        if s is None:
            s = self.open[session] = _Session(event == b"session_start")
        if event == b"statement" or event == b"result":
            if type(n) is not int:
                self._find(path, number, session, f"a {event.decode()} record without a statement number")
            elif event == b"statement":
                if n in s.statements:
                    self._find(path, number, session, f"a second statement n={n}: appshell numbers each statement once")
                s.statements.add(n)
            elif n in s.results:
                self._find(path, number, session, f"a second result for statement n={n}")
            else:
                s.results.add(n)
                if n not in s.statements:
                    if self.partial and not s.first_is_start:
                        s.unmatched.add(n)
                    else:
                        self._find(
                            path, number, session, f"a result for statement n={n}, with no statement n={n} before it"
                        )
        elif event == b"session_start":
            if s.started:
                self._find(path, number, session, "a second session_start")
            s.started = True
        elif event == b"session_end":
            del self.open[session]
            self.ended[session] = (path, number)
            if self.part and not s.first_is_start:
                self.closed.append((session, s))

    def summary(self) -> tuple[Any, ...]:
        """A part's sessions, for :func:`_merge_sessions`: ids begun and ended here, those ended here that
        began before, those still open."""
        began_before = {sid for sid, _ in self.closed}
        contained = [sid for sid in self.ended if sid not in began_before]
        return contained, self.closed, list(self.open.items())


def _merge_sessions(parts: list[tuple[Any, ...]]) -> bool:
    """Do the parts' sessions, taken in order, agree with one walk finding nothing? False on any doubt."""
    open_: dict[bytes, _Session] = {}
    ended: set[bytes] = set()
    for contained, closed, still_open in parts:
        for sid in contained:
            if sid in open_ or sid in ended:
                return False
            ended.add(sid)
        for sid, s, is_end in [*((c, s, True) for c, s in closed), *((o, s, False) for o, s in still_open)]:
            if sid in ended:
                return False
            before = open_.get(sid)
            if before is None:
                if s.unmatched:
                    return False
                before = open_[sid] = s
            else:
                if (
                    (s.started and before.started)
                    or s.statements & before.statements
                    or s.results & before.results
                    or not s.unmatched <= before.statements
                ):
                    return False
                before.statements |= s.statements
                before.results |= s.results
                before.started = before.started or s.started
            if is_end:
                del open_[sid]
                ended.add(sid)
    return True


class _Walk:
    """The state of one verification, line by line."""

    def __init__(self, key: bytes | None, start: Checkpoint | None) -> None:
        self.key0 = key
        self.prev_b = (
            GENESIS.encode()
        )  # the last record's hash, as the bytes of its line (the fast path compares bytes)
        self.seq, self.records = 0, 0
        self.epoch: int | None = None  # the next sealed record's epoch; None until one is seen
        self.key = key
        self.last_key: bytes | None = None
        self.unsealed = 0  # records before sealing began
        self.warnings: list[str] = []
        self.damage: tuple[str, int, bytearray] | None = None  # where, offset, bytes
        self.last: tuple[Path, int] | None = None  # the last whole record: file and line
        self.last_end = 0  # and the offset after it
        self.sessions = _Sessions(partial=start is not None)
        self.lines, self.offset = 0, 0  # where run() stopped
        if start is not None:
            self.prev, self.seq, self.records, self.epoch = start.hash, start.seq, start.records, start.epoch
            if start.key is not None:
                self.key = bytes.fromhex(start.key)
            elif key is not None and start.epoch is not None:
                for _ in range(start.epoch):  # the checkpoint was made without the key: step up to it
                    self.key = evolve(self.key or b"")

    @property
    def prev(self) -> str:
        return self.prev_b.decode()

    @prev.setter
    def prev(self, value: str) -> None:
        self.prev_b = value.encode()

    @property
    def last_where(self) -> str:
        return "the start" if self.last is None else f"{self.last[0]}:{self.last[1]}"

    def run(self, path: Path, f: Any, number: int, offset: int, end: int | None = None) -> bool:
        """Check the lines of the open file *f* from line *number* + 1 at *offset*; False at the first doubt if
        *end* is set.

        This is verify's hot loop. A canonical record is checked on its bytes, with the walk's
        state in local variables (a method call per line would cost as much as the checks): the
        line without its ``"hash"`` member is the text the hash was taken of, and without
        ``"mac"`` too, what the MAC covers. The hash member must follow the event member, where
        sorted keys put it: there it ends a member, so the line without it is the same JSON
        (found anywhere else, it could sit inside a string, and the line a reader cannot parse).
        Its ``session``, ``event`` and ``n`` are read where they cannot mean anything else to a
        JSON reader, so that a forger holding the sealing key cannot show one record to verify
        and another to ``audit show``: sorted keys put ``epoch``, ``event``, ``mac``, ``n``,
        ``prev`` and ``seq`` before ``session``, and there nothing may be nested (no ``{`` or
        ``[``), each of the three keys is in the line once (``"n" :`` and a value ``"n"`` count
        too: they only add doubt), and the line has no ``\\u`` escape, which could spell a key
        another way. Anything else — a line that is not canonical, a torn write, a fault — goes
        to :meth:`_slow`, which parses it and names the fault; with *end* (a part of a parallel
        pass), damage stops the part, and the line-by-line walk runs after.

        Every check costs: the loop is written for the fewest calls per line (about 50, and 20
        more with the key), which is why it compares slices and keeps counters in locals.
        """
        sha, step, pad, ipad, opad = _sha256, STEP, _ZEROS, _IPAD, _OPAD
        statement, result = _STATEMENT, _RESULT
        sessions = self.sessions
        open_ = sessions.open
        prev_b, seq, epoch, key, last_key = self.prev_b, self.seq, self.epoch, self.key, self.last_key
        # Each record takes the next seq: the lines accepted here since seq0 are seq - seq0, the last one
        # the line before the current one (a line is accepted here, or judged by _slow, which resets seq0).
        seq0, unsealed = seq, self.unsealed
        clean = self.damage is None
        limit = end if end is not None else 1 << 63
        first = number + 1
        for number, raw in enumerate(f, first):
            if offset >= limit:
                number -= 1
                break
            i = raw.find(b',"hash":"')
            event: bytes | None = None
            if clean and i > 0 and raw[0] == 123 and raw[-2:] == b"}\n":  # 123: "{"
                # The event member right before the hash member: the two common events compared whole.
                if raw[i - 20 : i] == b',"event":"statement"':
                    event, e = statement, i - 19
                elif raw[i - 17 : i] == b',"event":"result"':
                    event, e = result, i - 16
                else:
                    e = raw.rfind(b'"event":"', 0, i)
                    if e > 0 and raw[e - 1] in b",{" and raw.find(b'"', e + 9, i) == i - 1:
                        event = raw[e + 9 : i - 1]
                        if event == statement:  # (the first key, in an unsealed record)
                            event = statement
                        elif event == result:
                            event = result
            if event is not None:
                hash_ = raw[i + 9 : i + 73]
                rest = raw[:i] + raw[i + 74 : -1]  # what the hash was taken of
                j = rest.find(b',"prev":"', i)
                expect = b',"prev":"%b","seq":%d,"session":"' % (prev_b, seq + 1)
                q = j + len(expect)
                qe = rest.find(b'"', q)
                session = rest[q:qe]
                if not (
                    rest[j:q] == expect
                    and raw[i + 73 : i + 75] == b'",'  # the hash's end, and the next member's
                    and sha(rest).hexdigest().encode() == hash_
                    and rest[qe + 1] == 44  # 44: ","; "source", "ts" and "v" sort after "session"
                    and rest.find(b"{", 1, q) < 0
                    and rest.find(b"[", 0, q) < 0
                    # once, or twice where a recorder's session wrote the record: {"by":"session", ...
                    and (
                        (times := rest.count(b'"session"')) == 1
                        or (times == 2 and rest.startswith(b'{"by":"session",'))
                    )
                    and rest.count(b'"event"') == 1
                    # 92: "\\"; no "\\u" escape, which could spell a key another way
                    and (92 not in rest or (92 not in session and 92 not in event and rest.find(b"\\u") < 0))
                    and rest.find(b'"torn":', q) < 0  # (a torn write's acknowledgement: _slow; "torn" > "session")
                ):
                    event = None
            if event is not None:
                a = rest.find(b',"mac":"', 0, j)
                n: int | None = None
                if event is statement or event is result:
                    # "n" sorts right after "mac" (or after "kind", unsealed), before "parent" and "prev"
                    k = a + 78 if a > 0 and rest[a + 73 : a + 78] == b',"n":' else rest.find(b',"n":', e, j) + 5
                    c = rest.find(b",", k, j + 1)
                    digits = rest[k:c]
                    if (
                        k > 4
                        and digits.isdigit()
                        and (digits[0] != 48 or c == k + 1)  # 48: "0"
                        and rest.count(b'"n"') == 1
                    ):
                        n = int(digits)
                    else:
                        event = None
                if event is None:
                    pass
                elif a < 0:
                    if epoch is None:
                        unsealed += 1
                    else:
                        event = None  # unsealed after sealed: the JSON check says so
                else:
                    now = epoch or 0
                    # "epoch" sorts before "event": the first "epoch" there, after "{" or ",".
                    g = rest.find(b'"epoch":', 0, e)
                    if not (g > 0 and rest.startswith(b'"epoch":%d,' % now, g) and rest[g - 1] in b",{"):
                        event = None
                    elif key is not None:
                        padded = key + pad  # HMAC-SHA256 (RFC 2104), as _hmac(), inlined
                        inner = sha(padded.translate(ipad) + rest[:a] + rest[a + 73 :]).digest()
                        # (==, not compare_digest: verify runs offline, no one times it)
                        if sha(padded.translate(opad) + inner).hexdigest().encode() == rest[a + 8 : a + 72]:
                            last_key, key = key, sha(step + key).digest()  # evolve(), inlined
                        else:
                            event = None
                    if event is not None:
                        epoch = now + 1
            if event is not None:
                prev_b, seq = hash_, seq + 1
                offset += len(raw)
                s = open_.get(session)
                # The common case inline: a statement or result of an open session, numbered as it should be.
                if s is None or (event is not statement and event is not result):
                    sessions.record(path, number, session, event, n)
                elif event is statement:
                    if n in s.statements:
                        sessions.record(path, number, session, event, n)
                    else:
                        s.statements.add(n)  # type: ignore[arg-type]
                elif n in s.results or n not in s.statements:
                    sessions.record(path, number, session, event, n)
                else:
                    s.results.add(n)  # type: ignore[arg-type]
                continue
            self.prev_b, self.seq, self.epoch, self.key, self.last_key = prev_b, seq, epoch, key, last_key
            self.records, self.unsealed = self.records + seq - seq0, unsealed
            if seq != seq0:
                self.last, self.last_end = (path, number - 1), offset
            self._slow(path, number, offset, raw)  # names the fault, if there is one
            if end is not None and self.damage is not None:
                return False  # damage in a part: the line-by-line walk judges it
            offset += len(raw)
            prev_b, seq, epoch, key, last_key = self.prev_b, self.seq, self.epoch, self.key, self.last_key
            seq0, unsealed = seq, self.unsealed
            clean = self.damage is None
        self.prev_b, self.seq, self.epoch, self.key, self.last_key = prev_b, seq, epoch, key, last_key
        self.records, self.unsealed = self.records + seq - seq0, unsealed
        if seq != seq0:
            self.last, self.last_end = (path, number), offset
        self.lines, self.offset = number, offset
        return True

    def _slow(self, path: Path, number: int, offset: int, raw: bytes) -> None:
        where = f"{path}:{number}"
        complete = raw.endswith(b"\n")
        line = raw[:-1] if complete else raw
        record = _parse(line) if complete else None
        if record is None:
            if self.damage is None:
                self.damage = (where, offset, bytearray())
            self.damage[2].extend(raw)
            if not complete:
                return  # the end of the file: judged in finish()
            return
        self._torn(where, record)
        if digest(record) != record["hash"]:
            raise _Broken(f"{where}: hash mismatch — the record was edited after it was written")
        if record.get("prev") != self.prev or record.get("seq") != self.seq + 1:
            raise _Broken(
                f"{where}: chain broken (prev/seq do not follow the record before) — a record before it was deleted, "
                "inserted or reordered"
            )

        def mac_input() -> bytes:
            return json.dumps(
                {k: v for k, v in record.items() if k not in ("mac", "hash")},
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
                default=str,
            ).encode()

        epoch = record.get("epoch") if isinstance(record.get("epoch"), int) else None
        self._sealed(where, epoch if "mac" in record else None, record.get("mac"), mac_input, record["seq"])
        self.prev, self.seq, self.records, self.last = record["hash"], record["seq"], self.records + 1, (path, number)
        self.last_end = offset + len(raw)
        session, event = record.get("session"), record.get("event")
        if isinstance(session, str) and isinstance(event, str):
            self.sessions.record(
                path,
                number,
                session.encode("utf-8", "surrogatepass"),
                event.encode("utf-8", "surrogatepass"),
                record.get("n"),
            )

    def _torn(self, where: str, record: dict[str, Any]) -> None:
        """Damage before this record must be the damage this record acknowledges, byte for byte."""
        torn = record.get("torn")
        if self.damage is None:
            if torn is not None:
                raise _Broken(
                    f"{where}: the record acknowledges a torn write of {torn.get('bytes')} bytes that is not in the "
                    "file — bytes were removed"
                )
            return
        at, offset, data = self.damage
        self.damage = None
        if not isinstance(torn, dict) or torn.get("offset") != offset:
            raise _Broken(f"{at}: not a JSON record — the line was edited or damaged")
        size = torn.get("bytes")
        if (
            not isinstance(size, int)
            or data[size:] not in (b"", b"\n")
            or hashlib.sha256(data[:size]).hexdigest() != torn.get("sha256")
        ):
            raise _Broken(
                f"{at}: damaged bytes that differ from the torn write line {where.rsplit(':', 1)[-1]} acknowledges — "
                "edited after the crash"
            )
        forged = _whole_lines(bytes(data[:size]))
        if forged is not None:
            raise _Broken(
                f"{at}: {forged} — a torn write is only a partial line; {where} acknowledges it as torn, "
                "but whole lines were appended to the log by hand"
            )
        self.warnings.append(
            f"{at}: torn write ({size} bytes): a crash cut this write; acknowledged by {where}, which hashes its bytes"
        )

    def _sealed(self, where: str, epoch: int | None, mac: str | None, mac_input: Any, seq: int) -> None:
        if mac is None or epoch is None:
            if self.epoch is not None:
                raise _Broken(
                    f"{where}: not sealed, but the records before it are — written without the sealing key (was the "
                    "sealing state removed?)"
                )
            self.unsealed += 1
            return
        expected = 0 if self.epoch is None else self.epoch
        if epoch != expected:
            missing = epoch - expected
            if missing > 0:
                raise _Broken(
                    f"{where}: sealed with epoch {epoch}, but the record before it was epoch {expected - 1} — "
                    f"{missing} sealed record(s) before it were removed"
                )
            raise _Broken(
                f"{where}: sealed with epoch {epoch}, an epoch already used before it — reordered or replayed"
            )
        if self.key is not None:
            data = mac_input()
            if not hmac.compare_digest(_hmac(self.key, data).hex(), mac):
                raise _Broken(
                    f"{where}: MAC mismatch — the record was not sealed by the key of its epoch: forged or edited"
                )
            self.last_key = self.key
            self.key = evolve(self.key)
        self.epoch = epoch + 1

    def finish(self, state: SealState | None, state_file: Path) -> None:
        if self.damage is not None:
            at, _, data = self.damage
            if not data.endswith(b"\n"):
                raise _Broken(
                    f"{at}: torn write at the end of the file ({len(data)} bytes, no end of line) — a crash cut this "
                    "write, "
                    "or the file was cut; no record acknowledges it yet"
                )
            raise _Broken(
                f"{at}: {_whole_lines(bytes(data)) or 'not a JSON record'} — the line was edited, damaged or forged"
            )
        if self.key0 is None:
            return
        if state is None:
            if self.epoch is None:
                raise _Broken(
                    f"no record is sealed and there is no sealing state at {state_file} — set it up with `appshell "
                    "audit init`"
                )
            raise _Broken(
                f"the sealing state {state_file} is missing: records after {self.last_where} may have been cut off "
                "(check with --witness)"
            )
        if state.fingerprint != fingerprint(self.key0):
            raise _Broken(f"the sealing state {state_file} was made for another verification key — replaced")
        expected = self.epoch or 0
        if state.epoch == expected - 1 and self.last_key is not None and hmac.compare_digest(state.key, self.last_key):
            self.warnings.append(
                f"the key that sealed {self.last_where} is still in {state_file}: a crash came between the record "
                "and the key step; the next append erases it (until then that record is not forward-secure)"
            )
            return
        if state.epoch < expected:
            raise _Broken(
                f"the sealing state {state_file} is at epoch {state.epoch}, behind the log's last record — restored "
                "from an old copy?"
            )
        if state.epoch - expected > MAX_STEPS:  # never a hang on a forged state (issue 22 item 11)
            raise _Broken(
                f"the sealing state {state_file} claims {state.epoch - expected:,} sealed record(s) after "
                f"{self.last_where}: "
                f"not checked (over {MAX_STEPS:,} key steps) — a forged state, or a log cut by that much"
            )
        key = self.key or b""
        for _ in range(state.epoch - expected):
            key = evolve(key)
        if not hmac.compare_digest(key, state.key):
            raise _Broken(
                f"the sealing state's key does not derive from this verification key — {state_file} was forged"
            )
        if state.epoch > expected:
            raise _Broken(
                f"the log was cut: the sealing state has sealed {state.epoch - expected} record(s) after "
                f"{self.last_where} "
                f"(seq {self.seq}) that are not in the file"
            )
        if self.epoch is not None and (state.seq, state.hash) != (self.seq, self.prev):
            raise _Broken(
                f"the last sealed record (seq {state.seq}) is not the last record in the file (seq {self.seq}) — "
                "replaced"
            )


def _open_files(files: list[Path], start: Checkpoint | None) -> Iterator[tuple[Path, BinaryIO, int, int]]:
    """(file, the file open, line number and offset to go on from) over the set, from the checkpoint on."""
    begun = start is None
    for path in files:
        offset, number = 0, 0
        with path.open("rb") as f:
            if not begun and start is not None:
                first = _parse(f.readline().rstrip(b"\n"))
                if first is None or first.get("hash") != start.first_hash:
                    continue
                begun = True
                f.seek(start.offset)
                offset, number = start.offset, start.line
            else:
                begun = True
            yield path, f, number, offset
    if not begun:
        raise _Broken(
            "the checkpoint's file is not in the log any more — the log was replaced; verify from the start (without "
            "--checkpoint)"
        )


def _check_checkpoint(files: list[Path], start: Checkpoint) -> None:
    """The record the checkpoint ends at must still be there, with the same hash."""
    from appshell.audit.filesink import read_tail

    for path in files:
        with path.open("rb") as f:
            first = _parse(f.readline().rstrip(b"\n"))
            if first is None or first.get("hash") != start.first_hash:
                continue
            last, end, _ = read_tail(f.fileno(), min(start.offset, os.fstat(f.fileno()).st_size))
            if last is None or end != start.offset or last.get("hash") != start.hash or digest(last) != start.hash:
                raise _Broken(
                    f"{path}: the record at the checkpoint (seq {start.seq}) was changed or removed since it was "
                    "verified"
                )
            return


MAX_STEPS = 10_000_000  # key steps verify takes to reach a sealing state's epoch (~10 s): more is refused, not hung on
PARALLEL_MIN = 64 << 20  # files at least this big are first checked by one process per CPU
STEP_COST = 0.06  # a key step's cost, as a share of checking one sealed record (measured: ~0.6 µs of ~10)


def _range_worker(args: tuple[str, int, int, str, int, int | None, str | None]) -> tuple[Any, ...] | None:
    """The fast path over the lines in [begin, end) of a file, from the given chain state; None on any doubt."""
    name, begin, end, prev, seq, epoch, key0 = args
    if epoch is not None and epoch > seq:
        # A record's epoch never exceeds its seq: a forged one; the line-by-line walk names it, without stepping to it.
        return None
    k0 = bytes.fromhex(key0) if key0 is not None else None
    walk = _Walk(k0, None)
    walk.prev, walk.seq, walk.epoch = prev, seq, epoch
    walk.sessions = _Sessions(part=True)  # sessions begun before this part are merged by _merge_sessions
    if k0 is not None and epoch is not None:
        key = k0
        for _ in range(epoch):
            key = _sha256(STEP + key).digest()  # evolve(), inlined: this is the part's head start
        walk.key = key
    with open(name, "rb") as f:
        f.seek(begin)
        try:
            if not walk.run(Path(name), f, 0, begin, end):
                return None
        except _Broken:
            return None  # the line-by-line walk names it
    if walk.sessions.count:
        return None  # a session finding: the walk names it, with its line
    lines, offset = walk.lines, walk.offset
    key_hex = walk.key.hex() if walk.key is not None else None
    last_key = walk.last_key.hex() if walk.last_key is not None else None
    return (
        walk.prev,
        walk.seq,
        walk.epoch,
        key_hex,
        last_key,
        walk.records,
        walk.unsealed,
        lines,
        offset,
        walk.sessions.summary(),
    )


def _worker_signals() -> None:
    """A part's process ends on SIGTERM, whatever handler the command installed before the fork.

    The pool ends its processes with SIGTERM; one that inherited a Python-level handler (the CLI
    ends a session cleanly on SIGTERM) and waits in a C call for its next task never runs it, and
    the pool's join would wait for it for ever.
    """
    import signal

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)


def _cuts(size: int, workers: int, keyed: bool) -> list[int]:
    """Where to cut a file of *size* bytes for *workers* parts (approximate offsets, before moving to a line end).

    With the key, part i first steps k0 up to its first epoch (sequential SHA-256 calls): the later
    parts get fewer records, so that every part ends at about the same time. Part i starts at
    s_i = T(1 - (1 - r)^i)/r of the file, r the cost of a step per record checked, T = r/(1 - (1 - r)^n).
    """
    r = STEP_COST if keyed else 0.0
    if r == 0.0:
        return [size * i // workers for i in range(1, workers)]
    t = r / (1 - (1 - r) ** workers)
    return [int(size * t * (1 - (1 - r) ** i) / r) for i in range(1, workers)]


def _parallel(path: Path, key: bytes | None, workers: int) -> _Walk | None:
    """Split one file at line ends, check the parts at once; the chain state at each cut is the record before it.

    Returns the state after the last line, or None (a fault, a torn write, a session finding, any
    doubt): the line-by-line walk then runs, and names what it finds.
    """
    import multiprocessing

    from appshell.audit.filesink import read_tail

    size = path.stat().st_size
    bounds = [0]
    inits: list[tuple[str, int, int | None]] = [(GENESIS, 0, None)]
    with path.open("rb") as f:
        for approx in _cuts(size, workers, key is not None):
            f.seek(approx)
            f.readline()
            cut = f.tell()
            if cut >= size or cut <= bounds[-1]:
                return None
            record, ends, damage = read_tail(f.fileno(), cut)
            if record is None or ends != cut or damage:
                return None
            sealed = "mac" in record and isinstance(record.get("epoch"), int)
            bounds.append(cut)
            inits.append((str(record["hash"]), int(record["seq"]), record["epoch"] + 1 if sealed else None))
    bounds.append(size)
    jobs = [
        (str(path), bounds[i], bounds[i + 1], *inits[i], key.hex() if key is not None else None) for i in range(workers)
    ]
    with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_signals) as pool:
        results = pool.map(_range_worker, jobs, chunksize=1)
    for i, result in enumerate(results):
        if result is None or (i + 1 < workers and tuple(result[:3]) != inits[i + 1]):
            return None
    if not _merge_sessions([r[9] for r in results if r is not None]):
        return None
    last = results[-1]
    assert last is not None  # checked above
    prev, seq, epoch, key_hex, last_key, _, _, _, end, _ = last
    walk = _Walk(key, None)
    walk.prev, walk.seq, walk.epoch = prev, seq, epoch
    walk.key = bytes.fromhex(key_hex) if key_hex is not None and key is not None else None
    walk.last_key = bytes.fromhex(last_key) if last_key is not None else None
    walk.records = sum(r[5] for r in results if r is not None)
    walk.unsealed = sum(r[6] for r in results if r is not None)
    lines = sum(r[7] for r in results if r is not None)
    if lines:
        walk.last, walk.last_end = (path, lines), end
    return walk


def _findings(walk: _Walk) -> tuple[str, list[str]]:
    """The session findings as a verdict (the first) and warnings (the rest)."""
    found = walk.sessions
    first, *rest = found.findings
    more = found.count - len(found.findings)
    if more:
        rest.append(f"… and {more} more finding(s) like these, not listed")
    summary = (
        f"{first} — {found.count} record(s) that no appshell session writes: forged (if sealed, by someone "
        f"who held the sealing key of its epoch), or written by hand; see them with `appshell audit show SESSION`"
    )
    return summary, rest


def verify_files(path: Path, key: bytes | None = None, checkpoint: Path | None = None) -> Report:
    """Verify the chain of *path* and the files rotated before it, and each session's records."""
    files = rotation_set(path)
    start = Checkpoint.load(checkpoint) if checkpoint is not None and checkpoint.exists() else None
    walk = _Walk(key, start)
    workers = min(4, os.cpu_count() or 1)
    checked = None
    if start is None and len(files) == 1 and workers > 1 and files[0].stat().st_size >= PARALLEL_MIN:
        checked = _parallel(files[0], key, workers)
    walk = checked or walk
    sfile = state_path(path)
    state = SealState.read(sfile) if sfile.exists() else None
    end = (0, 0)
    current: Path | None = None
    try:
        if start is not None:
            _check_checkpoint(files, start)
        if checked is None:  # the line-by-line walk, which names any fault
            for file, f, number, offset in _open_files(files, start):
                walk.run(file, f, number, offset)
        if walk.last is not None:
            current, end = walk.last[0], (walk.last_end, walk.last[1])
        walk.finish(state, sfile)
    except _Broken as broken:
        found = [f"before that: {f}" for f in walk.sessions.findings]
        return Report(False, str(broken), walk.warnings + found)
    if walk.sessions.count:
        summary, rest = _findings(walk)
        return Report(False, summary, walk.warnings + rest)
    if checkpoint is not None and current is not None:
        with current.open("rb") as f:
            first = _parse(f.readline().rstrip(b"\n"))
        if first is not None:
            Checkpoint(
                str(first["hash"]),
                end[0],
                end[1],
                walk.seq,
                walk.prev,
                walk.epoch,
                walk.key.hex() if walk.key is not None and key is not None else None,
                walk.records,
            ).save(checkpoint)
    names = ", ".join(str(p) for p in files) if len(files) > 1 else str(path)
    summary = f"{names}: {walk.records} records, chain intact"
    if start is not None:
        summary += f" (from the checkpoint at seq {start.seq}; the records before it were verified then, not now)"
    sealed = walk.records - walk.unsealed if start is None else None
    if key is not None:
        if walk.unsealed:
            summary += (
                f"; the first {walk.unsealed} records were written before sealing began and are not authenticated"
            )
        summary += (
            f"; {'every sealed record' if sealed is None else f'{sealed} sealed records'} authenticated up to "
            f"the sealing state (epoch {state.epoch if state else '?'})"
        )
    else:
        summary += "; authenticity not checked (no --key)"
    return Report(True, summary, walk.warnings)
