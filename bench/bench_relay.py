"""How much keystroke echo latency does the recorder's pty relay add over a direct pty?

A child in raw mode echoes each byte it reads, as a line editor (IPython, ptpython) does. The bench
types one key at a time and waits for its echo, three ways, in alternating rounds:

* direct: the bench holds the child's pty master (the terminal the operator would have without a
  recorder);
* relay: the bench is the operator's terminal; a driver process runs `Relay` on it and the child on
  the relay's pty, recording input (to memory: sealing is the sink's cost, measured in bench_audit);
* relay+output: the same with output recording on.

Keys cycle through "abcdefghi\\r", so one key in ten takes the flush-before-forwarding path. Prints
the median and p95 of each, the relay's added median (budget: +2 ms, issue 22) and ratio, and the
relay process's CPU time per key (user + system, from /proc: steadier than latency on a busy box).

    .venv/bin/python bench/bench_relay.py [--rounds 10] [--keys 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from appshell.recorder.relay import child_kwargs

ECHO = r"""
import os, sys, tty
tty.setraw(0)
os.write(1, b"R")
while True:
    data = os.read(0, 1024)
    if not data or b"\x1d" in data:
        break
    os.write(1, data)
"""

DRIVER = r"""
import subprocess, sys
from appshell.recorder.relay import Relay, child_kwargs
events = []
with Relay(lambda t, code, data: events.append((t, code, data)), record_output=sys.argv[1] == "1") as relay:
    proc = relay.start(lambda slave: subprocess.Popen([sys.executable, "-c", sys.argv[2]], **child_kwargs(slave)))
    relay.run(pid=proc.pid)
proc.wait()
"""

KEYS = b"abcdefghi\r"
BUDGET_MS = 2.0


def start(mode: str) -> tuple[subprocess.Popen[bytes], int]:
    """The process the bench types into, and the pty master it types on."""
    master, slave = os.openpty()
    if mode == "direct":
        argv = [sys.executable, "-c", ECHO]
    else:
        argv = [sys.executable, "-c", DRIVER, "1" if mode == "relay+output" else "0", ECHO]
    proc = subprocess.Popen(argv, **child_kwargs(slave))
    os.close(slave)
    read_exactly(master, 1)  # the child's "R": it is in raw mode and reading
    return proc, master


def read_exactly(fd: int, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = os.read(fd, n - len(got))
        if not chunk:
            raise RuntimeError("the echo child ended early")
        got += chunk
    return got


def round_trip_ms(master: int, keys: int, gap: float) -> list[float]:
    samples = []
    for i in range(keys):
        key = KEYS[i % len(KEYS) : i % len(KEYS) + 1]
        began = time.perf_counter_ns()
        os.write(master, key)
        echo = read_exactly(master, 1)
        samples.append((time.perf_counter_ns() - began) / 1e6)
        if echo != key:
            raise RuntimeError(f"typed {key!r}, the echo was {echo!r}")
        if gap:
            time.sleep(gap)
    return samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (Linux /proc), which a busy machine disturbs far less."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_round(mode: str, keys: int, gap: float) -> tuple[list[float], float]:
    """Round-trip times in ms, and the CPU seconds the process between terminal and child spent."""
    proc, master = start(mode)
    try:
        before = cpu_seconds(proc.pid) if mode != "direct" else 0.0
        samples = round_trip_ms(master, keys, gap)
        return samples, (cpu_seconds(proc.pid) - before if mode != "direct" else 0.0)
    finally:
        os.write(master, b"\x1d")
        proc.wait(timeout=10)
        os.close(master)


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--keys", type=int, default=200, help="keys typed per round")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between keys (0: as fast as echoed)")
    args = parser.parse_args(argv)

    modes = ("direct", "relay", "relay+output")
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu = dict.fromkeys(modes, 0.0)
    for r in range(args.rounds):
        for mode in modes if r % 2 == 0 else reversed(modes):
            times, seconds = run_round(mode, args.keys, args.gap)
            samples[mode] += times
            cpu[mode] += seconds

    direct = statistics.median(samples["direct"])
    keys = args.rounds * args.keys
    print(
        f"{'':14} {'median ms':>10} {'p95 ms':>8} {'added ms':>9} {'ratio':>6} {'relay CPU µs/key':>17}"
        f"   ({args.rounds}×{args.keys} keys, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})"
    )
    worst = 0.0
    for mode in modes:
        median = statistics.median(samples[mode])
        worst = max(worst, median - direct)
        print(
            f"{mode:14} {median:10.3f} {p95(samples[mode]):8.3f} {median - direct:+9.3f} {median / direct:6.2f}"
            f" {cpu[mode] / keys * 1e6:17.1f}"
        )
    verdict = "within" if worst <= BUDGET_MS else "OVER"
    print(f"the relay adds {worst:.3f} ms at the median: {verdict} the +{BUDGET_MS} ms budget")
    return 0 if worst <= BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
