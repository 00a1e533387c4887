"""Forward-secure sealing of the audit file (the idea of systemd-journald's FSS).

``appshell audit init`` draws a random 32-byte key k0. It prints k0 once, as the
verification key, for the auditor to keep off the host; the host keeps only the
*current* key in the sealing state file (``audit.seal`` next to the log, 0600).

Every record is sealed with its own key: it carries ``epoch`` e and ``mac``,
HMAC-SHA256 under k_e of the canonical JSON of the record without ``mac`` and
``hash``. Right after the record is durable, the key takes one one-way step,
k_{e+1} = SHA-256("appshell-evolve" || k_e), and the state file is overwritten
in place with k_{e+1} and fsynced, so k_e is gone from the host. Whoever takes
the host later holds k_E for the next record only: SHA-256 cannot be run backwards,
so no earlier record can be re-sealed, and ``verify --key k0`` (which steps the
key forward itself) finds any record edited, deleted, inserted or reordered.
A cut tail is found because the state's key (its epoch) runs ahead of the last
record in the file, and the state cannot be rolled back without an old key.

Standard primitives only: ``secrets`` for the key, ``hmac``/``hashlib`` for the rest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appshell.errors import SealRefused, UsageError
from appshell.private import private_dir

__all__ = [
    "SealRefused",
    "KEY_PREFIX",
    "SealState",
    "Sealer",
    "state_path",
    "evolve",
    "record_mac",
    "parse_key",
    "format_key",
    "fingerprint",
    "init_state",
]

KEY_PREFIX = "fss1-"
STEP = b"appshell-evolve"
STATE_SIZE = 512  # the state is rewritten in place at this fixed size, so no old key bytes survive in the file


def evolve(key: bytes) -> bytes:
    """The next epoch's key: a one-way step, SHA-256 of a fixed label and the key.

    (SHA-256 rather than HMAC: the same one-wayness, at a quarter of the cost,
    which matters once per record for the writer and for `verify --key`.)
    """
    return hashlib.sha256(STEP + key).digest()


def record_mac(key: bytes, record: dict[str, Any]) -> str:
    from appshell.audit.records import canonical

    return hmac.digest(key, canonical({k: v for k, v in record.items() if k not in ("mac", "hash")}), "sha256").hex()


def fingerprint(k0: bytes) -> str:
    """Names a verification key without revealing it (in the state file and in messages)."""
    return hashlib.sha256(b"appshell-fingerprint" + k0).hexdigest()[:16]


def format_key(k0: bytes) -> str:
    return KEY_PREFIX + k0.hex()


def parse_key(text: str) -> bytes:
    text = text.strip()
    if not text.startswith(KEY_PREFIX) or len(text) != len(KEY_PREFIX) + 64:
        raise UsageError(
            "the verification key is not one `appshell audit init` printed", f"pass --key {KEY_PREFIX}<64 hex digits>"
        )
    try:
        return bytes.fromhex(text[len(KEY_PREFIX) :])
    except ValueError:
        raise UsageError("the verification key is not hexadecimal", f"pass --key {KEY_PREFIX}<64 hex digits>") from None


def state_path(log: Path) -> Path:
    """The sealing state of a log: ``audit.seal`` beside ``audit.jsonl``."""
    return log.with_suffix(".seal")


@dataclass
class SealState:
    epoch: int  # the epoch of the next record
    key: bytes  # k_epoch
    seq: int  # the last sealed record's seq (0: none yet)
    hash: str  # the last sealed record's hash
    fingerprint: str

    def dump(self) -> bytes:
        data = json.dumps(
            {
                "v": 1,
                "epoch": self.epoch,
                "key": self.key.hex(),
                "seq": self.seq,
                "hash": self.hash,
                "fingerprint": self.fingerprint,
            },
            sort_keys=True,
        ).encode()
        return data + b" " * (STATE_SIZE - len(data) - 1) + b"\n"

    @classmethod
    def load(cls, data: bytes) -> SealState:
        d = json.loads(data)
        return cls(int(d["epoch"]), bytes.fromhex(d["key"]), int(d["seq"]), str(d["hash"]), str(d["fingerprint"]))

    @classmethod
    def read(cls, path: Path) -> SealState:
        return cls.load(path.read_bytes())


def init_state(log: Path) -> tuple[Path, bytes]:
    """Create the sealing state for *log*; return its path and the verification key k0."""
    from appshell.audit.records import GENESIS

    path = state_path(log)
    private_dir(path.parent)
    k0 = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never over an existing state
    try:
        os.write(fd, SealState(0, k0, 0, GENESIS, fingerprint(k0)).dump())
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path, k0


class Sealer:
    """The file sink's half of sealing; called under the sink's file lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR)

    def read(self) -> SealState:
        return SealState.load(os.pread(self.fd, STATE_SIZE, 0))

    def catch_up(self, state: SealState, last: dict[str, Any] | None) -> SealState:
        """After a crash between a record and its key step, the record is durable and the step is not: take it now.

        A crash leaves exactly one step to take, for a record sealed with the state's own key. Any
        other claim — an epoch ahead of the state (``"epoch": 1000000000000`` would mean 10^12
        key steps: a hang), or a MAC the current key did not make — is a record this sealer did
        not write: refused at once, fail closed (issue 22 attack 8).
        """
        if last is None or not last.get("mac") or type(last.get("epoch")) is not int or last["epoch"] < state.epoch:
            return state
        where = f"the log's last record (seq {last.get('seq')})"
        fix = (
            "find it with `appshell audit verify --key KEY`; to go on, move the log and its sealing state aside "
            "and run `appshell audit init` (keep the old ones as evidence)"
        )
        if last["epoch"] > state.epoch:
            raise SealRefused(
                f"{where} claims sealing epoch {last['epoch']}, but the sealing state {self.path} is at epoch "
                f"{state.epoch}: it was not sealed here (forged, or the log or its state was replaced); "
                "appshell refuses to step the key to it",
                fix,
            )
        if not hmac.compare_digest(record_mac(state.key, last), str(last["mac"])):
            raise SealRefused(f"{where} is sealed with epoch {state.epoch} but not by its key: forged", fix)
        state = SealState(state.epoch + 1, evolve(state.key), int(last["seq"]), str(last["hash"]), state.fingerprint)
        self.write(state)
        return state

    def sign(self, record: dict[str, Any], state: SealState) -> None:
        """Add ``epoch`` and ``mac`` to *record* (before its hash is taken)."""
        record["epoch"] = state.epoch
        record["mac"] = record_mac(state.key, record)

    def step(self, state: SealState, record: dict[str, Any]) -> None:
        """The record is durable: erase its key by overwriting the state with the next one."""
        self.write(
            SealState(state.epoch + 1, evolve(state.key), int(record["seq"]), str(record["hash"]), state.fingerprint)
        )

    def write(self, state: SealState) -> None:
        os.pwrite(self.fd, state.dump(), 0)
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)
