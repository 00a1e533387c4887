"""`appshell audit serve` at the HTTP level (issue 14): access, CSRF, escaping, filters, export, reviews, chain state.

The log under review is written by real `appshell` runs against the example
shop (and, for volume, by the real file sink); the app is driven in-process
with Starlette's TestClient.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

try:
    from starlette.testclient import TestClient
except ImportError:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise  # CI installs the test extra, which has appshell[review]
    pytest.skip(
        "the review extra is not installed: pip install -e '.[test]' (or 'appshell[review]' and httpx2)",
        allow_module_level=True,
    )

from support.audit import HIDE
from support.environment import clean_environ
from support.harness import run

from appshell.cli.review_web.app import create_app
from appshell.cli.review_web.cli import build_config, parser

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


@pytest.fixture(autouse=True)
def _review_key_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The review server's key file in this test's folder, never the developer's ~/.config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "reviewer-config"))


ALICE, BOB = "alice-token-0123456789", "bob-token-9876543210xx"
TOKENS = {"APPSHELL_REVIEW_TOKENS": f"alice:{ALICE},bob:{BOB}"}
ESC = "\x1b"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def shop_log(tmp_path_factory: pytest.TempPathFactory, _seeded_shop: Path) -> Path:
    """Real sessions in one audit file: plain, sandboxed write, read-only error, hostile text, another operator."""
    root = tmp_path_factory.mktemp("review")
    shop = root / "shop"
    shutil.copytree(_seeded_shop, shop, ignore=shutil.ignore_patterns("__pycache__", ".appshell"))
    log = root / "audit" / "audit.jsonl"
    runs: list[tuple[list[str], dict[str, str]]] = [
        (["--reason", "INC-7 refund <b>bold</b>", "-c", "print(count(Customer))"], {"APPSHELL_OPERATOR": "alice"}),
        (
            ["--sandbox", "--reason", "INC-8 rename", "-c", "c = find(Customer, 1); c.name = 'zz'; session.flush()"],
            {"APPSHELL_OPERATOR": "bob"},
        ),
        (["--read-only", "-c", "1/0"], {"APPSHELL_OPERATOR": "bob"}),
        (
            ["--reason", f"{SCRIPT} {ESC}]0;pwned{ESC}\\", "-c", f'print("{SCRIPT}{ESC}[2K")'],
            {"APPSHELL_OPERATOR": "mallory"},
        ),
    ]
    for args, env in runs:
        result = run(
            ["--audit-log", str(log), *args], cwd=shop, env=env, process=False
        )  # in-process, as the module's tests
        assert result.exit_code in (0, 1), result.output
    return log


@pytest.fixture
def log(shop_log: Path, tmp_path: Path) -> Path:
    """This test's own copy of the log (tests edit it)."""
    target = tmp_path / "audit"
    shutil.copytree(shop_log.parent, target)
    return target / "audit.jsonl"


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def client_for(args: list[str], env: dict[str, str] | None = None) -> TestClient:
    config = build_config(parser().parse_args(args), {**TOKENS, **(env or {})})
    config.warm = False  # the tests read what each request reads
    return TestClient(create_app(config), follow_redirects=False)


@pytest.fixture
def client(log: Path) -> TestClient:
    return client_for(["--log", str(log)])


def bearer(token: str = ALICE) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def session_ids(html: str) -> list[str]:
    return re.findall(r'<a href="/session/([0-9a-f]+)">', html)


def start_of(log: Path, reason_prefix: str) -> dict[str, Any]:
    return next(
        r for r in records(log) if r["event"] == "session_start" and (r.get("reason") or "").startswith(reason_prefix)
    )


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, html
    return m[1]


def login(client: TestClient, token: str = ALICE) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"token": token, "csrf": csrf_of(page.text), "next": "/"})
    assert response.status_code == 303, response.text


# -- access -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/"),
        ("GET", "/session/0000"),
        ("GET", "/export.csv"),
        ("GET", "/export.json"),
        ("POST", "/session/0000/review"),
    ],
)
@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": "Basic YWxpY2U6eA=="},
        {"Cookie": "appshell_review=alice|9999999999|" + "0" * 64},
    ],
)
def test_without_valid_credentials_401(client: TestClient, method: str, path: str, credentials: dict[str, str]) -> None:
    response = client.request(method, path, headers=credentials)
    assert response.status_code == 401
    assert 'name="token"' in response.text and "/session/" not in response.text.split("<main>")[1].split("</form>")[1]


