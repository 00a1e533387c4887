"""The review page on a 1,000,000-record log (issue 14: the list page answers in ≤ 1 s).

Builds a sealed log of N records in sessions of 100 with its session index
(helper ``build`` of bench_audit_scale.py), adds 200 reviews, then times
requests to the app in-process (Starlette TestClient: the whole ASGI stack,
without the network), each against a fresh app — cold: nothing cached but the
OS page cache — and again on the same app (warm):

- ``GET /`` (the newest 50 sessions, with their chain state), with and without ``--key`` (and
  with it after the keys were derived, as the server does in the background at start);
- ``GET /?before=…`` (a page in the middle of the log);
- a start-fact filter that matches nothing (it reads every session's start line) and a text
  search that matches one session (one byte scan of the file, then that session);
- ``GET /session/ID`` of an early session, with ``--key``;
- ``Catalog.warm()`` (what the server does in the background at start).

    .venv/bin/python bench/bench_review.py [--records 1000000] [--dir /var/tmp]
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_audit_scale import big_log, build, warm  # noqa: E402  (the builder of a sealed log)

from appshell.audit.index import rebuild  # noqa: E402
from appshell.audit.reviews import reviews_path, FileReviews  # noqa: E402
from appshell.audit.seal import format_key  # noqa: E402

TOKEN = "bench-token-0123456789"


def client(log: Path, key: bytes | None = None) -> Any:
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

    from appshell.cli.review_web.app import create_app
    from appshell.cli.review_web.cli import build_config, parser

    args = ["--log", str(log)] + (["--key", format_key(key)] if key else [])
    config = build_config(parser().parse_args(args), {"APPSHELL_REVIEW_TOKENS": f"bench:{TOKEN}"})
    config.warm = False
    app = create_app(config)
    return TestClient(app), app


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def get(c: Any, url: str) -> Any:
    response = c.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return response


def main() -> None:
    with big_log(__doc__.splitlines()[0]) as (records, log, k0):
        started = time.perf_counter()
        build(log, records, k0)
        sessions = rebuild(log)
        os.environ["APPSHELL_REVIEW_KEY_FILE"] = str(log.parent / "review.key")  # the review server's key, here
        reviews = FileReviews(reviews_path(log))
        for i in range(200):
            reviews.append(f"{sessions - 1 - i * 7:016x}", "bench", "reviewed" if i % 3 else "flagged", f"note {i}")
        print(f"built {records:,} sealed records ({sessions:,} sessions), {log.stat().st_size / 1e6:.0f} MB, "
              f"and 200 reviews in {time.perf_counter() - started:.1f} s")
        warm(log)
        rows: list[tuple[str, float]] = []

        def case(name: str, url: str, key: bytes | None = None, expect: str | None = None, keys_first: bool = False) -> None:
            c, app = client(log, key)
            if keys_first:  # what the server does in the background at start
                derive, _ = timed(lambda: app.state.review.ladder.key(records - 1))
                rows.append(("  deriving the keys up to the newest record", derive))
            cold, response = timed(lambda: get(c, url))
            warm, _ = timed(lambda: get(c, url))
            if expect is not None:
                assert expect in response.text, (name, expect)
            rows.append((f"{name} (cold)", cold))
            rows.append((f"{name} (warm)", warm))

        case("list page, newest 50", "/", expect="intact, not authenticated")
        case("list page, newest 50, --key", "/", k0, expect="intact, authenticated")
        case("list page, newest 50, --key, keys derived", "/", k0, expect="intact, authenticated", keys_first=True)
        case("list page, mid-log (before=)", f"/?before={sessions // 2}")
        case("filter user=nobody (reads every session's start)", "/?user=nobody", expect="no session matches")
        middle = records // 2 + 51  # a statement's comment in the middle of the log
        case(f"text search 'INC-{middle}' (scans the file)", f"/?q=INC-{middle}", expect=f"{middle // 100:016x}")
        case("review state flagged", "/?state=flagged", expect="flagged")
        case("session page, early session, --key", f"/session/{7:016x}", k0, expect="intact, authenticated")
        c, app = client(log)
        warm_all, _ = timed(app.state.review.catalog.warm)
        rows.append(("Catalog.warm() (background, at server start)", warm_all))
        after, _ = timed(lambda: get(c, f"/?q=INC-{middle}"))
        rows.append(("text search after warm()", after))
    for name, seconds in rows:
        print(f"{name:55s} {seconds:7.3f} s")
    print("target: the list page ≤ 1 s")


if __name__ == "__main__":
    main()
