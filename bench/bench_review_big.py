"""A session with a 3 MB statement and a 488 KB INSERT on the review page (issue 25 item 2: ≤ 1 s).

Times, in-process (Starlette TestClient), on a fresh app each:

- ``GET /?wrote=1`` (the list, deciding `wrote` for the session) and ``GET /session/ID``;
- beside them, what the page did before: pygments over the whole 3 MB source, and
  appshell's SQL classifier (sqlglot) over the whole INSERT.

    .venv/bin/python bench/bench_review_big.py [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from appshell.audit.filesink import FileSink
from appshell.audit.records import now_rfc3339


def build(log: Path) -> tuple[str, str, str]:
    big = "rows = [\n" + "".join(f"    ({i}, 'name {i}', {i * 3.5}),\n" for i in range(90_000)) + "]\n"
    insert = "INSERT INTO products (id, name) VALUES " + ",".join(f"({i}, 'p{i}')" for i in range(30_000))
    sid = "d" * 16
    sink = FileSink(log)
    try:
        sink.append({"ts": now_rfc3339(), "session": sid, "event": "session_start", "user": "deploy", "database": "sqlite:///x"})
        sink.append({"ts": now_rfc3339(), "session": sid, "event": "statement", "n": 1, "source": big, "kind": "script"})
        sink.append({"ts": now_rfc3339(), "session": sid, "event": "result", "n": 1, "status": "ok", "sql": [insert]})
        sink.append({"ts": now_rfc3339(), "session": sid, "event": "session_end", "status": "ok"})
    finally:
        sink.close()
    return sid, big, insert


def timed(label: str, fn: object) -> float:
    began = time.perf_counter()
    fn()  # type: ignore[operator]
    took = time.perf_counter() - began
    print(f"{label:<58} {took:8.3f} s")
    return took


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--dir", default=None)
    opts = args.parse_args()
    from starlette.testclient import TestClient

    from appshell.cli.review_web.app import Config, create_app
    from appshell.cli.review_web.auth import load_auditors
    from appshell.audit.review import Log
    from appshell.audit.reviews import FileReviews

    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        log = Path(tmp) / "audit.jsonl"
        sid, big, insert = build(log)
        print(f"source {len(big):,} characters, INSERT {len(insert):,} characters")
        auditors = load_auditors({"APPSHELL_REVIEW_TOKENS": "a:tok-0123456789abcdef"}, None, None)
        headers = {"Authorization": "Bearer tok-0123456789abcdef"}

        def client() -> TestClient:
            return TestClient(create_app(Config(log=Log(path=log), auditors=auditors, reviews=FileReviews(Path(tmp) / "reviews.jsonl"),
                                                warm=False)))

        c = client()
        timed("now: GET /?wrote=1 (decides wrote), fresh app", lambda: c.get("/?wrote=1", headers=headers))
        timed("now: GET /session/ID (3 MB source), fresh app", lambda: client().get(f"/session/{sid}", headers=headers))
        timed("now: GET /session/ID again (same app)", lambda: c.get(f"/session/{sid}", headers=headers))
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        from appshell.safety.statements import classify

        timed("before: pygments over the whole source (every view)", lambda: highlight(big, PythonLexer(), HtmlFormatter(nowrap=True)))
        timed("before: classify() over the whole INSERT (wrote)", lambda: classify(insert, "sqlite"))
    os.sys.stdout.flush()


if __name__ == "__main__":
    main()