def test_login_with_a_token_then_the_cookie(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200 and page.headers["content-security-policy"].startswith("default-src 'none'")
    assert client.post("/login", data={"token": ALICE, "next": "/"}).status_code == 403  # no CSRF token
    assert client.post("/login", data={"token": "not-a-token-at-all-xx", "csrf": csrf_of(page.text)}).status_code == 401
    login(client)
    listing = client.get("/")
    assert listing.status_code == 200 and "auditor <b>alice</b>" in listing.text and len(session_ids(listing.text)) == 4
    cookie = client.cookies.get("appshell_review")
    assert cookie is not None and cookie.startswith("alice|")
    forged = cookie.replace("alice|", "bob|", 1)  # another auditor's name under alice's signature
    client.cookies.clear()
    assert client.get("/", headers={"Cookie": f"appshell_review={forged}"}).status_code == 401


def test_trusted_proxy_header_only_when_configured(log: Path) -> None:
    plain = client_for(["--log", str(log)])
    assert plain.get("/", headers={"X-Forwarded-User": "carol"}).status_code == 401
    proxied = client_for(["--log", str(log), "--trust-header", "X-Forwarded-User"], {"APPSHELL_REVIEW_TOKENS": ""})
    page = proxied.get("/", headers={"X-Forwarded-User": "carol"})
    assert page.status_code == 200 and "auditor <b>carol</b>" in page.text
    assert proxied.get("/").status_code == 401


def test_hashed_tokens_file(log: Path, tmp_path: Path) -> None:
    import hashlib

    tokens = tmp_path / "tokens"
    tokens.write_text(f"# auditors\ndora:{hashlib.sha256(b'dora-token-0123456789').hexdigest()}\n")
    c = client_for(["--log", str(log), "--tokens-file", str(tokens)], {"APPSHELL_REVIEW_TOKENS": ""})
    assert c.get("/", headers=bearer("dora-token-0123456789")).status_code == 200
    assert c.get("/", headers=bearer(ALICE)).status_code == 401


def test_every_post_needs_the_csrf_token(client: TestClient, log: Path) -> None:
    sid = start_of(log, "INC-7")["session"]
    login(client)
    page = client.get(f"/session/{sid}")
    token = csrf_of(page.text)
    reviews = log.parent / "reviews.jsonl"
    for data in (
        {"state": "flagged", "note": "x"},
        {"state": "flagged", "note": "x", "csrf": "0" * 64},
        {"state": "flagged", "note": "x", "csrf": token[:-1] + ("0" if token[-1] != "0" else "1")},
    ):
        assert client.post(f"/session/{sid}/review", data=data).status_code == 403
    bob = client_for(["--log", str(log)])
    login(bob, BOB)  # bob's session cookie with alice's token: refused
    assert bob.post(f"/session/{sid}/review", data={"state": "flagged", "note": "x", "csrf": token}).status_code == 403
    assert not reviews.exists()
    assert client.post("/logout").status_code == 403
    ok = client.post(f"/session/{sid}/review", data={"state": "reviewed", "note": "fine", "csrf": token})
    assert ok.status_code == 303 and ok.headers["location"] == f"/session/{sid}#reviews"
    assert [r["state"] for r in records(reviews)] == ["reviewed"]


# -- escaping -----------------------------------------------------------------------------


def test_statements_and_reasons_never_render_html_or_terminal_escapes(client: TestClient, log: Path) -> None:
    hostile = start_of(log, SCRIPT)
    pages = [
        client.get("/", headers=bearer()),
        client.get(f"/session/{hostile['session']}", headers=bearer()),
        client.get("/?q=alert", headers=bearer()),
    ]
    for page in pages:
        assert page.status_code == 200
        assert "<script" not in page.text.lower() and ESC not in page.text and "\x07" not in page.text
        assert "&lt;script&gt;alert(" in page.text
        assert (
            "script-src" not in page.headers["content-security-policy"]
            and "default-src 'none'" in page.headers["content-security-policy"]
        )
    session_page = pages[1].text
    assert "\\x1b" in session_page  # the escape is shown, as text
    assert '<span class="se">\\x1b</span>' in session_page or "\\x1b[2K" in session_page
    assert "&lt;b&gt;bold&lt;/b&gt;" in pages[0].text
    exported = client.get("/export.json", headers=bearer()).text
    assert ESC not in exported and "\\u001b" in exported
    assert ESC not in client.get("/export.csv", headers=bearer()).text


# -- filters and export -------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, reasons",
    [
        ("", {"INC-7", "INC-8", None, SCRIPT}),
        ("user=bob", {"INC-8", None}),
        ("user=mallory", {SCRIPT}),
        ("errors=1", {None}),
        ("wrote=1", {"INC-8"}),
        ("sandbox=yes", {"INC-8"}),
        ("sandbox=no&read_only=no", {"INC-7", SCRIPT}),
        ("read_only=yes", {None}),
        ("profile=development", {"INC-7", "INC-8", None, SCRIPT}),
        ("profile=production", set()),
        ("host=no-such-host", set()),
        ("q=refund", {"INC-7"}),  # in a reason
        ("q=CUSTOMER", {"INC-7", "INC-8"}),  # in statements, any case
        ("q=1/0", {None}),
        ("since=2000-01-01&until=2999-12-31", {"INC-7", "INC-8", None, SCRIPT}),
        ("until=2000-01-01", set()),
        ("state=pending", {"INC-7", "INC-8", None, SCRIPT}),
        ("state=flagged", set()),
    ],
)
def test_filters(client: TestClient, log: Path, query: str, reasons: set[str | None]) -> None:
    by_id = {
        r["session"]: (r.get("reason") or None) and r["reason"][: len(SCRIPT)]
        if (r.get("reason") or "").startswith(SCRIPT)
        else (r.get("reason") or None) and r["reason"].split(" ")[0]
        for r in records(log)
        if r["event"] == "session_start"
    }
    page = client.get(f"/?{query}", headers=bearer())
    assert page.status_code == 200
    assert {by_id[s] for s in session_ids(page.text)} == reasons


def test_newest_first_and_review_state_filters(client: TestClient, log: Path) -> None:
    starts = [r for r in records(log) if r["event"] == "session_start"]
    page = client.get("/", headers=bearer())
    assert session_ids(page.text) == [r["session"] for r in reversed(starts)]
    flagged = starts[1]["session"]
    token = csrf_of(page.text)
    assert (
        client.post(
            f"/session/{flagged}/review", data={"state": "flagged", "note": "why?", "csrf": token}, headers=bearer()
        ).status_code
        == 303
    )
    assert session_ids(client.get("/?state=flagged", headers=bearer()).text) == [flagged]
    assert flagged not in session_ids(client.get("/?state=pending", headers=bearer()).text)


