"""`appshell audit serve [--log PATH | --url URL] [--host 127.0.0.1] [--port 8023] [--key KEY]`.

Its flags are declared with every other command's (appshell.cli.command_line), and its log and key
are resolved there, as for the other audit verbs; here is what the review page makes of them.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

from appshell.cli.command_line import audit_key, audit_log
from appshell.cli.command_line import parser as command_parser
from appshell.errors import EXIT_OK, UsageError

__all__ = ["serve", "build_config", "parser", "require_extra"]

EXTRA = ("starlette", "jinja2", "uvicorn", "multipart")


def parser() -> argparse.ArgumentParser:
    """``appshell audit serve``'s parser, made from the one table of flags."""
    return command_parser("audit serve")


def require_extra() -> None:
    """The web stack is the optional extra `appshell[review]`: say so in one line when it is missing."""
    import importlib

    for name in EXTRA:
        try:
            importlib.import_module(name)
        except ImportError:
            raise UsageError(
                f"appshell audit serve needs the review extra ({name} is not installed)",
                "pip install 'appshell[review]'",
            ) from None


def build_config(opts: argparse.Namespace, environ: Any = os.environ) -> Any:
    from appshell.audit.reviews import open_reviews
    from appshell.cli.review_web.app import Config
    from appshell.cli.review_web.auth import load_auditors

    log = audit_log(opts)
    key = audit_key(opts, environ)
    tokens_file = opts.tokens_file or environ.get("APPSHELL_REVIEW_TOKENS_FILE")
    auditors = load_auditors(
        environ,
        Path(tokens_file) if tokens_file else None,
        opts.trust_header or environ.get("APPSHELL_REVIEW_TRUST_HEADER"),
    )
    if auditors.empty:
        raise UsageError(
            "no auditor could log in to the review page",
            "set APPSHELL_REVIEW_TOKENS=name:token (or --tokens-file FILE, or --trust-header behind a proxy)",
        )
    return Config(
        log=log,
        auditors=auditors,
        reviews=open_reviews(log.path, log.url, Path(opts.reviews) if opts.reviews else None),
        key=key,
    )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(opts: argparse.Namespace) -> int:
    """Serve the review page for *opts* (``appshell audit serve``'s, parsed by :func:`parser`)."""
    require_extra()
    config = build_config(opts)
    import uvicorn

    from appshell.cli.review_web.app import create_app

    if not _loopback(opts.host):
        print(
            f"appshell: warning: listening on {opts.host} over plain "
            "HTTP — tokens and reviews cross the network in clear; "
            "put a TLS reverse proxy in front",
            file=sys.stderr,
        )
    print(
        f"appshell: review page on http://{opts.host}:{opts.port}/ for {config.log.name} (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        create_app(config),
        host=opts.host,
        port=opts.port,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
    )
    return EXIT_OK
