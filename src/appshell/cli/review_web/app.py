"""The review page as a Starlette app: sessions list, session page, reviews, export; server-rendered, no JavaScript.

Every value from a record reaches the page through Jinja2 with autoescape on,
and first through :func:`appshell.audit.review.printable` (the template
environment's ``finalize``), so no HTML, script or terminal control character
from a statement renders. The Content-Security-Policy allows no script at all.
"""
# Over 350 lines: the review page's routes, each small, with what their templates need.

from __future__ import annotations

import csv
import functools
import io
import json
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from appshell.audit.queries import Catalog, ChainState, Filters, KeyLadder, Summary, verify_session
from appshell.audit.review import Log, Session, printable
from appshell.audit.reviews import STATES, FileReviews, Reviews, SqlReviews
from appshell.cli.review_web.auth import COOKIE, PRELOGIN_COOKIE, SESSION_SECONDS, Auditors, Signer

__all__ = ["Config", "create_app"]

PAGE_SIZE = 50
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
START_FIELDS = [
    ("real_user", "operator (login/sudo user)"),
    ("user", "OS user"),
    ("uid", "uid"),
    ("host", "host"),
    ("ssh_client", "ssh origin"),
    ("tty", "tty"),
    ("pid", "pid"),
    ("mode", "mode"),
    ("shell", "shell"),
    ("profile", "profile"),
    ("app", "app"),
    ("release", "release"),
    ("release_expected", "web release"),
    ("release_parity", "release parity"),
    ("database", "database (masked)"),
    ("sandbox", "sandbox"),
    ("read_only", "read-only"),
    ("reason", "reason"),
    ("argv", "argv"),
    ("sinks", "sinks"),
]
CHAIN_KEYS = {"v", "seq", "ts", "session", "event", "prev", "hash", "epoch", "mac"}
# The records the page shows in its own sections; every other one
# (refused_report, channel_closed, session_info) is listed as written.
SHOWN_AS_STATEMENTS = {"session_start", "session_end", "statement", "result", "io"}


@dataclass
class Config:
    log: Log
    auditors: Auditors
    reviews: FileReviews | SqlReviews
    key: bytes | None = None
    warm: bool = True


def _finalize(value: Any) -> Any:
    from markupsafe import Markup

    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return printable(value)


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader

    env = Environment(loader=PackageLoader("appshell.cli.review_web", "templates"), autoescape=True, finalize=_finalize)
    env.filters["when"] = lambda ts: str(ts or "?")[:19].replace("T", " ")
    env.filters["lines"] = _lines_markup
    return env