def test_export_csv_and_json_of_a_filtered_list(client: TestClient, log: Path) -> None:
    data = client.get("/export.json?user=bob", headers=bearer())
    assert data.status_code == 200 and data.headers["content-type"].startswith("application/json")
    rows = data.json()
    assert {r["real_user"] for r in rows} == {"bob"} and len(rows) == 2
    assert {(r["sandbox"], r["read_only"], r["wrote"], r["errors"]) for r in rows} == {
        (True, False, True, 0),
        (False, True, False, 1),
    }
    assert all(r["review_state"] == "pending" for r in rows)
    table = list(csv.DictReader(io.StringIO(client.get("/export.csv?user=bob", headers=bearer()).text)))
    assert [r["session"] for r in table] == [r["session"] for r in rows]
    hostile = client.get("/export.csv?user=mallory", headers=bearer()).text
    assert SCRIPT in hostile  # CSV is data, not HTML: the text is kept, its control characters escaped
    assert client.get("/export.xml", headers=bearer()).status_code == 404


def test_csv_cells_never_start_a_formula() -> None:
    from appshell.cli.review_web.app import _cell

    assert [_cell(v) for v in ("=cmd|' /C calc'!A0", "+1", "@x", "-2", "ok", None, f"a{ESC}b")] == [
        "'=cmd|' /C calc'!A0",
        "'+1",
        "'@x",
        "'-2",
        "ok",
        "",
        "a\\x1bb",
    ]


# -- the session page -----------------------------------------------------------------------


def test_session_page_shows_start_facts_statements_sql_and_files(client: TestClient, log: Path, tmp_path: Path) -> None:
    sid = start_of(log, "INC-8")["session"]
    page = client.get(f"/session/{sid}", headers=bearer()).text
    for text in (
        "operator (login/sudo user)</th><td>bob",
        "OS user",
        "ssh origin",
        "release parity",
        "database (masked)",
        "sqlite:///",
        "INC-8 rename",
        "UPDATE customers SET name=? WHERE customers.id = ?",
        "sandbox summary",
        'class="src"',
        "intact, not authenticated",
    ):
        assert text in page, text
    assert '<span class="n">session</span>' in page  # highlighted Python
    assert "customers.created_at \nFROM customers" in page  # SQL keeps its line breaks (shown, not escaped as \\n)
    error = next(r for r in records(log) if r["event"] == "session_start" and r["read_only"])
    assert "ZeroDivisionError: division by zero" in client.get(f"/session/{error['session']}", headers=bearer()).text
    assert client.get("/session/ffffffffffffffff", headers=bearer()).status_code == 404


def test_script_files_with_their_sha256(tmp_path: Path, shop: Path) -> None:
    import hashlib

    script = tmp_path / "fix.py"
    script.write_text("print(count(Order))\n")
    log = tmp_path / "a" / "audit.jsonl"
    assert run(["--audit-log", str(log), str(script)], cwd=shop).exit_code == 0
    sid = records(log)[0]["session"]
    page = client_for(["--log", str(log)]).get(f"/session/{sid}", headers=bearer()).text
    assert str(script) in page and hashlib.sha256(script.read_bytes()).hexdigest() in page


def _edit(log: Path, seq: int, old: str, new: str) -> None:
    lines = log.read_text().splitlines(keepends=True)
    assert old in lines[seq - 1]
    lines[seq - 1] = lines[seq - 1].replace(old, new)
    log.write_text("".join(lines))


def test_chain_state_of_a_session_names_the_broken_record(client: TestClient, log: Path) -> None:
    starts = [r for r in records(log) if r["event"] == "session_start"]
    victim, other = starts[1], starts[2]
    statement = next(r for r in records(log) if r["session"] == victim["session"] and r["event"] == "statement")
    _edit(log, statement["seq"], "c.name = 'zz'", "c.name = 'ok'")
    page = client.get(f"/session/{victim['session']}", headers=bearer()).text
    assert f"broken at record seq {statement['seq']}: hash mismatch" in page and "Chain: broken" in page
    assert "Chain: intact" in client.get(f"/session/{other['session']}", headers=bearer()).text
    row = client.get("/", headers=bearer()).text
    assert row.count('class="chain-broken"') == 1


def test_chain_state_with_the_verification_key(tmp_path: Path, shop_log: Path) -> None:
    shop = shop_log.parent.parent / "shop"
    log = tmp_path / "sealed" / "audit.jsonl"
    init = run(["audit", "init", "--log", str(log)], cwd=shop)
    key = re.search(r"fss1-[0-9a-f]{64}", init.stdout)
    assert init.exit_code == 0 and key, init.output
    for code in ("print(1)", "print(2)"):
        assert run(["--audit-log", str(log), "-c", code], cwd=shop).exit_code == 0
    first, second = [r for r in records(log) if r["event"] == "session_start"]
    keyed = client_for(["--log", str(log), "--key", key[0]])
    assert "intact, authenticated" in keyed.get(f"/session/{second['session']}", headers=bearer()).text
    assert (
        "intact, not authenticated"
        in client_for(["--log", str(log)]).get(f"/session/{second['session']}", headers=bearer()).text
    )
    # Edit a statement and rehash the whole chain after it: only the MAC can tell.
    from appshell.audit.records import canonical, digest

    recs = records(log)
    prev = recs[0]["prev"]
    for r in recs:
        r["prev"] = prev
        if r["session"] == first["session"] and r["event"] == "statement":
            r["source"] = "print('harmless')"
        r["hash"] = digest(r)
        prev = r["hash"]
    log.write_bytes(b"".join(canonical(r) + b"\n" for r in recs))
    forged = keyed.get(f"/session/{first['session']}", headers=bearer()).text
    assert "MAC mismatch" in forged and "Chain: broken" in forged
    assert (
        "intact, not authenticated"
        in client_for(["--log", str(log)]).get(f"/session/{first['session']}", headers=bearer()).text
    )


