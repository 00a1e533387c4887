"""Scale of the audit file (issue 10 item 6): a 1,000,000-record log, measured as ratios in one run.

Builds a sealed log of N records (default 1,000,000, ~480 MB) in sessions of
100 records, with its session index and sealing state, then measures, each in
a fresh `appshell audit` process:

- ``sha256sum`` of the file (the disk-hash baseline);
- ``audit verify`` and ``audit verify --key`` (target: ≤ 3× sha256sum), side by side
  ``--repeat`` times (default 5): the three run one after the other in each round, so a
  busy machine slows a round's three alike; the ratio is given per round, as the median and
  the best round, with the CPU time each took (verify runs one process per CPU);
- ``audit verify --checkpoint`` after 1,000 more records (incremental);
- ``audit tail -n 5`` and ``audit show ID`` of an early session (target: ≤ 0.5 s, ≤ 100 MB).

The CPU time that other work on the machine took during the rounds is printed beside them:
verify's ratio is for an idle machine, and grows with other work (verify's parts share the
CPUs with it, where sha256sum needs one). ``--recorder`` builds the records as a session kept by the recorder
process writes them (the default wherever a profile keeps an audit): each says who wrote
it, ``"by"``.

    .venv/bin/python bench/bench_audit_scale.py [--records 1000000] [--dir /var/tmp] [--repeat 5] [--recorder]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from appshell.audit.index import rebuild
from appshell.audit.seal import SealState, evolve, fingerprint, format_key

APPSHELL = str(Path(sys.executable).with_name("appshell"))


def _canonical(record: dict[str, object]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build(path: Path, count: int, k0: bytes, start: int = 0, prev: str = "0" * 64, key: bytes | None = None,
          recorder: bool = False) -> tuple[str, bytes]:
    """Append *count* sealed records in sessions of 100, as the file sink writes them (without its fsyncs).

    *recorder*: as a session kept by the recorder process writes them (docs/audit.md), each record saying
    who wrote it: ``"by": "recorder"`` on the session's start and end, ``"by": "session"`` on its
    statements and results."""
    key = k0 if key is None else key
    by: dict[str, object] = {}
    with path.open("ab") as f:
        for i in range(start, start + count):
            session = f"{i // 100:016x}"
            k = i % 100
            if recorder:
                by = {"by": "recorder" if k in (0, 99) else "session"}
            if k == 0:
                body: dict[str, object] = {"event": "session_start", "user": "deploy", "real_user": "alice", "host": "web-1", "pid": 4242,
                                           "mode": "interactive", "shell": "ipython", "profile": "production", "reason": f"INC-{i}", **by}
            elif k == 99:
                body = {"event": "session_end", "status": "ok", "statements": 49, "duration_ms": 81234.5, **by}
            elif k % 2:
                body = {"event": "statement", "n": (k + 1) // 2, "kind": "cell",
                        "source": f"order = find(Order, {i}); order.status = 'refunded'; commit()  # INC-{i}", **by}
            else:
                body = {"event": "result", "n": k // 2, "status": "ok", "error": None, "duration_ms": 3.21,
                        "sql": ["SELECT orders.id, orders.status FROM orders WHERE orders.id = ?", "UPDATE orders SET status=? WHERE orders.id = ?"], **by}
            record: dict[str, object] = {"v": 1, "seq": i + 1, "ts": "2026-11-24T01:02:03.456789Z", "session": session, **body,
                                         "prev": prev, "epoch": i}
            record["mac"] = hmac.new(key, _canonical(record), "sha256").hexdigest()
            prev = hashlib.sha256(_canonical(record)).hexdigest()
            record["hash"] = prev
            f.write(_canonical(record) + b"\n")
            key = evolve(key)
    state = SealState(start + count, key, start + count, prev, fingerprint(k0))
    path.with_suffix(".seal").write_bytes(state.dump())
    return prev, key


def warm(path: Path) -> None:
    """Read the whole file once, so every reader measured after finds it in the page cache alike."""
    with path.open("rb") as f:
        while f.read(1 << 24):
            pass


def in_child(fn: Callable[..., object], *args: object) -> None:
    """Run *fn* in a forked child: the index rebuild maps the whole log, and a process's peak RSS
    passes to the children it spawns (until their exec), so it would be counted as theirs by rss_of."""
    pid = os.fork()
    if pid == 0:
        try:
            fn(*args)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def rss_of(args: list[str]) -> tuple[float, float]:
    """Wall time and peak RSS (MB) of a child, from wait4's rusage."""
    elapsed, mb, _ = timed(args)
    return elapsed, mb


