"""Who may use the review page: per-auditor tokens, or a trusted reverse-proxy header; sessions and CSRF tokens.

Tokens come from ``APPSHELL_REVIEW_TOKENS`` (``name:token,name:token``) and/or
a file of hashed tokens (one ``name:sha256-hex-of-token`` a line, ``#``
comments). Only the sha256 of each token is kept in memory, and a presented
token is compared with every auditor's hash by ``hmac.compare_digest``.

After a login the browser holds a cookie ``name|expiry|mac`` signed with a
key drawn at server start (a restart logs everybody out). Every POST carries a
CSRF token: for a logged-in auditor the HMAC of their session cookie, for the
login form the HMAC of a random pre-login cookie (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from appshell.errors import ConfigError

__all__ = ["Auditors", "Signer", "load_auditors", "hash_token", "COOKIE", "PRELOGIN_COOKIE", "SESSION_SECONDS"]

COOKIE = "appshell_review"
PRELOGIN_COOKIE = "appshell_review_login"
SESSION_SECONDS = 8 * 3600
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class Auditors:
    hashes: dict[str, str] = field(default_factory=dict)  # name -> sha256 hex of the token
    trust_header: str | None = None  # e.g. X-Forwarded-User, set by a reverse proxy that authenticated the user

    def by_token(self, token: str) -> str | None:
        """The auditor whose token this is; every hash is compared, in constant time each."""
        given = hash_token(token).encode()
        found = None
        for name, expected in self.hashes.items():
            if hmac.compare_digest(given, expected.encode()):
                found = name
        return found

    @property
    def empty(self) -> bool:
        return not self.hashes and not self.trust_header


def _add(auditors: Auditors, name: str, hashed: str, where: str) -> None:
    name = name.strip()
    if not _NAME.match(name):
        raise ConfigError(f"{where}: auditor name {name!r} is not letters, digits, _ . @ -", f"fix the name in {where}")
    if name in auditors.hashes:
        raise ConfigError(f"{where}: auditor {name!r} is listed twice", f"keep one token per auditor in {where}")
    auditors.hashes[name] = hashed


def load_auditors(
    environ: dict[str, str] | os._Environ[str], tokens_file: Path | None, trust_header: str | None
) -> Auditors:
    auditors = Auditors(trust_header=trust_header or None)
    for item in filter(None, (p.strip() for p in environ.get("APPSHELL_REVIEW_TOKENS", "").split(","))):
        name, sep, token = item.partition(":")
        if not sep or len(token) < 16:
            raise ConfigError(
                "APPSHELL_REVIEW_TOKENS has an entry that is not name:token with a token of 16+ characters",
                "set APPSHELL_REVIEW_TOKENS=alice:$(python -c 'import secrets; print(secrets.token_urlsafe())')",
            )
        _add(auditors, name, hash_token(token), "APPSHELL_REVIEW_TOKENS")
    if tokens_file is not None:
        try:
            text = tokens_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read the tokens file {tokens_file}: {exc.strerror}", "check --tokens-file"
            ) from None
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, hashed = line.partition(":")
            hashed = hashed.strip().lower()
            if not sep or not re.fullmatch(r"[0-9a-f]{64}", hashed):
                raise ConfigError(
                    f"{tokens_file}:{number} is not name:<sha256 hex of the token>",
                    "write lines like alice:$(printf %s TOKEN | sha256sum | cut -c1-64)",
                )
            _add(auditors, name, hashed, f"{tokens_file}:{number}")
    return auditors


class Signer:
    """Signs session cookies and derives CSRF tokens with a key drawn at start."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)

    def _mac(self, *parts: str) -> str:
        return hmac.new(self.key, "|".join(parts).encode("utf-8"), "sha256").hexdigest()

    def cookie(self, auditor: str, now: float | None = None) -> str:
        expiry = str(int((now or time.time()) + SESSION_SECONDS))
        return f"{auditor}|{expiry}|{self._mac('session', auditor, expiry)}"

    def auditor(self, cookie: str | None, now: float | None = None) -> str | None:
        if not cookie or cookie.count("|") != 2:
            return None
        auditor, expiry, mac = cookie.split("|")
        if not hmac.compare_digest(mac, self._mac("session", auditor, expiry)) or not expiry.isdigit():
            return None
        return auditor if int(expiry) > (now or time.time()) else None

    def csrf(self, binding: str) -> str:
        """The CSRF token for a session cookie (or a pre-login cookie)."""
        return self._mac("csrf", binding)

    def csrf_ok(self, binding: str | None, token: str | None) -> bool:
        return bool(binding) and bool(token) and hmac.compare_digest(self.csrf(binding or ""), token or "")
