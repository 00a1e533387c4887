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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appshell.audit.records import GENESIS, digest
from appshell.audit.seal import SealState, evolve, fingerprint, state_path

__all__ = ["Report", "verify_files", "rotation_set", "Checkpoint"]



def rotation_set(path: Path) -> list[Path]:
    """The files of one chain, oldest first: ``audit.<first seq>.jsonl`` … then ``audit.jsonl``."""
    rotated = sorted(
        (p for p in path.parent.glob(f"{path.stem}.*{path.suffix}") if p.name[len(path.stem) + 1 : -len(path.suffix) or None].isdigit()),
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
            return f"{what} with no seal or hash (event {record.get('event')!r}), not written by appshell's sink: forged"
    return None


class _Walk:
    """The state of one verification, line by line."""

    def __init__(self, key: bytes | None, start: Checkpoint | None) -> None:
        self.key0 = key
        self.prev_b = GENESIS.encode()  # the last record's hash, as the bytes of its line (the fast path compares bytes)
        self.seq, self.records = 0, 0
        self.epoch: int | None = None  # the next sealed record's epoch; None until one is seen
        self.key = key
        self.last_key: bytes | None = None
        self.unsealed = 0  # records before sealing began
        self.warnings: list[str] = []
        self.damage: tuple[str, int, bytearray] | None = None  # where, offset, bytes
        self.last: tuple[Path, int] | None = None  # the last whole record: file and line
        self.last_end = 0  # and the offset after it
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

    def line(self, path: Path, number: int, offset: int, raw: bytes) -> None:
        if self.damage is None and raw[-1:] == b"\n" and self._fast(raw):
            self.last, self.last_end = (path, number), offset + len(raw)
            return
        self._slow(path, number, offset, raw)  # names the fault, if there is one

    def _fast(self, raw: bytes) -> bool:
        """Check a canonical line on its bytes: hash, link, seq and seal. False on any doubt, with no state changed.

        The sink writes canonical JSON, so the line without its ``"hash"`` member is
        the text the hash was taken of, and without ``"mac"`` too, what the MAC covers.
        A line crafted to pass here and not the JSON check gains nothing: without the
        key any record can be forged anyway, and with it the MAC pins every byte but
        where the ``mac`` member sits, which can only make the line the same record or
        not JSON at all.
        """
        i = raw.find(b',"hash":"')
        if i < 0:
            return False
        hash_ = raw[i + 9 : i + 73]
        rest = raw[:i] + raw[i + 74 : -1]
        # A record that acknowledges a torn write needs the damage accounting of the JSON check.
        if hashlib.sha256(rest).hexdigest().encode() != hash_ or b'"torn":' in rest:
            return False
        j = rest.find(b',"prev":"')
        if j < 0 or rest[j + 9 : j + 73] != self.prev_b:
            return False
        seq = b"%d" % (self.seq + 1)
        k = rest.find(b',"seq":', j)
        if k < 0 or not rest.startswith(seq, k + 7) or rest[k + 7 + len(seq) : k + 8 + len(seq)] not in (b",", b"}"):
            return False
        a = rest.find(b',"mac":"')
        if a < 0:
            if self.epoch is not None:
                return False  # unsealed after sealed: the JSON check says so
            self.unsealed += 1
        else:
            mac_input = rest[:a] + rest[a + 73 :]
            epoch = self.epoch or 0
            mark = b'"epoch":%d' % epoch
            e = mac_input.find(b'"epoch":')  # may be the first key: after "{", not ","
            if e <= 0 or not mac_input.startswith(mark, e) or mac_input[e + len(mark) : e + len(mark) + 1] not in (b",", b"}"):
                return False
            if self.key is not None:
                if not hmac.compare_digest(hmac.digest(self.key, mac_input, "sha256").hex().encode(), rest[a + 8 : a + 72]):
                    return False
                self.last_key, self.key = self.key, evolve(self.key)
            self.epoch = epoch + 1
        self.prev_b, self.seq, self.records = hash_, self.seq + 1, self.records + 1
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
            raise _Broken(f"{where}: chain broken (prev/seq do not follow the record before) — a record before it was deleted, inserted or reordered")
        def mac_input() -> bytes:
            return json.dumps({k: v for k, v in record.items() if k not in ("mac", "hash")}, sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False, default=str).encode()

        epoch = record.get("epoch") if isinstance(record.get("epoch"), int) else None
        self._sealed(where, epoch if "mac" in record else None, record.get("mac"), mac_input, record["seq"])
        self.prev, self.seq, self.records, self.last = record["hash"], record["seq"], self.records + 1, (path, number)
        self.last_end = offset + len(raw)

    def _torn(self, where: str, record: dict[str, Any]) -> None:
        """Damage before this record must be the damage this record acknowledges, byte for byte."""
        torn = record.get("torn")
        if self.damage is None:
            if torn is not None:
                raise _Broken(f"{where}: the record acknowledges a torn write of {torn.get('bytes')} bytes that is not in the file — bytes were removed")
            return
        at, offset, data = self.damage
        self.damage = None
        if not isinstance(torn, dict) or torn.get("offset") != offset:
            raise _Broken(f"{at}: not a JSON record — the line was edited or damaged")
        size = torn.get("bytes")
        if not isinstance(size, int) or data[size:] not in (b"", b"\n") or hashlib.sha256(data[:size]).hexdigest() != torn.get("sha256"):
            raise _Broken(f"{at}: damaged bytes that differ from the torn write line {where.rsplit(':', 1)[-1]} acknowledges — edited after the crash")
        forged = _whole_lines(bytes(data[:size]))
        if forged is not None:
            raise _Broken(f"{at}: {forged} — a torn write is only a partial line; {where} acknowledges it as torn, "
                          "but whole lines were appended to the log by hand")
        self.warnings.append(f"{at}: torn write ({size} bytes): a crash cut this write; acknowledged by {where}, which hashes its bytes")

    def _sealed(self, where: str, epoch: int | None, mac: str | None, mac_input: Any, seq: int) -> None:
        if mac is None or epoch is None:
            if self.epoch is not None:
                raise _Broken(f"{where}: not sealed, but the records before it are — written without the sealing key (was the sealing state removed?)")
            self.unsealed += 1
            return
        expected = 0 if self.epoch is None else self.epoch
        if epoch != expected:
            missing = epoch - expected
            if missing > 0:
                raise _Broken(f"{where}: sealed with epoch {epoch}, but the record before it was epoch {expected - 1} — {missing} sealed record(s) before it were removed")
            raise _Broken(f"{where}: sealed with epoch {epoch}, an epoch already used before it — reordered or replayed")
        if self.key is not None:
            data = mac_input()
            if not hmac.compare_digest(hmac.digest(self.key, data, "sha256").hex(), mac):
                raise _Broken(f"{where}: MAC mismatch — the record was not sealed by the key of its epoch: forged or edited")
            self.last_key = self.key
            self.key = evolve(self.key)
        self.epoch = epoch + 1

    def finish(self, state: SealState | None, state_file: Path) -> None:
        if self.damage is not None:
            at, _, data = self.damage
            if not data.endswith(b"\n"):
                raise _Broken(f"{at}: torn write at the end of the file ({len(data)} bytes, no end of line) — a crash cut this write, "
                              "or the file was cut; no record acknowledges it yet")
            raise _Broken(f"{at}: {_whole_lines(bytes(data)) or 'not a JSON record'} — the line was edited, damaged or forged")
        if self.key0 is None:
            return
        if state is None:
            if self.epoch is None:
                raise _Broken(f"no record is sealed and there is no sealing state at {state_file} — set it up with `appshell audit init`")
            raise _Broken(f"the sealing state {state_file} is missing: records after {self.last_where} may have been cut off (check with --witness)")
        if state.fingerprint != fingerprint(self.key0):
            raise _Broken(f"the sealing state {state_file} was made for another verification key — replaced")
        expected = self.epoch or 0
        if state.epoch == expected - 1 and self.last_key is not None and hmac.compare_digest(state.key, self.last_key):
            self.warnings.append(f"the key that sealed {self.last_where} is still in {state_file}: a crash came between the record "
                                 "and the key step; the next append erases it (until then that record is not forward-secure)")
            return
        if state.epoch < expected:
            raise _Broken(f"the sealing state {state_file} is at epoch {state.epoch}, behind the log's last record — restored from an old copy?")
        if state.epoch - expected > MAX_STEPS:  # never a hang on a forged state (issue 22 item 11)
            raise _Broken(f"the sealing state {state_file} claims {state.epoch - expected:,} sealed record(s) after {self.last_where}: "
                          f"not checked (over {MAX_STEPS:,} key steps) — a forged state, or a log cut by that much")
        key = self.key or b""
        for _ in range(state.epoch - expected):
            key = evolve(key)
        if not hmac.compare_digest(key, state.key):
            raise _Broken(f"the sealing state's key does not derive from this verification key — {state_file} was forged")
        if state.epoch > expected:
            raise _Broken(f"the log was cut: the sealing state has sealed {state.epoch - expected} record(s) after {self.last_where} "
                          f"(seq {self.seq}) that are not in the file")
        if self.epoch is not None and (state.seq, state.hash) != (self.seq, self.prev):
            raise _Broken(f"the last sealed record (seq {state.seq}) is not the last record in the file (seq {self.seq}) — replaced")


def _lines(files: list[Path], start: Checkpoint | None) -> Iterator[tuple[Path, int, int, bytes]]:
    """(file, line number, offset, raw line) over the set, from the checkpoint on."""
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
            for raw in f:
                number += 1
                yield path, number, offset, raw
                offset += len(raw)
    if not begun:
        raise _Broken("the checkpoint's file is not in the log any more — the log was replaced; verify from the start (without --checkpoint)")


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
                raise _Broken(f"{path}: the record at the checkpoint (seq {start.seq}) was changed or removed since it was verified")
            return


MAX_STEPS = 10_000_000  # key steps verify takes to reach a sealing state's epoch (~10 s): more is refused, not hung on
PARALLEL_MIN = 64 << 20  # files at least this big are first checked by one process per CPU


def _range_worker(args: tuple[str, int, int, str, int, int | None, str | None]) -> tuple[Any, ...] | None:
    """The fast path over the lines in [begin, end) of a file, from the given chain state; None on any doubt."""
    name, begin, end, prev, seq, epoch, key0 = args
    if epoch is not None and epoch > seq:
        return None  # a record's epoch never exceeds its seq: a forged one; the line-by-line walk names it, without stepping to it
    k0 = bytes.fromhex(key0) if key0 is not None else None
    walk = _Walk(k0, None)
    walk.prev, walk.seq, walk.epoch = prev, seq, epoch
    if k0 is not None and epoch is not None:
        key = k0
        for _ in range(epoch):
            key = evolve(key)
        walk.key = key
    offset, lines = begin, 0
    with open(name, "rb") as f:
        f.seek(begin)
        for raw in f:
            if offset >= end:
                break
            if raw[-1:] != b"\n" or not walk._fast(raw):
                return None
            offset += len(raw)
            lines += 1
    key_hex = walk.key.hex() if walk.key is not None else None
    last_key = walk.last_key.hex() if walk.last_key is not None else None
    return walk.prev, walk.seq, walk.epoch, key_hex, last_key, walk.records, walk.unsealed, lines, offset


def _parallel(path: Path, key: bytes | None, workers: int) -> _Walk | None:
    """Split one file at line ends, check the parts at once; the chain state at each cut is the record before it.

    Returns the state after the last line, or None (a fault, a torn write, any doubt): the
    line-by-line walk then runs, and names what it finds.
    """
    import multiprocessing

    from appshell.audit.filesink import read_tail

    size = path.stat().st_size
    bounds = [0]
    inits: list[tuple[str, int, int | None]] = [(GENESIS, 0, None)]
    with path.open("rb") as f:
        for i in range(1, workers):
            f.seek(size * i // workers)
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
    jobs = [(str(path), bounds[i], bounds[i + 1], *inits[i], key.hex() if key is not None else None) for i in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.map(_range_worker, jobs)
    for i, result in enumerate(results):
        if result is None or (i + 1 < workers and tuple(result[:3]) != inits[i + 1]):
            return None
    last = results[-1]
    assert last is not None  # checked above
    prev, seq, epoch, key_hex, last_key, _, _, _, end = last
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


def verify_files(path: Path, key: bytes | None = None, checkpoint: Path | None = None) -> Report:
    """Verify the chain of *path* and the files rotated before it."""
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
            for file, number, offset, raw in _lines(files, start):
                walk.line(file, number, offset, raw)
        if walk.last is not None:
            current, end = walk.last[0], (walk.last_end, walk.last[1])
        walk.finish(state, sfile)
    except _Broken as broken:
        return Report(False, str(broken), walk.warnings)
    if checkpoint is not None and current is not None:
        with current.open("rb") as f:
            first = _parse(f.readline().rstrip(b"\n"))
        if first is not None:
            Checkpoint(str(first["hash"]), end[0], end[1], walk.seq, walk.prev, walk.epoch,
                       walk.key.hex() if walk.key is not None and key is not None else None, walk.records).save(checkpoint)
    names = ", ".join(str(p) for p in files) if len(files) > 1 else str(path)
    summary = f"{names}: {walk.records} records, chain intact"
    if start is not None:
        summary += f" (from the checkpoint at seq {start.seq}; the records before it were verified then, not now)"
    sealed = walk.records - walk.unsealed if start is None else None
    if key is not None:
        if walk.unsealed:
            summary += f"; the first {walk.unsealed} records were written before sealing began and are not authenticated"
        summary += f"; {'every sealed record' if sealed is None else f'{sealed} sealed records'} authenticated up to the sealing state (epoch {state.epoch if state else '?'})"
    else:
        summary += "; authenticity not checked (no --key)"
    return Report(True, summary, walk.warnings)
