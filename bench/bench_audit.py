"""Per-statement cost of the audit log: file sink, fsync on every record.

Runs N statements through the journal with an auditor writing to a real
file (statement record fsynced before, result record after), and the same
N statements through a journal with no audit sink, side by side. Prints the
median per-statement cost of each and of the difference (target ≤ 2 ms).

    .venv/bin/python bench/bench_audit.py [--statements 2000] [--sealed]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from appshell.audit.auditor import Auditor
from appshell.audit.sinks import FileSink
from appshell.record.journal import Journal
from appshell.config.redact import Redactor


def per_statement(journal: Journal, count: int) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        with journal.statement(f"order = find(Order, {i}); order.status = 'paid'"):
            pass
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=2000)
    parser.add_argument("--sealed", action="store_true", help="with forward-secure sealing (appshell audit init)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.jsonl"
        if opts.sealed:
            from appshell.audit.seal import init_state

            init_state(path)
        auditor = Auditor([FileSink(path)], required=True, redact=Redactor(["s3cr3t-value"], [r"card=\d+"]))
        auditor.start({"mode": "bench"})
        audited, bare = Journal([auditor]), Journal()
        a, b = [], []
        for _ in range(opts.statements // 100):  # interleave in blocks: the same disk weather for both
            a += per_statement(audited, 100)
            b += per_statement(bare, 100)
        auditor.end("ok")
        size = path.stat().st_size
    print(f"statements: {len(a)}, audit file: {size / 1024:.0f} KiB{', sealed' if opts.sealed else ''}")
    print(f"audited   median {statistics.median(a) * 1000:.3f} ms/statement (p95 {sorted(a)[int(len(a) * .95)] * 1000:.3f} ms)")
    print(f"no audit  median {statistics.median(b) * 1000:.3f} ms/statement")
    print(f"cost of auditing: {(statistics.median(a) - statistics.median(b)) * 1000:.3f} ms/statement (target ≤ 2 ms)")


if __name__ == "__main__":
    main()
