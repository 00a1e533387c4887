"""Cost of auditing through the recorder process, side by side with the in-process auditor.

Three figures in one run, medians per operation:

* the bare channel round trip: one request, one reply, the other end a forked process that answers
  ``ok`` without writing anything (the floor of the design);
* a statement through the recorder: the ``statement`` and ``result`` reports of one statement, each
  checked, sealed to a real file sink (fsync) by a Recorder in a forked process, and acknowledged;
* the same two records written by an in-process Auditor (today's design).

    .venv/bin/python bench/bench_recorder.py [--statements 2000] [--sealed] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from appshell.audit.auditor import Auditor
from appshell.audit.sinks import FileSink
from appshell.recorder.channel import Channel, encode
from appshell.recorder.server import Frames, Recorder

try:
    from appshell.config.redact import Redactor
except ImportError:  # before the move of issue 23
    from appshell.redact import Redactor  # type: ignore[no-redef]

SOURCE = "order = find(Order, {i}); order.status = 'paid'"


def auditor_for(path: Path, sealed: bool) -> Auditor:
    if sealed and not path.exists():
        from appshell.audit.seal import init_state

        init_state(path)
    return Auditor([FileSink(path)], required=True, redact=Redactor(["s3cr3t-value"], [r"card=\d+"]))


def serve_in_child(serve: Callable[[socket.socket], None]) -> tuple[int, Channel]:
    """Fork a process serving one end of a socket pair; the channel on the other end."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        ours.close()
        try:
            serve(theirs)
        finally:
            os._exit(0)
    theirs.close()
    return pid, Channel(ours)


def echo(sock: socket.socket) -> None:
    frames, ok = Frames(1 << 22), encode({"ok": True})
    while data := sock.recv(65536):
        for _ in frames.feed(data):
            sock.sendall(ok)


def recorder(path: Path, sealed: bool) -> Callable[[socket.socket], None]:
    def serve(sock: socket.socket) -> None:
        auditor = auditor_for(path, sealed)
        auditor.start({"mode": "bench", "by": "recorder"})
        rec = Recorder(auditor, sock)
        while rec.on_readable():
            pass
        rec.end(0)

    return serve


def timed(count: int, once: Callable[[int], None]) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        once(i)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=2000)
    parser.add_argument("--sealed", action="store_true", help="with forward-secure sealing (appshell audit init)")
    parser.add_argument("--dir", help="where the logs go (default: the system's temporary folder); /dev/shm shows the CPU cost alone")
    opts = parser.parse_args()
    n = opts.statements
    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        pid, bare = serve_in_child(echo)
        rtt = timed(n * 2, lambda i: bare.request("statement", {"n": i + 1, "source": SOURCE}).clear())
        bare.close()
        os.waitpid(pid, 0)

        pid, channel = serve_in_child(recorder(Path(tmp) / "recorded.jsonl", opts.sealed))
        channel.request("session_start", {"app": "bench"})

        def through_recorder(i: int) -> None:
            channel.request("statement", {"n": i + 1, "source": SOURCE.format(i=i), "kind": "code"})
            channel.request("result", {"n": i + 1, "status": "ok", "error": None, "duration_ms": 0.1, "sql": []})

        auditor = auditor_for(Path(tmp) / "inprocess.jsonl", opts.sealed)
        auditor.start({"mode": "bench"})

        def in_process(i: int) -> None:
            auditor._write("statement", {"n": i + 1, "source": SOURCE.format(i=i), "kind": "code"})
            auditor._write("result", {"n": i + 1, "status": "ok", "error": None, "duration_ms": 0.1, "sql": []})

        recorded: list[float] = []
        local: list[float] = []
        for block in range(0, n, 50):  # interleaved in blocks: the same disk weather for both
            recorded += timed(50, lambda i: through_recorder(block + i))
            local += timed(50, lambda i: in_process(block + i))
        channel.close()
        os.waitpid(pid, 0)
        auditor.end("ok")

    med = {k: statistics.median(v) * 1e6 for k, v in (("rtt", rtt), ("recorded", recorded), ("local", local))}
    p95 = sorted(recorded)[int(len(recorded) * 0.95)] * 1e6
    print(f"statements: {n}{', sealed' if opts.sealed else ''}; medians")
    print(f"bare channel round trip          {med['rtt']:8.1f} µs")
    print(f"statement via recorder (2 recs)  {med['recorded']:8.1f} µs   (p95 {p95:.1f} µs; target ≤ 2000 µs)")
    print(f"statement in-process   (2 recs)  {med['local']:8.1f} µs")
    print(f"ratio recorder / in-process      {med['recorded'] / med['local']:8.2f}×")
    print(f"round trips / statement cost     {2 * med['rtt'] / med['recorded']:8.1%} of the recorded statement")


if __name__ == "__main__":
    main()
