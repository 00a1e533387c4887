"""The profile's session policy (--write, the reason, a required audit's sinks): table-driven, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from appshell.config.policy import apply_policy, audit_problems, check_session
from appshell.config.profiles import build_profile
from appshell.config.settings import resolve
from appshell.errors import EXIT_USAGE, ConfigError, UsageError

BLANK = (
    "appshell: error: the reason for this session is blank — say why "
    "in words: --reason 'INC-42 refund order 17' (or APPSHELL_REASON)"
)
NO_WRITE = "appshell: error: profile 'p' does not allow --write — use another profile or drop --write"

# (allow_write, require_reason, --write given, reason given, expected: True/False = must ask, or the error)
ROWS: list[tuple[bool, bool, bool, str | None, bool | str]] = [
    (True, False, False, None, False),
    (True, False, True, None, False),
    (False, False, False, None, False),  # no --write: nothing to refuse
    (False, False, True, None, NO_WRITE),
    (False, True, True, "INC-1", NO_WRITE),
    (True, True, False, None, True),
    (True, True, False, "INC-1", False),
    (True, True, True, "INC-1", False),
    (True, False, False, "INC-1", False),  # a reason where none is required is kept
    (True, True, False, "   ", BLANK),  # blank is refused before anything else
    (False, False, True, "", BLANK),
    (True, False, False, "\t", BLANK),
]


@pytest.mark.parametrize(("allow_write", "require_reason", "write", "reason", "expected"), ROWS)
def test_check_session(
    allow_write: bool, require_reason: bool, write: bool, reason: str | None, expected: bool | str
) -> None:
    profile = build_profile("p", {"access.allow_write": allow_write, "access.require_reason": require_reason})
    if isinstance(expected, bool):
        assert check_session(profile, reason, write) is expected
        return
    with pytest.raises((UsageError, ConfigError)) as info:
        check_session(profile, reason, write)
    assert info.value.format() == expected and info.value.exit_code == EXIT_USAGE


# (profile file, --reason, what apply_policy leaves as the reason, whether it asked)
APPLY_ROWS = [
    ("[access]\nrequire_reason = true\n", None, "asked: p", True),
    ("[access]\nrequire_reason = true\n", "INC-7", "INC-7", False),
    ("[access]\nrequire_reason = false\n", None, None, False),
]


@pytest.mark.parametrize(("text", "reason", "kept", "asked"), APPLY_ROWS)
def test_apply_policy_asks_only_where_the_profile_requires_a_reason(
    tmp_path: Path, text: str, reason: str | None, kept: str | None, asked: bool
) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "p.toml").write_text(text)
    settings = resolve({"profile": "p", "reason": reason}, environ={}, cwd=tmp_path)
    questions: list[str] = []

    def ask(profile: str) -> str:
        questions.append(profile)
        return f"asked: {profile}"

    assert apply_policy(settings, write=False, ask=ask).reason == kept
    assert questions == (["p"] if asked else [])


# (required, sinks, the error, if any)
AUDIT_ROWS: list[tuple[bool, list[str], str | None]] = [
    (
        True,
        [],
        "appshell: error: profile 'p' requires the audit "
        "(audit.required = true) but names no sink (audit.sinks = []) — "
        'set audit.sinks in profiles/p.toml (e.g. ["file"]), or audit.required = false',
    ),
    (True, ["file"], None),
    (False, [], None),
    (False, ["sql", "syslog"], None),
]


@pytest.mark.parametrize(("required", "sinks", "error"), AUDIT_ROWS)
def test_audit_problems(required: bool, sinks: list[str], error: str | None) -> None:
    problems = audit_problems(build_profile("p", {"audit.required": required, "audit.sinks": sinks}))
    assert [p.format() for p in problems] == ([error] if error else [])