# -- reviews --------------------------------------------------------------------------------


def test_reviews_are_append_only_chained_and_tampering_shows(client: TestClient, log: Path) -> None:
    sid = start_of(log, "INC-7")["session"]
    login(client)
    token = csrf_of(client.get(f"/session/{sid}").text)
    for state, note in (("flagged", "why count customers? <i>"), ("reviewed", f"asked alice: fine {ESC}[2K")):
        assert (
            client.post(f"/session/{sid}/review", data={"state": state, "note": note, "csrf": token}).status_code == 303
        )
    reviews = log.parent / "reviews.jsonl"
    assert stat.S_IMODE(reviews.stat().st_mode) == 0o600
    saved = records(reviews)
    assert [(r["seq"], r["auditor"], r["state"], r["session"]) for r in saved] == [
        (1, "alice", "flagged", sid),
        (2, "alice", "reviewed", sid),
    ]
    assert saved[1]["prev"] == saved[0]["hash"]
    page = client.get(f"/session/{sid}").text
    assert "why count customers? &lt;i&gt;" in page and ESC not in page and page.count(">verified<") == 2
    assert "the review chain is broken" not in page
    listing = client.get("/?state=reviewed").text
    assert sid in session_ids(listing)  # the latest review counts
    assert f"2 reviews in {reviews}; chain intact, head <code>{saved[1]['hash']}</code>" in listing

    reviews.write_text(reviews.read_text().replace("why count customers?", "all good here"))
    page = client.get(f"/session/{sid}").text
    assert "the review chain is broken" in page and "reviews.jsonl:1: hash mismatch" in page
    assert page.count("NOT verified") == 2

    reviews.write_text("".join(reviews.read_text().splitlines(keepends=True)[1:]))  # the flag removed
    page = client.get(f"/session/{sid}").text
    assert "reviews.jsonl:1: chain broken" in page and "NOT verified" in page


def test_review_state_must_be_known(client: TestClient, log: Path) -> None:
    sid = start_of(log, "INC-7")["session"]
    token = csrf_of(client.get("/", headers=bearer()).text)
    assert (
        client.post(f"/session/{sid}/review", data={"state": "approved", "csrf": token}, headers=bearer()).status_code
        == 400
    )
    assert (
        client.post(
            "/session/ffffffffffffffff/review", data={"state": "flagged", "csrf": token}, headers=bearer()
        ).status_code
        == 404
    )


# -- scale: pagination through the index, sessions the index missed ----------------------------


def _sessions(log: Path, count: int, start: int = 0) -> list[str]:
    from appshell.audit.filesink import FileSink
    from appshell.audit.records import now_rfc3339

    sink = FileSink(log)
    ids = []
    try:
        for i in range(start, start + count):
            sid = f"{i:016x}"
            ids.append(sid)
            sink.append(
                {
                    "ts": now_rfc3339(),
                    "session": sid,
                    "event": "session_start",
                    "user": "deploy",
                    "real_user": f"op{i % 3}",
                    "host": "web-1",
                    "profile": "production",
                    "mode": "command",
                    "sandbox": False,
                    "read_only": False,
                    "reason": f"INC-{i}",
                    "database": "sqlite:///x.db",
                }
            )
            sink.append({"ts": now_rfc3339(), "session": sid, "event": "statement", "n": 1, "source": f"print({i})"})
            sink.append(
                {
                    "ts": now_rfc3339(),
                    "session": sid,
                    "event": "result",
                    "n": 1,
                    "status": "ok",
                    "error": None,
                    "duration_ms": 1.0,
                    "sql": [],
                }
            )
            sink.append(
                {
                    "ts": now_rfc3339(),
                    "session": sid,
                    "event": "session_end",
                    "status": "ok",
                    "statements": 1,
                    "duration_ms": 2.0,
                }
            )
    finally:
        sink.close()
    return ids


