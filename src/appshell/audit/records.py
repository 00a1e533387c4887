"""Audit records: canonical JSON and the hash chain.

Every record carries ``v``, ``seq``, ``ts``, ``session``, ``event``, ``prev``
and ``hash``; ``hash`` is the sha256 of the canonical JSON of the record
without ``hash``, and ``prev`` is the previous record's ``hash`` in the same
file (or table), so the whole file is one chain.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

__all__ = ["VERSION", "GENESIS", "canonical", "digest", "seal", "now_rfc3339"]

VERSION = 1
GENESIS = "0" * 64  # the `prev` of a chain's first record


def canonical(record: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same bytes for the same record, in any tool."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def now_rfc3339() -> str:
    """UTC with microseconds, e.g. 2026-11-24T01:02:03.456789Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seal(body: dict[str, Any], seq: int, prev: str) -> dict[str, Any]:
    """The record for *body* as the next link of a chain ending at (seq - 1, prev)."""
    record = {"v": VERSION, "seq": seq, **body, "prev": prev}
    record["hash"] = digest(record)
    return record
