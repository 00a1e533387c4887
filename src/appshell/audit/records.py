"""Audit records: canonical JSON and the hash chain.

Every record carries ``v``, ``seq``, ``ts``, ``session``, ``event``, ``prev``
and ``hash``; ``hash`` is the sha256 of the canonical JSON of the record
without ``hash``, and ``prev`` is the previous record's ``hash`` in the same
chain (a file and the files rotated before it; one session in an SQL table).
A sealed record also carries ``epoch`` and ``mac`` (see :mod:`appshell.audit.seal`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "VERSION",
    "GENESIS",
    "CHAIN_FIELDS",
    "canonical",
    "digest",
    "seal",
    "now_rfc3339",
    "encodable",
    "body_digest",
]

VERSION = 1
GENESIS = "0" * 64  # the `prev` of a chain's first record
# Fields a sink adds around the auditor's body: the rest is the same in every sink (see body_digest).
CHAIN_FIELDS = frozenset({"v", "seq", "prev", "hash", "epoch", "mac", "torn"})


def canonical(record: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same bytes for the same record, in any tool."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def body_digest(record: dict[str, Any]) -> str:
    """The sha256 of what the auditor wrote, without what one sink added: equal in every sink."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k not in CHAIN_FIELDS})).hexdigest()


def now_rfc3339() -> str:
    """UTC with microseconds, e.g. 2026-11-24T01:02:03.456789Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seal(body: dict[str, Any], seq: int, prev: str) -> dict[str, Any]:
    """The record for *body* as the next link of a chain ending at (seq - 1, prev)."""
    record = {"v": VERSION, "seq": seq, **body, "prev": prev}
    record["hash"] = digest(record)
    return record


def _escape(text: str) -> str | None:
    """*text* as UTF-8 that keeps every original byte, or None if it is UTF-8 already.

    Text that came from non-UTF-8 bytes (stdin, argv, file names: Python holds
    them as lone surrogates, ``surrogateescape``) cannot be written as UTF-8.
    Each such byte becomes ``\\xNN`` and each backslash ``\\\\``, so the field
    decodes back to the exact bytes: nothing is dropped, nothing is ambiguous.
    """
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes Python decoded
    except UnicodeEncodeError:  # surrogates that came from elsewhere (e.g. '\ud800' in code)
        raw = text.encode("utf-8", "surrogatepass")
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def _encodable(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str):
        escaped = _escape(value)
        return (value, False) if escaped is None else (escaped, True)
    if isinstance(value, (list, tuple)):
        items = [_encodable(v) for v in value]
        return [v for v, _ in items], any(e for _, e in items)
    if isinstance(value, dict):
        pairs = {k: _encodable(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(e for _, e in pairs.values())
    return value, False


def encodable(body: dict[str, Any]) -> dict[str, Any]:
    """*body* with undecodable text escaped losslessly; ``undecodable`` names the fields that were.

    In a field listed in ``undecodable``, ``\\xNN`` is the byte NN and ``\\\\`` a backslash.
    """
    out: dict[str, Any] = {}
    escaped: list[str] = []
    for key, value in body.items():
        out[key], changed = _encodable(value)
        if changed:
            escaped.append(key)
    if escaped:
        out["undecodable"] = escaped
    return out