def test_pagination_newest_first_through_the_index(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    ids = _sessions(log, 120)
    c = client_for(["--log", str(log)])
    seen: list[str] = []
    url = "/?user=op1"
    while url:
        page = c.get(url, headers=bearer()).text
        seen += session_ids(page)
        m = re.search(r'<a href="([^"]+)" rel="next">', page)
        url = m[1].replace("&amp;", "&") if m else ""
    assert seen == [s for i, s in reversed(list(enumerate(ids))) if i % 3 == 1]
    first = c.get("/", headers=bearer()).text
    assert len(session_ids(first)) == 50 and session_ids(first)[0] == ids[-1]


def test_sessions_missing_from_the_index_are_listed(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    ids = _sessions(log, 3)
    index = log.with_suffix(".idx")
    index.write_text("".join(index.read_text().splitlines(keepends=True)[:1]))  # the index lost its last lines
    assert session_ids(client_for(["--log", str(log)]).get("/", headers=bearer()).text) == ids[::-1]


# -- the SQL sink -----------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sql_sink_sessions_reviews_and_chain(
    tmp_path: Path, shop_log: Path, database: str, request: pytest.FixtureRequest
) -> None:
    shop = shop_log.parent.parent / "shop"
    profile = shop / "profiles" / "development.toml"
    saved = profile.read_text() if profile.exists() else None
    audit_db = f"sqlite:///{tmp_path / 'audit.db'}" if database == "sqlite" else request.getfixturevalue("pg_url")
    try:
        profile.write_text('[audit]\nsinks = ["sql"]\nrequired = true\n')
        for code in ("print(count(Customer))", "1/0"):
            run(["-c", code], cwd=shop, env={"APPSHELL_AUDIT_URL": audit_db})
    finally:
        profile.unlink() if saved is None else profile.write_text(saved)
    c = client_for(["--url", audit_db])
    page = c.get("/", headers=bearer()).text
    ids = session_ids(page)
    assert len(ids) == 2 and page.count("intact, not authenticated") == 2
    assert session_ids(c.get("/?errors=1", headers=bearer()).text) == [ids[0]]
    assert session_ids(c.get("/?q=count(customer", headers=bearer()).text) == [ids[1]]
    token = csrf_of(page)
    assert (
        c.post(
            f"/session/{ids[0]}/review",
            data={"state": "flagged", "note": "1/0 on prod?", "csrf": token},
            headers=bearer(),
        ).status_code
        == 303
    )
    shown = c.get(f"/session/{ids[0]}", headers=bearer()).text
    assert "1/0 on prod?" in shown and "ZeroDivisionError" in shown and ">verified<" in shown

    from sqlalchemy import create_engine, text

    engine = create_engine(audit_db)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE appshell_audit SET record = replace(record, '1/0', '2/0') "
                "WHERE session = :s AND event = 'statement'"
            ),
            {"s": ids[0]},
        )
        conn.execute(text("UPDATE appshell_review SET record = replace(record, 'flagged', 'reviewed')"))
    engine.dispose()
    shown = c.get(f"/session/{ids[0]}", headers=bearer()).text
    assert "Chain: broken" in shown and "hash mismatch" in shown
    assert "appshell_review#seq=1: hash mismatch" in shown and "NOT verified" in shown


# -- the command ------------------------------------------------------------------------------


def test_serve_refuses_to_start_without_auditors_or_log(tmp_path: Path, log: Path) -> None:
    result = run(["audit", "serve", "--log", str(log)], cwd=tmp_path)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert (
        result.stderr.startswith("appshell: error: no auditor could log in")
        and "APPSHELL_REVIEW_TOKENS" in result.stderr
    )
    missing = run(["audit", "serve", "--log", str(tmp_path / "none.jsonl")], cwd=tmp_path, env=TOKENS)
    assert missing.exit_code == 2 and "no audit log at" in missing.stderr
    bad = run(["audit", "serve", "--log", str(log)], cwd=tmp_path, env={"APPSHELL_REVIEW_TOKENS": "alice:short"})
    assert bad.exit_code == 2 and "16+ characters" in bad.stderr


@pytest.mark.subprocess  # its sitecustomize hides starlette: only a fresh interpreter runs it
def test_serve_without_the_extra_is_a_one_line_error(tmp_path: Path, log: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['starlette'] = None  # as if not installed\n")
    result = run(["audit", "serve", "--log", str(log)], cwd=tmp_path, env={**TOKENS, "PYTHONPATH": str(blocker)})
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "appshell: error: appshell audit serve needs the review extra (starlette is not installed) — "
        "pip install 'appshell[review]'\n"
    )


def test_appshell_start_up_does_not_import_the_web_stack(tmp_path: Path) -> None:
    code = (
        "import sys, appshell.cli.main; print(sorted(m for m in ('starlette', 'jinja2', 'uvicorn', "
        "'appshell.cli.review_web') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_environ(), check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("order", [[0, 1, 2, 700, 701, 255, 256, 257, 5000, 3, 4999], [4097, 0, 4096, 12, 300]])
def test_key_ladder_gives_the_key_of_each_epoch_in_any_order(order: list[int]) -> None:
    from appshell.audit.queries import KeyLadder
    from appshell.audit.seal import evolve

    k0 = bytes(range(32))
    expected = [k0]
    for _ in range(max(order)):
        expected.append(evolve(expected[-1]))
    ladder = KeyLadder(k0)
    assert [ladder.key(e) for e in order] == [expected[e] for e in order]


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/?user=bob", "/?user=bob"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/session/ab\r\nSet-Cookie: x=1", "/"),
        ("", "/"),
    ],
)
def test_after_login_only_local_redirects(client: TestClient, target: str, expected: str) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"token": ALICE, "csrf": csrf_of(page.text), "next": target})
    assert response.status_code == 303 and response.headers["location"] == expected


def test_warm_summaries_equal_those_read_through_the_index(log: Path) -> None:
    from appshell.audit.queries import Catalog, Filters
    from appshell.audit.review import Log

    _sessions(log, 5, start=100)
    cold, warm = Catalog(Log(path=log)), Catalog(Log(path=log))
    warm.warm()
    assert len(warm._summaries) == 9
    pending = lambda _s: "pending"
    assert list(warm.all(Filters(), pending)) == list(cold.all(Filters(), pending))


