"""`appshell audit serve [--log PATH | --url URL] [--host 127.0.0.1] [--port 8023] [--key KEY]`."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from appshell.errors import EXIT_OK, UsageError

__all__ = ["serve", "build_config", "parser", "require_extra"]

EXTRA = ("starlette", "jinja2", "uvicorn", "multipart")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, "see appshell audit serve --help")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="appshell audit serve", description="The auditors' review web page: sessions, reviews, export.",
                epilog="Auditors log in with a token: APPSHELL_REVIEW_TOKENS=name:token,... or --tokens-file FILE "
                       "(name:sha256-of-token lines), or through a reverse proxy that sets --trust-header. See docs/review.md.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--log", metavar="PATH", help="the audit file (default: as the shell would write it)")
    where.add_argument("--url", metavar="URL", help="the database of an SQL sink's appshell_audit table")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8023, help="port (default 8023)")
    p.add_argument("--key", metavar="KEY", help="the verification key `audit init` printed, to authenticate sealed records [APPSHELL_AUDIT_KEY]")
    p.add_argument("--tokens-file", metavar="FILE", help="auditors' hashed tokens, name:sha256hex a line [APPSHELL_REVIEW_TOKENS_FILE]")
    p.add_argument("--trust-header", metavar="NAME", help="take the auditor's name from this header, set by a reverse proxy that "
                                                          "authenticated them (only behind such a proxy) [APPSHELL_REVIEW_TRUST_HEADER]")
    p.add_argument("--reviews", metavar="PATH", help="the reviews file (default: reviews.jsonl beside the log; table appshell_review with --url)")
    return p


def require_extra() -> None:
    """The web stack is the optional extra `appshell[review]`: say so in one line when it is missing."""
    import importlib

    for name in EXTRA:
        try:
            importlib.import_module(name)
        except ImportError:
            raise UsageError(f"appshell audit serve needs the review extra ({name} is not installed)", "pip install 'appshell[review]'") from None


def build_config(opts: argparse.Namespace, environ: Any = os.environ) -> Any:
    from appshell.audit.review import Log
    from appshell.audit.reviews import open_reviews
    from appshell.review_web.app import Config
    from appshell.review_web.auth import load_auditors

    if opts.url:
        log = Log(url=opts.url)
    else:
        from appshell.audit.auditor import default_log_path
        from appshell.settings import resolve

        path = Path(opts.log) if opts.log else default_log_path(resolve({}))
        if not path.is_file():
            raise UsageError(f"no audit log at {path}", "name it with --log PATH (or --url for an SQL sink)")
        log = Log(path=path)
    key_text = opts.key or environ.get("APPSHELL_AUDIT_KEY")
    key = None
    if key_text:
        from appshell.audit.seal import parse_key

        key = parse_key(key_text)
    tokens_file = opts.tokens_file or environ.get("APPSHELL_REVIEW_TOKENS_FILE")
    auditors = load_auditors(environ, Path(tokens_file) if tokens_file else None,
                             opts.trust_header or environ.get("APPSHELL_REVIEW_TRUST_HEADER"))
    if auditors.empty:
        raise UsageError("no auditor could log in to the review page",
                         "set APPSHELL_REVIEW_TOKENS=name:token (or --tokens-file FILE, or --trust-header behind a proxy)")
    return Config(log=log, auditors=auditors, reviews=open_reviews(log.path, log.url, Path(opts.reviews) if opts.reviews else None), key=key)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(argv: Sequence[str]) -> int:
    opts = parser().parse_args(list(argv))
    require_extra()
    config = build_config(opts)
    import uvicorn

    from appshell.review_web.app import create_app

    if not _loopback(opts.host):
        print(f"appshell: warning: listening on {opts.host} over plain HTTP — tokens and reviews cross the network in clear; "
              "put a TLS reverse proxy in front", file=sys.stderr)
    print(f"appshell: review page on http://{opts.host}:{opts.port}/ for {config.log.name} (Ctrl-C stops)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(config), host=opts.host, port=opts.port, log_level="warning", server_header=False, proxy_headers=False)
    return EXIT_OK
