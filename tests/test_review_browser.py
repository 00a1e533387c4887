"""The review page in a real headless browser (issue 14): log
in, filter, open a session, flag it, reload, see the review.

Debian's ``chromium`` driven by Playwright for Python, pointed at the system
browser (no ``playwright install``), with JavaScript switched off: reading and
reviewing work without it. ``appshell audit serve`` runs as a real subprocess
on a free 127.0.0.1 port. Screenshots go to the test's tmp dir; set
``UPDATE_DOCS_SCREENSHOTS=1`` to copy the session page's to
docs/review.png (it is also written when that file is missing).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.ci import unavailable
from support.environment import clean_environ
from support.harness import run
from support.paths import APPSHELL, ROOT
from support.processes import free_port

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "alice-token-0123456789"


def _unavailable(why: str) -> None:
    unavailable(why, "the browser test (scripts/test installs chromium; pip install -e '.[test]' installs playwright)")


@pytest.fixture
def browser_ready() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; no `playwright install` needed)")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium; scripts/test does it)")


@pytest.fixture
def log(shop: Path, tmp_path: Path) -> Path:
    """Four sessions on a copy of the shop seeded once per test run
    (conftest's `shop`); the last one unlocks protected data."""
    log = tmp_path / "audit" / "audit.jsonl"
    (shop / "profiles" / "masked.toml").write_text(
        '[protect]\nenabled = true\ncolumns = ["customers.email", "customers.name"]\n'
    )
    unlock = "unlock('INC-10: customer asked for a copy of their data')\nprint(first(Customer))\nlock()"
    for args, operator in (
        (["--reason", "INC-7 weekly count", "-c", "print(count(Customer))"], "alice"),
        (
            [
                "--sandbox",
                "--reason",
                "INC-8 rename customer 1",
                "-c",
                "c = find(Customer, 1)\nc.name = 'Renamed'\nsession.flush()",
            ],
            "bob",
        ),
        (["--read-only", "--reason", "INC-9 <script>alert(1)</script>", "-c", "1/0"], "bob"),
        (["--profile", "masked", "--reason", "INC-10 data request", "-c", unlock], "carol"),
    ):
        assert run(["--audit-log", str(log), *args], cwd=shop, env={"APPSHELL_OPERATOR": operator}).exit_code in (0, 1)
    return log


@pytest.fixture
def server(log: Path, tmp_path: Path) -> Iterator[str]:
    """`appshell audit serve` as a real process; its URL once it accepts connections."""
    port = free_port()
    errors = (tmp_path / "serve.stderr").open("w")
    proc = subprocess.Popen(
        [APPSHELL, "audit", "serve", "--log", str(log), "--port", str(port)],
        cwd=tmp_path,
        env=clean_environ(
            {
                "APPSHELL_REVIEW_TOKENS": f"alice:{TOKEN}",
                "APPSHELL_REVIEW_KEY_FILE": str(tmp_path / "reviewer" / "review.key"),
            }
        ),
        stdout=errors,
        stderr=errors,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"appshell audit serve exited {proc.returncode}: {(tmp_path / 'serve.stderr').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("appshell audit serve did not listen within 60 s")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        errors.close()


def test_log_in_filter_open_flag_reload(browser_ready: None, server: str, log: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            java_script_enabled=False,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            response = page.goto(server + "/")
            assert response is not None and response.status == 401
            assert page.locator("h1").inner_text() == "Log in"
            page.fill("#token", TOKEN)
            with page.expect_navigation():
                page.click("button[type=submit]")
            assert page.url == server + "/" and page.locator("table.sessions tbody tr").count() == 4
            assert "auditor alice" in page.locator("header").inner_text()
            page.screenshot(path=str(shots / "list.png"), full_page=True)

            page.fill("input[name=user]", "bob")
            page.check("input[name=errors]")
            with page.expect_navigation():
                page.click("form.filters button[type=submit]")
            rows = page.locator("table.sessions tbody tr")
            assert rows.count() == 1 and "INC-9 <script>alert(1)</script>" in rows.first.inner_text()  # shown as text
            page.fill("input[name=user]", "bob")
            page.uncheck("input[name=errors]")
            with page.expect_navigation():
                page.click("form.filters button[type=submit]")
            assert page.locator("table.sessions tbody tr").count() == 2

            with page.expect_navigation():
                page.click("text=INC-8 rename customer 1 >> xpath=.. >> a")
            assert page.locator("h1").inner_text().startswith("Session ")
            assert "c.name = 'Renamed'" in page.locator("pre.src").first.inner_text()
            assert "UPDATE customers SET name=?" in page.locator("article.statement").first.inner_text()
            assert "intact, not authenticated" in page.locator("#chain h2").inner_text()
            page.check("input[value=flagged]")
            page.fill("#note", "sandboxed rename: who asked for it? <b>ask bob</b>")
            with page.expect_navigation():
                page.click("form.review button[type=submit]")  # POST, then 303 to the session page

            page.reload()
            history = page.locator("table.history tbody tr")
            assert history.count() == 1
            row = history.first.inner_text()
            assert (
                "alice" in row
                and "flagged" in row
                and "sandboxed rename: who asked for it? <b>ask bob</b>" in row
                and "verified" in row
            )
            assert page.locator("h1 .state-flagged").inner_text() == "flagged"
            page.screenshot(path=str(shots / "session.png"), full_page=True)

            page.goto(server + "/?state=flagged")
            assert page.locator("table.sessions tbody tr").count() == 1

            # A session with sensitive access: marked in the list, the mark lists only such sessions, its page says why.
            page.goto(server + "/")
            marks = page.locator("table.sessions a.tag.sensitive")
            assert marks.count() == 1 and marks.first.inner_text() == "sensitive access"
            assert (
                "INC-10 data request"
                in page.locator("table.sessions tbody tr", has=page.locator("a.tag.sensitive")).inner_text()
            )
            with page.expect_navigation():
                marks.first.click()
            assert page.url == server + "/?sensitive=1"
            assert page.locator("input[name=sensitive]").is_checked()
            rows = page.locator("table.sessions tbody tr")
            assert rows.count() == 1 and "INC-10 data request" in rows.first.inner_text()
            with page.expect_navigation():
                rows.first.locator("a").first.click()
            sensitive = page.locator("section#sensitive")
            assert sensitive.is_visible()
            text = sensitive.inner_text()
            assert "Sensitive access: protected data shown 1 time" in text
            assert (
                "reason: “INC-10: customer asked for a copy of their data”" in text
                or "INC-10: customer asked for a copy of their data" in text
            )
            assert "opened: customers.email, customers.name" in text
            assert page.locator("article.statement.sensitive").count() == 2  # unlock() and lock()
            page.screenshot(path=str(shots / "sensitive.png"), full_page=True)
        finally:
            context.close()
    saved = [json.loads(line) for line in (log.parent / "reviews.jsonl").read_text().splitlines()]
    assert [(r["auditor"], r["state"]) for r in saved] == [("alice", "flagged")]
    assert (shots / "session.png").stat().st_size > 10_000
    docs_png = ROOT / "docs" / "review.png"
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1" or not docs_png.exists():
        shutil.copyfile(shots / "session.png", docs_png)
