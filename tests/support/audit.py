"""Audit logs in tests: reading a file sink's records, `appshell audit init`, verify both ways, and a statement
that forges records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from appshell.audit import verify as verify_module
from appshell.audit.verify import Report, verify_files
from support.harness import run

__all__ = ["HIDE", "audit_init", "audit_records", "both_ways"]


def both_ways(log: Path, key: bytes | None, monkeypatch: pytest.MonkeyPatch) -> Report:
    """verify_files by the line-by-line walk and by the parallel pass; they must say the same."""
    monkeypatch.setattr(verify_module, "PARALLEL_MIN", 1 << 60)
    walked = verify_files(log, key)
    monkeypatch.setattr(verify_module, "PARALLEL_MIN", 1)
    monkeypatch.setattr(verify_module.os, "cpu_count", lambda: 3)
    split = verify_files(log, key)
    monkeypatch.undo()
    assert (split.ok, split.summary, split.warnings) == (walked.ok, walked.summary, walked.warnings)
    return walked


# Issue 22 attack 1: a statement appends hash-less records of its own session (a fake statement, its result and
# a session_end), to hide what it really ran from the readers (tests/test_audit_readers.py, the review page's).
HIDE = """
import json
p = {log!r}
recs = [json.loads(l) for l in open(p)]
me = recs[-1]
sid, n = me['session'], me['n']
head = {{"v": 1, "ts": me['ts'], "session": sid}}
fake = [
    {{**head, "event": "statement", "n": n, "source": "print(count(Product))", "kind": "code"}},
    {{**head, "event": "result", "n": n, "status": "ok", "error": None, "duration_ms": 1.0, "sql": []}},
    {{**head, "event": "session_end", "status": "ok", "statements": 1, "duration_ms": 2.0}},
]
with open(p, 'a') as f:
    for r in fake:
        f.write(json.dumps(r) + "\\n")
"""


def audit_records(path: Path) -> list[dict]:  # type: ignore[type-arg]
    """Every record of a file sink, in order."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def audit_init(shop: Path, log: Path) -> str:
    """`appshell audit init` on *log*: the verification key it shows once."""
    result = run(["audit", "init", "--log", str(log)], cwd=shop)
    assert result.exit_code == 0, result.output
    found = re.search(r"verification key \(shown once, keep it off this host\): (fss1-[0-9a-f]{64})", result.stdout)
    assert found is not None, result.stdout
    return found[1]