def test_a_stale_index_is_rebuilt_not_believed(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    ids = _sessions(log, 3)
    index = log.with_suffix(".idx")
    index.write_text(
        "".join(
            f"{sid} {int(offset) + 7}\n" for sid, offset in (line.split() for line in index.read_text().splitlines())
        )
    )
    page = client_for(["--log", str(log)]).get("/?user=op1", headers=bearer()).text
    assert session_ids(page) == [ids[1]]
    assert session_ids(client_for(["--log", str(log)]).get("/", headers=bearer()).text) == ids[::-1]


@pytest.mark.parametrize(
    "q, found",
    [
        ("QUOTED", True),
        ('"quoted" \\ back', True),
        ("BACK; print(1)", True),
        ("Ärger", True),
        ("ärger", False),
        ("nowhere at all", False),
        ("deploy", False),
    ],
)
def test_text_search_through_the_file_matches_the_search_in_memory(tmp_path: Path, q: str, found: bool) -> None:
    from appshell.audit.filesink import FileSink
    from appshell.audit.queries import Catalog, Filters
    from appshell.audit.records import now_rfc3339
    from appshell.audit.review import Log

    log = tmp_path / "audit.jsonl"
    _sessions(log, 60)  # enough unread sessions for the byte scan to be used
    sink = FileSink(log)
    try:
        sink.append(
            {"ts": now_rfc3339(), "session": "f" * 16, "event": "session_start", "user": "deploy", "reason": "Ärger"}
        )
        sink.append(
            {
                "ts": now_rfc3339(),
                "session": "f" * 16,
                "event": "statement",
                "n": 1,
                "source": 'x = "Quoted" \\ back; print(1)',
            }
        )
    finally:
        sink.close()
    pending = lambda _s: "pending"
    cold = Catalog(Log(path=log))
    by_scan = [s.id for s in cold.all(Filters(q=q), pending)]
    assert cold._hits is not None  # the byte scan was used
    warm = Catalog(Log(path=log))
    warm.warm()
    assert by_scan == [s.id for s in warm.all(Filters(q=q), pending)] == (["f" * 16] if found else [])


def test_a_killed_session_is_listed_and_read_on_from_where_it_stopped(tmp_path: Path) -> None:
    from appshell.audit.filesink import FileSink
    from appshell.audit.records import now_rfc3339

    log = tmp_path / "audit.jsonl"
    killed = "c" * 16
    sink = FileSink(log)
    try:
        sink.append(
            {"ts": now_rfc3339(), "session": killed, "event": "session_start", "user": "deploy", "reason": "INC-kill"}
        )
        sink.append(
            {
                "ts": now_rfc3339(),
                "session": killed,
                "event": "statement",
                "n": 1,
                "source": "import time; time.sleep(1e9)",
            }
        )
    finally:
        sink.close()
    _sessions(log, 3)
    c = client_for(["--log", str(log)])
    row = c.get("/?q=INC-kill", headers=bearer()).text
    assert session_ids(row) == [killed] and "open (or killed)" in row
    catalog = c.app.state.review.catalog  # type: ignore[attr-defined]
    assert catalog._read[killed][2] == log.stat().st_size  # read once, to the end
    sink = FileSink(log)  # the session was only slow: it goes on
    try:
        sink.append(
            {"ts": now_rfc3339(), "session": killed, "event": "statement", "n": 2, "source": "print('still here')"}
        )
    finally:
        sink.close()
    page = c.get(f"/session/{killed}", headers=bearer()).text
    assert "still here" in page and "Statements (2)" in page and "still open, or the process was killed" in page
    assert catalog._read[killed][2] == log.stat().st_size


def test_files_a_statement_ran_are_shown_with_their_sha256(tmp_path: Path) -> None:
    from appshell.audit.filesink import FileSink
    from appshell.audit.records import now_rfc3339

    log = tmp_path / "audit.jsonl"
    sid = "d" * 16
    sink = FileSink(log)
    try:
        sink.append({"ts": now_rfc3339(), "session": sid, "event": "session_start", "user": "deploy"})
        sink.append(
            {
                "ts": now_rfc3339(),
                "session": sid,
                "event": "statement",
                "n": 1,
                "kind": "cell",
                "source": "%run fix.py",
                "files": [{"path": "/srv/app/fix.py", "sha256": "ab" * 32, "text": "print('<b>fixed</b>')\n"}],
            }
        )
    finally:
        sink.close()
    page = client_for(["--log", str(log)]).get(f"/session/{sid}", headers=bearer()).text
    assert "file <code>/srv/app/fix.py</code> sha256 <code>" + "ab" * 32 + "</code>" in page
    assert "'&lt;b&gt;fixed&lt;/b&gt;'" in page and "<b>fixed" not in page  # its text, highlighted and escaped


# -- readers never hide a record (issue 22 attacks 1 and 5; issue 25 item 2) ------------------------------------


def test_hashless_lines_do_not_hide_the_real_statement_on_the_page(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit" / "audit.jsonl"
    init = run(["audit", "init", "--log", str(log)], cwd=shop)
    key = re.search(r"(fss1-[0-9a-f]{64})", init.stdout)
    assert key is not None
    code = "sql('update products set stock = 0'); commit()\n" + HIDE.format(log=str(log))
    assert run(["--audit-log", str(log), "--write", "-c", code], cwd=shop).exit_code == 0
    sid = records(log)[0]["session"]
    c = client_for(["--log", str(log), "--key", key[1]])
    page = c.get(f"/session/{sid}", headers=bearer()).text
    assert "update products set stock = 0" in page and "print(count(Product))" in page
    assert (
        "Flagged:" in page
        and "no seal or hash" in page
        and "duplicate statement n=1" in page
        and "a second session_end" in page
    )
    assert "intact, authenticated" not in page
    listed = c.get("/", headers=bearer()).text
    assert "FLAGGED" in listed
    exported = json.loads(c.get("/export.json", headers=bearer()).text)
    assert any("no seal or hash" in f for f in exported[0]["flags"])


def test_a_deleted_index_line_hides_no_session_from_the_page(log: Path) -> None:
    idx = log.with_suffix(".idx")
    lines = idx.read_text().splitlines()
    victim = lines[1].split()[0]
    reason = next(r["reason"] for r in records(log) if r["event"] == "session_start" and r["session"] == victim)
    idx.write_text("\n".join(line for line in lines if not line.startswith(victim)) + "\n")
    c = client_for(["--log", str(log)])
    assert victim in session_ids(c.get("/", headers=bearer()).text)
    assert victim in session_ids(c.get("/?q=" + quote_q(reason.split()[0]), headers=bearer()).text)
    assert victim in [r["session"] for r in json.loads(c.get("/export.json", headers=bearer()).text)]
    assert c.get(f"/session/{victim}", headers=bearer()).status_code == 200
    assert victim in idx.read_text()  # the cache was repaired


def quote_q(text: str) -> str:
    from urllib.parse import quote

    return quote(text)


def test_a_3mb_statement_renders_in_under_a_second(tmp_path: Path) -> None:
    import time

    from appshell.audit.filesink import FileSink
    from appshell.audit.records import now_rfc3339

    log = tmp_path / "audit.jsonl"
    big = "rows = [\n" + "".join(f"    ({i}, 'name {i}', {i * 3.5}),\n" for i in range(90_000)) + "]\n"
    assert len(big) > 3_000_000
    insert = "INSERT INTO products (id, name) VALUES " + ",".join(f"({i}, 'p{i}')" for i in range(40_000))
    sid = "d" * 16
    sink = FileSink(log)
    try:
        sink.append(
            {"ts": now_rfc3339(), "session": sid, "event": "session_start", "user": "deploy", "database": "sqlite:///x"}
        )
        sink.append(
            {"ts": now_rfc3339(), "session": sid, "event": "statement", "n": 1, "source": big, "kind": "script"}
        )
        sink.append({"ts": now_rfc3339(), "session": sid, "event": "result", "n": 1, "status": "ok", "sql": [insert]})
        sink.append({"ts": now_rfc3339(), "session": sid, "event": "session_end", "status": "ok"})
    finally:
        sink.close()
    c = client_for(["--log", str(log)])
    began = time.perf_counter()
    listed = c.get("/?wrote=1", headers=bearer()).text
    page = c.get(f"/session/{sid}", headers=bearer())
    took = time.perf_counter() - began
    assert sid in session_ids(listed)
    assert (
        page.status_code == 200
        and "(89999, &#39;name 89999&#39;" in page.text
        and "shown without highlighting" in page.text
    )
    assert took < 2.0, took  # the list (wrote) and the page together; ≤ 1 s each on the bench machine


def test_a_chained_review_appended_by_the_operator_is_not_taken_for_a_review(
    client: TestClient, log: Path, tmp_path: Path
) -> None:
    """Issue 22 attack 7: the operator appends a correctly chained
    review; it shows flagged and the session stays pending."""
    from appshell.audit.records import GENESIS, canonical, now_rfc3339, seal
    from appshell.audit.reviews import review_key_path

    sid = start_of(log, "INC-7")["session"]
    key_file = review_key_path()
    assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600  # made by the server at its start
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    reviews = log.parent / "reviews.jsonl"
    forged = seal(
        {
            "ts": now_rfc3339(),
            "session": sid,
            "event": "review",
            "auditor": "alice",
            "state": "reviewed",
            "note": "fine",
        },
        1,
        GENESIS,
    )
    reviews.write_bytes(canonical(forged) + b"\n")
    page = client.get(f"/session/{sid}", headers=bearer()).text
    assert "NOT verified — not authenticated by this review server&#39;s key" in page and ">verified<" not in page
    assert sid in session_ids(client.get("/?state=pending", headers=bearer()).text)
    assert sid not in session_ids(client.get("/?state=reviewed", headers=bearer()).text)
    # A review the server records goes on the chain and counts.
    login(client)
    token = csrf_of(client.get(f"/session/{sid}").text)
    assert (
        client.post(f"/session/{sid}/review", data={"state": "reviewed", "note": "real", "csrf": token}).status_code
        == 303
    )
    assert sid in session_ids(client.get("/?state=reviewed").text)
    saved = records(reviews)
    assert saved[1]["prev"] == saved[0]["hash"] and "auth" in saved[1] and "auth" not in saved[0]


def test_a_session_far_from_the_end_is_read_to_its_last_line_wherever_it_is(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Far from the end of a big file, a session is read to its last line as one pass over the file found it —
    a record appended long after its end included."""
    import appshell.audit.queries as queries

    monkeypatch.setattr(queries, "FAR", 0)  # every session is "far": the path a 480 MB log takes
    first = records(log)[0]["session"]
    c = client_for(["--log", str(log)])
    assert "Flagged" not in c.get(f"/session/{first}", headers=bearer()).text
    with log.open("a") as f:
        f.write(
            json.dumps({"v": 1, "session": first, "event": "statement", "n": 7, "source": "late_and_forged()"}) + "\n"
        )
    page = c.get(f"/session/{first}", headers=bearer()).text  # read again from where it stopped: the appended line
    assert "late_and_forged" in page and "after the session_end" in page
    fresh = (
        client_for(["--log", str(log)]).get(f"/session/{first}", headers=bearer()).text
    )  # a new server: the one pass
    assert "late_and_forged" in fresh and "after the session_end" in fresh


@pytest.fixture
def sensitive_log(shop: Path) -> tuple[Path, str, str]:
    """Two production sessions of the shop (its protected customers' e-mail and name): one unlocks, one does not.
    (the log, the unlocking session's id, the other's)"""
    unlock = (
        "print(count(Customer))\nunlock('INC-42: customer asked for a copy of their data')\n"
        "print(first(Customer))\nlock()"
    )
    for reason, code in (("INC-41 count only", "print(count(Customer))"), ("INC-42 data request", unlock)):
        result = run(["--profile", "production", "--reason", reason, "-c", code], cwd=shop, process=False)
        assert result.exit_code == 0, result.output
    log = shop / ".appshell" / "audit.jsonl"
    return log, start_of(log, "INC-42")["session"], start_of(log, "INC-41")["session"]


def test_sessions_with_sensitive_access_are_marked_and_can_be_listed_alone(
    sensitive_log: tuple[Path, str, str],
) -> None:
    log, unlocked, plain = sensitive_log
    client = client_for(["--log", str(log)])
    page = client.get("/", headers=bearer()).text
    assert session_ids(page) == [unlocked, plain]
    rows = page.split("<tbody>", 1)[1].split("</tr>")
    assert '<a class="tag sensitive" href="/?sensitive=1"' in rows[0] and "sensitive access</a>" in rows[0]
    assert "tag sensitive" not in rows[1]
    assert '<input type="checkbox" name="sensitive" value="1">' in page
    only = client.get("/?sensitive=1", headers=bearer()).text
    assert session_ids(only) == [unlocked]
    assert '<input type="checkbox" name="sensitive" value="1" checked>' in only
    assert session_ids(client.get("/?sensitive=1&user=nobody", headers=bearer()).text) == []
    assert [
        (r["session"], r["sensitive"]) for r in client.get("/export.json?sensitive=1", headers=bearer()).json()
    ] == [(unlocked, 1)]
    assert 'export <a href="/export.csv?sensitive=1">CSV</a>' in only


def test_the_session_page_says_who_unlocked_what_and_why(sensitive_log: tuple[Path, str, str]) -> None:
    log, unlocked, plain = sensitive_log
    client = client_for(["--log", str(log)])
    page = client.get(f"/session/{unlocked}", headers=bearer()).text
    section = page.split('<section class="sensitive" id="sensitive">', 1)[1].split("</section>", 1)[0]
    assert "Sensitive access: protected data shown 1 time</h2>" in section
    assert "reason: <q>INC-42: customer asked for a copy of their data</q>" in section
    assert "opened: customers.email, customers.name" in section
    anchor = re.search(r'<a href="#(r\d+)">#\d+</a>', section)
    assert anchor is not None
    assert re.search(f'<article class="statement status-[a-z]+ sensitive" id="{anchor[1]}">', page), page
    assert 'id="sensitive"' not in client.get(f"/session/{plain}", headers=bearer()).text


def test_audit_tail_marks_sensitive_access(sensitive_log: tuple[Path, str, str]) -> None:
    log, unlocked, plain = sensitive_log
    from appshell.audit.review import Log, render_tail, tail_json

    tail = render_tail(Log(log))
    assert tail.count("sensitive access") == 1 and tail.index(unlocked) < tail.index("1 sensitive access"), tail
    assert tail.index(plain) < tail.index(unlocked)  # oldest first: the plain session's marks come before
    assert {r["session"]: r["sensitive"] for r in json.loads(tail_json(Log(log)))} == {unlocked: 1, plain: 0}


def test_refused_connections_to_protected_hosts_are_marked(shop: Path) -> None:
    from support.processes import free_port

    profile = shop / "profiles" / "production.toml"
    profile.write_text(profile.read_text().replace("[protect]\n", '[protect]\nhosts = ["127.0.0.1"]\n'))
    port = free_port()  # nothing listens there, and the connect never leaves the process
    code = (
        f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        "except Exception as exc:\n    print(type(exc).__name__)"
    )
    result = run(["--profile", "production", "--reason", "INC-43 search reindex", "-c", code], cwd=shop, process=False)
    assert result.stdout.strip() == "HostRefused", result.output
    log = shop / ".appshell" / "audit.jsonl"
    session = start_of(log, "INC-43")["session"]
    client = client_for(["--log", str(log)])
    assert (
        'title="connections to protected hosts that were refused">protected host refused</span>'
        in client.get("/", headers=bearer()).text
    )
    page = client.get(f"/session/{session}", headers=bearer()).text
    box = page.split('<section class="sensitive" id="protected-hosts">', 1)[1].split("</section>", 1)[0]
    assert "Protected hosts: 1 connection refused</h2>" in box and f"127.0.0.1:{port} (protect.hosts 127.0.0.1)" in box
    assert [r["protected_hosts"] for r in client.get("/export.json", headers=bearer()).json()] == [1]
