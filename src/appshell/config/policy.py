"""What a profile permits and requires of a session before it opens (docs/safety.md, docs/configuration.md).

The decisions are pure (:func:`check_session`, :func:`audit_problems`); the one
interactive part, asking for a reason at a terminal, is :func:`ask_reason`. The
guards that act while the session runs (read-only, the sandbox, the destructive
statement guard) are in database, sandbox and guard.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from appshell.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from appshell.config.profiles import Profile
    from appshell.config.settings import Settings

__all__ = ["check_session", "ask_reason", "apply_policy", "audit_problems"]


def check_session(profile: Profile, reason: str | None, write: bool) -> bool:
    """Raise for what *profile* does not allow; True where a reason must still be asked for.

    *reason* is the one given (--reason/APPSHELL_REASON), *write* whether --write was passed.
    """
    if reason is not None and not reason.strip():
        raise UsageError(
            "the reason for this session is blank",
            "say why in words: --reason 'INC-42 refund order 17' (or APPSHELL_REASON)",
        )
    if write and not profile.access.allow_write:
        raise ConfigError(f"profile '{profile.name}' does not allow --write", "use another profile or drop --write")
    return profile.access.require_reason and not reason


def ask_reason(profile: str) -> str:
    """The reason, asked at the terminal; an error without one."""
    if not sys.stdin.isatty():
        raise ConfigError(
            f"profile '{profile}' requires a reason for this session",
            "pass --reason TEXT or set APPSHELL_REASON",
        )
    while True:
        try:
            answer = input(f"Reason for this {profile} session (ticket, purpose): ").strip()
        except EOFError:
            raise ConfigError(f"profile '{profile}' requires a reason", "pass --reason TEXT") from None
        if answer:
            return answer
        print("A reason is required.", file=sys.stderr)


def apply_policy(settings: Settings, write: bool, ask: Callable[[str], str] = ask_reason) -> Settings:
    """*settings* as the session may open with them: checked, with the reason asked for where required."""
    if check_session(settings.profile, settings.reason, write):
        return replace(settings, reason=ask(settings.profile.name))
    return settings


def audit_problems(profile: Profile) -> list[ConfigError]:
    """What in *profile*'s audit settings cannot work: a required audit with no sink."""
    if profile.audit.required and not profile.audit.sinks:
        return [
            ConfigError(
                f"profile '{profile.name}' requires the audit (audit.required = true) "
                "but names no sink (audit.sinks = [])",
                f'set audit.sinks in profiles/{profile.name}.toml (e.g. ["file"]), or audit.required = false',
            )
        ]
    return []
