"""The banner and the prompt label: what the operator sees first (docs/usage.md)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appshell import __version__
from appshell.boot.engine import own_engine_note
from appshell.config.redact import mask_url

if TYPE_CHECKING:
    from appshell.boot.context import AppContext
    from appshell.boot.release import Parity
    from appshell.config.settings import Settings

__all__ = ["Look", "make_banner", "alarm", "ANSI"]

ANSI = {"red": "31", "yellow": "33", "green": "32", "blue": "34", "magenta": "35", "cyan": "36"}


@dataclass(frozen=True)
class Look:
    """How the shell should look: the prompt label and its colour (``none`` for plain)."""

    label: str
    color: str
    use_color: bool

    def paint(self, text: str, bold: bool = False, readline: bool = False) -> str:
        code = ANSI.get(self.color)
        if not (self.use_color and code):
            return text
        start, end = f"\x1b[{'1;' if bold else ''}{code}m", "\x1b[0m"
        if readline:  # \001 and \002 tell readline that the codes take no room on screen
            start, end = f"\001{start}\002", f"\001{end}\002"
        return f"{start}{text}{end}"

    @classmethod
    def of(cls, settings: Settings) -> Look:
        profile = settings.profile
        label = profile.shell.prompt or profile.name
        # No colour codes where the output is not a terminal (logs, pipes).
        return cls(label=label, color=profile.shell.color, use_color=sys.stdout.isatty())


def alarm(text: str, use_color: bool) -> str:
    """Bold red, whatever the profile's colour: for what must not be missed."""
    return f"\x1b[1;31m{text}\x1b[0m" if use_color else text


def _parity_note(parity: Parity | None, look: Look) -> str:
    if parity is None or parity.state == "unchecked":
        return ""
    if parity.state == "match":
        return " (same as the web process)"
    note = (
        f"  ≠ web process {parity.expected} — MISMATCH"
        if parity.state == "mismatch"
        else "  (web process's release unknown)"
    )
    return alarm(note, look.use_color)


def _read_only_label(settings: Settings) -> str:
    from appshell.safety.readonly_role import read_only_level

    level = read_only_level(settings)
    if level is None:
        return "read-write"
    return (
        "READ-ONLY (enforced: a read-only database role)"
        if level == "enforced"
        else "READ-ONLY (guarded: a session setting, re-checked)"
    )


def make_banner(
    settings: Settings, ctx: AppContext, shell: str, release: str, look: Look, parity: Parity | None = None
) -> str:
    models = sorted(ctx.models)
    shown = ", ".join(models[:8]) + (f", … ({len(models) - 8} more)" if len(models) > 8 else "")
    state = [
        _read_only_label(settings),
        "SANDBOX (all changes rolled back at exit)" if settings.sandbox else "sandbox off",
    ]
    lines = [
        look.paint(f"appshell {__version__} · profile {settings.profile.name} · {shell}", bold=True),
        f"  database  {mask_url(ctx.engine.url.render_as_string(hide_password=True))}",
        *[
            f"  engine    {note}" for note in [own_engine_note(ctx)] if note
        ],  # the app makes its own engine: connections may differ
        f"  mode      {' · '.join(state)}",
        f"  release   {release}{_parity_note(parity, look)}",
        f"  app       {ctx.label} — {len(models)} models: {shown or '(none)'}",
    ]
    if settings.reason:
        lines.append(f"  reason    {settings.reason}")
    lines.append(
        "  helpers() lists the helpers · session, engine, metadata, "
        "settings, appshell_settings are loaded · Ctrl-D exits"
    )
    return "\n".join(lines) + "\n"