def _source_lines(text: str) -> str:
    """Source with every control character but the line break neutralised (a tab shows as \\t)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _lines_markup(value: Any) -> Any:
    """Multi-line text (SQL, errors, notes) escaped, its line breaks kept and every other control character shown."""
    from markupsafe import Markup, escape

    return Markup(escape(_source_lines("" if value is None else str(value))))


HIGHLIGHT_MAX = (
    200_000  # characters: longer sources are shown escaped, not highlighted (pygments is ~linear, ~5 s a MB)
)


def highlight(source: str) -> Any:
    """Python source as highlighted, escaped HTML (pygments escapes every token); a long one escaped only."""
    if len(source) > HIGHLIGHT_MAX:
        return _lines_markup(source)
    return _highlighted(source)


@functools.lru_cache(maxsize=256)
def _highlighted(source: str) -> Any:
    """Highlighting is cached: a page seen again, or the same source in many sessions, is not highlighted again."""
    from markupsafe import Markup
    from pygments import highlight as pyg
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return Markup(pyg(_source_lines(source), PythonLexer(), HtmlFormatter(nowrap=True)))


def _filters(params: Any) -> Filters:
    f = Filters()
    for fd in fields(Filters):
        raw = str(params.get(fd.name, "") or "").strip()[:200]
        setattr(f, fd.name, raw in ("1", "on", "yes", "true") if fd.type in ("bool", bool) else raw)
    if f.state not in ("", "pending", *STATES):
        f.state = ""
    for name in ("sandbox", "read_only"):
        if getattr(f, name) not in ("", "yes", "no"):
            setattr(f, name, "")
    return f


def _query(f: Filters, **extra: Any) -> str:
    pairs = {
        fd.name: ("1" if getattr(f, fd.name) else "") if fd.type in ("bool", bool) else getattr(f, fd.name)
        for fd in fields(Filters)
    }
    pairs.update(extra)
    return urlencode({k: v for k, v in pairs.items() if v not in ("", None)})


class State:
    """The state shared by the requests: catalog, reviews store, key ladder, chain-state cache."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.catalog = Catalog(config.log)
        self.ladder = KeyLadder(config.key) if config.key is not None else None
        self.env = _environment()
        self.signer = Signer()
        self._chains: dict[str, tuple[Any, ChainState]] = {}

    def log_stamp(self) -> Any:
        path = self.config.log.path
        if path is None:
            return None  # a table: checked on each request
        st = path.stat()
        return (st.st_size, st.st_mtime_ns)

    def chain(self, session: Session, position: int | None, stamp: Any) -> ChainState:
        cached = self._chains.get(session.id)
        if cached is not None and stamp is not None and cached[0] == stamp:
            return cached[1]
        state = verify_session(self.config.log, session, position, self.ladder)
        self._chains[session.id] = (stamp, state)
        return state

    def chain_of(self, summary: Summary, positions: dict[str, int], stamp: Any) -> ChainState:
        cached = self._chains.get(summary.id)
        if cached is not None and stamp is not None and cached[0] == stamp:
            return cached[1]
        session = self.catalog.session(summary.id, positions.get(summary.id))
        if session is None:
            return ChainState("unknown", "the session could not be read again")
        return self.chain(session, positions.get(summary.id), stamp)

    def warm(self) -> None:
        """At start, in the background: the keys up to the newest record (with --key), then every session's summary."""
        path = self.config.log.path
        if self.ladder is not None and path is not None:
            import os

            from appshell.audit.filesink import read_tail

            fd = os.open(path, os.O_RDONLY)
            try:
                last, _, _ = read_tail(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            if last is not None and isinstance(last.get("epoch"), int) and last["epoch"] < int(last.get("seq") or 0):
                self.ladder.key(last["epoch"])  # (a forged epoch beyond its seq is not stepped to: never a hang)
        self.catalog.warm()

    def render(self, name: str, **context: Any) -> str:
        return str(self.env.get_template(name).render(**context))


def create_app(config: Config) -> Any:
    """The ASGI app (Starlette imported here: never at appshell start-up)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route

    state = State(config)
    auditors = config.auditors
    config.reviews.ensure_key()  # the review server holds the key that authenticates reviews (made at its first start)
    css = (Path(__file__).parent / "static" / "style.css").read_text(encoding="utf-8")
    from pygments.formatters import HtmlFormatter

    css += "\n" + HtmlFormatter().get_style_defs(".src")

    def secured(response: Response) -> Response:
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    def who(request: Request) -> tuple[str | None, str]:
        """(auditor, CSRF binding) of the request: proxy header, bearer token or session cookie."""
        if auditors.trust_header:
            proxied = request.headers.get(auditors.trust_header, "").strip()[:64]
            if proxied:
                return proxied, f"header|{proxied}"
        authz = request.headers.get("authorization", "")
        if authz.lower().startswith("bearer "):
            bearer = auditors.by_token(authz[7:].strip())
            return bearer, f"bearer|{bearer}"
        cookie = request.cookies.get(COOKIE)
        signed = state.signer.auditor(cookie)
        if signed is not None and signed in auditors.hashes:
            return signed, f"cookie|{cookie}"
        return None, ""

    def login_page(request: Request, message: str = "", status: int = 401) -> Response:
        import secrets

        nonce = request.cookies.get(PRELOGIN_COOKIE) or secrets.token_urlsafe(24)
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        html = state.render(
            "login.html",
            csrf=state.signer.csrf(f"login|{nonce}"),
            message=message,
            next=_local(nxt) if nxt != "/login" else "/",
            header=auditors.trust_header,
            tokens=bool(auditors.hashes),
        )
        response = secured(HTMLResponse(html, status_code=status))
        response.set_cookie(PRELOGIN_COOKIE, nonce, httponly=True, samesite="strict", max_age=3600)
        return response

    async def authed(request: Request) -> tuple[str | None, str, Response | None]:
        name, binding = who(request)
        if name is None:
            return None, "", login_page(request)
        if request.method == "POST":
            form = await request.form()
            if not state.signer.csrf_ok(binding, str(form.get("csrf") or "")):
                return (
                    None,
                    "",
                    secured(
                        PlainTextResponse(
                            "403: missing or wrong CSRF token — reload the page and submit again", status_code=403
                        )
                    ),
                )
        return name, binding, None

    def banner(reviews: Reviews) -> str | None:
        return f"the review chain is broken: {reviews.broken}" if reviews.broken else None

    def list_view(f: Filters, before: int | None, auditor: str, binding: str) -> str:
        reviews = config.reviews.load()
        page, nxt = state.catalog.page(f, reviews.state, before, PAGE_SIZE)
        stamp = state.log_stamp()
        positions = dict(state.catalog.entries())
        rows = [(s, reviews.state(s.id), state.chain_of(s, positions, stamp)) for s in page]
        return state.render(
            "list.html",
            rows=rows,
            f=f,
            auditor=auditor,
            csrf=state.signer.csrf(binding),
            log=config.log.name,
            next_url=f"/?{_query(f, before=nxt)}" if nxt is not None else None,
            first_url=f"/?{_query(f)}" if before is not None else None,
            export_csv=f"/export.csv?{_query(f)}",
            export_json=f"/export.json?{_query(f)}",
            banner=banner(reviews),
            total=len(positions),
            states=("pending", *STATES),
            reviews=reviews,
        )

    async def index(request: Request) -> Response:
        auditor, binding, refused = await authed(request)
        if refused is not None or auditor is None:
            return refused or login_page(request)
        before = request.query_params.get("before", "")
        html = await run_in_threadpool(
            list_view, _filters(request.query_params), int(before) if before.isdigit() else None, auditor, binding
        )
        return secured(HTMLResponse(html))

    def session_view(session_id: str, auditor: str, binding: str) -> str | None:
        positions = dict(state.catalog.entries())
        if session_id not in positions:
            return None
        session = state.catalog.session(session_id, positions[session_id])
        if session is None or not session.start:
            return None
        chain = state.chain(session, positions[session_id], state.log_stamp())
        reviews = config.reviews.load()
        statements = []
        sensitive = []  # each unlock(reason): who, why, what it opened, and where it is among the statements
        refused_hosts = []  # each connection to a protected host that was refused
        per_record = dict(zip((id(r) for r in session.records), session.record_flags()))
        for k, (st, results) in enumerate(session.blocks()):
            result = results[0] if results else {}
            flags = [
                f"{r.get('event')}: {f}" for r in ([st] if st else []) + results for f in per_record.get(id(r), [])
            ]
            flags += [f"another result for #{st.get('n')}: {r.get('status')}" for r in results[1:]]
            files = [
                {**f, "html": highlight(str(f["text"])) if isinstance(f.get("text"), str) else None}
                for f in (st.get("files") or [])
                if isinstance(f, dict)
            ]
            if st.get("path") or st.get("sha256"):
                files.insert(0, {"path": st.get("path"), "sha256": st.get("sha256")})
            source = str(st.get("source") or "") if st else ""
            masked = st.get("redacted")
            redacted: dict[str, Any] = masked if isinstance(masked, dict) else {}
            digest = (
                f"masked before it was recorded; sha256 of the text as typed: {redacted.get('source')}"
                if redacted.get("source")
                else None
            )
            statements.append(
                {
                    "n": st.get("n") if st else result.get("n"),
                    "anchor": f"r{k}",
                    "ts": (st or result).get("ts"),
                    "kind": st.get("kind") if st else "(a result with no statement before it)",
                    "html": highlight(source),
                    "plain": len(source) > HIGHLIGHT_MAX,
                    "size": len(source),
                    "limit": HIGHLIGHT_MAX,
                    "status": result.get("status", "no result recorded"),
                    "duration": result.get("duration_ms"),
                    "sql": [str(q) for r in results for q in (r.get("sql") or [])],
                    "error": result.get("error"),
                    "files": files,
                    "result_ts": result.get("ts"),
                    "flags": flags,
                    "digest": digest,
                    "sensitive": bool(st)
                    and st.get("kind") in ("sensitive_access", "sensitive_access_end", "protected_host"),
                }
            )
            if st and st.get("kind") == "protected_host":
                refused_hosts.append(
                    {
                        "anchor": f"r{k}",
                        "n": st.get("n"),
                        "ts": st.get("ts"),
                        "host": st.get("host"),
                        "pattern": st.get("pattern"),
                    }
                )
            if st and st.get("kind") == "sensitive_access":
                sensitive.append(
                    {
                        "anchor": f"r{k}",
                        "n": st.get("n"),
                        "ts": st.get("ts"),
                        "reason": st.get("reason"),
                        "user": st.get("user"),
                        "role": st.get("role"),
                        "opened": [*_strings(st.get("columns")), *_strings(st.get("hosts"))],
                    }
                )
        start = session.start
        said = set(session.reported_by_session() or ())
        known = [
            (label + (" (reported by the session)" if key in said else ""), start.get(key))
            for key, label in START_FIELDS
            if key in start
        ]
        other = [(k, v) for k, v in sorted(start.items()) if k not in CHAIN_KEYS and k not in dict(START_FIELDS)]
        end = session.end or {}
        end_other = [
            (k, v)
            for k, v in sorted(end.items())
            if k not in CHAIN_KEYS and k not in ("status", "statements", "duration_ms")
        ]
        terminal = _terminal(session)
        others = [
            (
                where,
                r.get("event"),
                r.get("ts"),
                json.dumps({k: v for k, v in sorted(r.items()) if k not in CHAIN_KEYS}, ensure_ascii=False),
            )
            for r, where in zip(session.records, session.where)
            if r.get("event") not in SHOWN_AS_STATEMENTS
        ]
        return state.render(
            "session.html",
            s=session,
            terminal=terminal,
            others=others,
            flags=session.flags() if session.end is not None else session.flags()[:-1],
            start=start,
            known=known,
            other=other,
            end=session.end,
            end_other=end_other,
            statements=statements,
            sensitive=sensitive,
            refused_hosts=refused_hosts,
            chain=chain,
            history=reviews.of(session_id),
            review_state=reviews.state(session_id),
            banner=banner(reviews),
            auditor=auditor,
            csrf=state.signer.csrf(binding),
            states=STATES,
            fmt=lambda v: (
                json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else ("-" if v is None else str(v))
            ),
        )

    async def session_page(request: Request) -> Response:
        auditor, binding, refused = await authed(request)
        if refused is not None or auditor is None:
            return refused or login_page(request)
        html = await run_in_threadpool(session_view, request.path_params["session"], auditor, binding)
        if html is None:
            return secured(PlainTextResponse("404: no such session in this log", status_code=404))
        return secured(HTMLResponse(html))

    async def review(request: Request) -> Response:
        auditor, _, refused = await authed(request)
        if refused is not None or auditor is None:
            return refused or login_page(request)
        session_id = request.path_params["session"]
        form = await request.form()
        verdict, note = str(form.get("state") or ""), str(form.get("note") or "")
        if verdict not in STATES:
            return secured(PlainTextResponse(f"400: state must be one of {', '.join(STATES)}", status_code=400))
        if session_id not in dict(await run_in_threadpool(state.catalog.entries)):
            return secured(PlainTextResponse("404: no such session in this log", status_code=404))
        await run_in_threadpool(config.reviews.append, session_id, auditor, verdict, note)
        return secured(RedirectResponse(f"/session/{quote(session_id, safe='')}#reviews", status_code=303))

    def export_rows(f: Filters) -> list[dict[str, Any]]:
        reviews = config.reviews.load()
        latest = reviews.latest
        rows = []
        for s in state.catalog.all(f, reviews.state):
            last = latest.get(s.id)
            rows.append(
                {
                    "session": s.id,
                    "started": s.start.get("ts"),
                    "user": s.start.get("user"),
                    "real_user": s.start.get("real_user"),
                    "host": s.start.get("host"),
                    "ssh_client": s.start.get("ssh_client"),
                    "profile": s.start.get("profile"),
                    "mode": s.start.get("mode"),
                    "reason": s.start.get("reason"),
                    "statements": s.statements,
                    "status": s.status,
                    "errors": s.errors,
                    "wrote": s.wrote,
                    "sensitive": s.sensitive,
                    "protected_hosts": s.protected_hosts,
                    "sandbox": bool(s.start.get("sandbox")),
                    "read_only": bool(s.start.get("read_only")),
                    "review_state": reviews.state(s.id),
                    "reviewed_by": last.auditor if last else None,
                    "review_note": last.note if last else None,
                    "review_chain": "broken" if reviews.broken else "intact",
                    "flags": s.flags,
                }
            )
        return rows

    async def export(request: Request) -> Response:
        auditor, _, refused = await authed(request)
        if refused is not None or auditor is None:
            return refused or login_page(request)
        fmt = request.path_params["fmt"]
        if fmt not in ("csv", "json"):
            return secured(PlainTextResponse("404: export as .csv or .json", status_code=404))
        rows = await run_in_threadpool(export_rows, _filters(request.query_params))
        if fmt == "json":
            body = json.dumps(rows, indent=1, ensure_ascii=True)  # \u001b, never a raw control character
            return secured(
                Response(
                    body,
                    media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="sessions.json"'},
                )
            )
        out = io.StringIO()
        writer = csv.writer(out)
        names = list(rows[0]) if rows else ["session"]
        writer.writerow(names)
        for row in rows:
            writer.writerow([_cell(row[k]) for k in names])
        return secured(
            Response(
                out.getvalue(),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="sessions.csv"'},
            )
        )

    async def login(request: Request) -> Response:
        if request.method == "GET":
            name, _ = who(request)
            return secured(RedirectResponse("/", status_code=303)) if name else login_page(request, status=200)
        form = await request.form()
        nonce = request.cookies.get(PRELOGIN_COOKIE)
        if not state.signer.csrf_ok(f"login|{nonce}" if nonce else None, str(form.get("csrf") or "")):
            return secured(
                PlainTextResponse(
                    "403: missing or wrong CSRF token — reload the login page and try again", status_code=403
                )
            )
        name = auditors.by_token(str(form.get("token") or "").strip())
        if name is None:
            return login_page(request, "that token belongs to no auditor")
        nxt = str(form.get("next") or "/")
        response = secured(RedirectResponse(_local(nxt), status_code=303))
        response.set_cookie(
            COOKIE,
            state.signer.cookie(name),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(PRELOGIN_COOKIE)
        return response

    async def logout(request: Request) -> Response:
        auditor, _, refused = await authed(request)
        if refused is not None:
            return refused
        response = secured(RedirectResponse("/login", status_code=303))
        response.delete_cookie(COOKIE)
        return response

    async def stylesheet(request: Request) -> Response:
        return secured(Response(css, media_type="text/css"))

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/session/{session}", session_page),
            Route("/session/{session}/review", review, methods=["POST"]),
            Route("/export.{fmt:str}", export),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/static/style.css", stylesheet),
        ]
    )
    app.state.review = state
    if config.warm:
        threading.Thread(target=state.warm, name="appshell-review-warm", daemon=True).start()
    return app


def _terminal(session: Session) -> dict[str, Any] | None:
    """What the page shows of a terminal session: its output as text where it was recorded, else what was typed."""
    from appshell.audit.review import typed_lines

    events = session.io_events()
    if not events and not isinstance(session.start.get("terminal"), dict):
        return None
    if session.output_recorded():
        from appshell.recorder.replay import as_text

        return {"output": as_text(events), "typed": None, "id": session.id}
    return {"output": None, "typed": [(f"{t:.2f}", line) for t, line in typed_lines(events)], "id": session.id}


def _local(url: str) -> str:
    """*url* if it is a path on this site, else "/": after logging in, never sent to another site."""
    ok = url.startswith("/") and url[1:2] not in ("/", "\\") and not any(c in url for c in "\r\n\t\\")
    return url if ok else "/"


def _strings(value: Any) -> list[str]:
    """A record's list of names (columns, hosts) as strings; anything else (a forged shape) as one string."""
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: control characters escaped, no formula."""
    text = "" if value is None else printable(str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
