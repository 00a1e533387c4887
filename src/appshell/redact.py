"""Masking of secrets: URL passwords and values of secret-looking variables."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["MASK", "is_secret_name", "mask_url", "mask_mapping", "Redactor"]

MASK = "***"

_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
# scheme://user:password@host — the password is everything up to the last '@'
# of the authority, so passwords holding ':' or '@' are masked whole.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/?#@\s]*:)(?P<pw>[^/?#\s]*)(?P<at>@)")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def mask_url(text: str) -> str:
    """Replace the password of every URL in *text* by ***."""
    return _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["at"], text)


def mask_mapping(values: Mapping[str, object]) -> dict[str, object]:
    """A copy with secret-named values and URL passwords masked."""
    masked: dict[str, object] = {}
    for name, value in values.items():
        if is_secret_name(name) and value not in (None, ""):
            masked[name] = MASK
        elif isinstance(value, str):
            masked[name] = mask_url(value)
        else:
            masked[name] = value
    return masked


class Redactor:
    """Masks secrets in free text: URL passwords, known secret values, extra regexes."""

    def __init__(self, secrets: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._patterns = [re.compile(p) for p in patterns]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], patterns: Iterable[str] = ()) -> Redactor:
        secrets = [v for k, v in environ.items() if is_secret_name(k) and v]
        return cls(secrets, patterns)

    def __call__(self, text: str) -> str:
        text = mask_url(text)
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for pattern in self._patterns:
            text = pattern.sub(MASK, text)
        return text