def timed(args: list[str]) -> tuple[float, float, float]:
    """Wall time, peak RSS (MB) and CPU time (user + system, its own and its waited-for children's) of a child."""
    started = time.perf_counter()
    pid = os.posix_spawn(args[0], args, os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        print(f"  ! {' '.join(args[1:4])} exited {os.waitstatus_to_exitcode(status)}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def machine_busy() -> float:
    """CPU seconds all processes of the machine have used since it booted (Linux /proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def side_by_side(log: Path, k0: bytes, rounds: int) -> list[tuple[float, ...]]:
    """*rounds* rounds of sha256sum, verify, verify --key, one right after the other: (wall, CPU) of each."""
    out: list[tuple[float, ...]] = []
    for _ in range(rounds):
        base, _, base_cpu = timed(["/usr/bin/sha256sum", str(log)])
        plain, _, plain_cpu = timed([APPSHELL, "audit", "verify", "--log", str(log)])
        keyed, _, keyed_cpu = timed([APPSHELL, "audit", "verify", "--log", str(log), "--key", format_key(k0)])
        out.append((base, plain, keyed, base_cpu, plain_cpu, keyed_cpu))
    return out


@contextmanager
def big_log(description: str) -> Iterator[tuple[int, Path, bytes]]:
    """The command line both scale benches take (--records, --dir), and a temporary folder for the log:
    (records, the log's path, k0)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None, help="where to build the log (default: the system temp folder)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the side-by-side verify measure")
    parser.add_argument("--recorder", action="store_true", help='records as a recorder-kept session writes them ("by")')
    opts = parser.parse_args()
    global ROUNDS, RECORDER
    ROUNDS, RECORDER = opts.repeat, opts.recorder
    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        yield opts.records, Path(tmp) / "audit.jsonl", secrets.token_bytes(32)


ROUNDS = 5
RECORDER = False


def main() -> None:
    with big_log(__doc__.splitlines()[0]) as (records, log, k0):
        started = time.perf_counter()
        prev, key = build(log, records, k0, recorder=RECORDER)
        in_child(rebuild, log)
        size = log.stat().st_size
        print(f"built {records:,} sealed records{' (by the recorder)' if RECORDER else ''}, {size / 1e6:.0f} MB, "
              f"in {time.perf_counter() - started:.1f} s")
        warm(log)
        busy, started = machine_busy(), time.perf_counter()
        rounds = side_by_side(log, k0, ROUNDS)
        others = machine_busy() - busy - sum(sum(r[3:]) for r in rounds)  # the machine's, less the rounds' own
        others_share = others / (time.perf_counter() - started)
        _, plain_mb = rss_of([APPSHELL, "audit", "verify", "--log", str(log)])
        _, keyed_mb = rss_of([APPSHELL, "audit", "verify", "--log", str(log), "--key", format_key(k0)])
        base = statistics.median(r[0] for r in rounds)
        checkpoint = log.with_name("checkpoint.json")
        rss_of([APPSHELL, "audit", "verify", "--log", str(log), "--key", format_key(k0), "--checkpoint", str(checkpoint)])
        build(log, 1000, k0, start=records, prev=prev, key=key, recorder=RECORDER)
        incremental, _ = rss_of([APPSHELL, "audit", "verify", "--log", str(log), "--key", format_key(k0), "--checkpoint", str(checkpoint)])
        tail, tail_mb = rss_of([APPSHELL, "audit", "tail", "-n", "5", "--log", str(log)])
        show, show_mb = rss_of([APPSHELL, "audit", "show", f"{7:016x}", "--log", str(log)])
        startup, _ = rss_of([APPSHELL, "--version"])
    print("round  sha256sum          verify                     verify --key          (wall s, CPU s, ratio of walls)")
    for i, (b, p, k, bc, pc, kc) in enumerate(rounds, 1):
        print(f"{i:5}  {b:5.2f} s ({bc:5.2f})   {p:5.2f} s ({pc:5.2f}) {p / b:5.2f}×    {k:5.2f} s ({kc:5.2f}) {k / b:5.2f}×")
    for name, col, mb in (("audit verify", 1, plain_mb), ("audit verify --key", 2, keyed_mb)):
        ratios = [r[col] / r[0] for r in rounds]
        print(f"{name:30s} median {statistics.median(ratios):4.2f}×, best round {min(ratios):4.2f}× sha256sum  (target ≤ 3×), {mb:.0f} MB")
    print(f"(other work on the machine during the rounds: {others_share:.2f} of a CPU's time, of {os.cpu_count()} CPUs)")
    print(f"verify --checkpoint, +1000 rec {incremental:6.2f} s  = {incremental / base:4.2f}× sha256sum of the whole file")
    print(f"audit tail -n 5                {tail:6.2f} s, {tail_mb:.0f} MB  (target ≤ 0.5 s, ≤ 100 MB)")
    print(f"audit show ID                  {show:6.2f} s, {show_mb:.0f} MB  (target ≤ 0.5 s, ≤ 100 MB)")
    print(f"(appshell --version alone      {startup:6.2f} s: the interpreter's start-up, included above)")


if __name__ == "__main__":
    main()
