"""`appshell audit replay|export`: a terminal session's recorded
output, played in a terminal or written as asciicast v2.

Both find the session as ``audit show`` does (an id or a unique prefix, in the log that ``--log``,
``--url`` or the shell's own settings name) and read its ``io`` records, the bytes the recorder's
pty relay kept (:mod:`appshell.recorder.relay`). Output is kept only where the profile says
``audit.record_output = true``; a session without it is a one-line error that says so.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appshell.cli.command_line import audit_log
from appshell.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from appshell.audit.review import Session

__all__ = ["audit_replay", "audit_export", "asciicast_header", "VERBS"]

Event = tuple[float, str, bytes]
DEFAULT_SIZE = (80, 24)  # asciinema's own default, where no resize was recorded before the first output


def _recorded(opts: argparse.Namespace, verb: str) -> tuple[Session, list[Event]]:
    """The session named on the command line and its terminal
    events; an error naming the fix where it kept no output."""
    from appshell.audit.review import find_session

    if not opts.session:
        raise UsageError(f"audit {verb} needs a session id", "see appshell audit tail for the ids")
    log = audit_log(opts)
    found = find_session(log, opts.session)
    if found is None:
        raise UsageError(
            f"no single session matches '{opts.session}' in {log.name}", "use an id from appshell audit tail"
        )
    if not found.output_recorded():
        raise UsageError(
            f"session {found.id} has no recorded output (its profile did not record output)",
            "set audit.record_output = true in the profile: later sessions keep what they show; "
            f"appshell audit show {found.id} shows what this one ran",
        )
    return found, found.io_events()


def audit_replay(opts: argparse.Namespace) -> int:
    """Play the session's output in this terminal at its recorded pace (``--speed``, pauses cut to ``--idle-limit``)."""
    from appshell.recorder.replay import play

    if opts.speed <= 0:
        raise UsageError(f"--speed is {opts.speed:g}", "give a positive factor: 1 is as recorded, 2 twice as fast")
    if opts.idle_limit is not None and opts.idle_limit < 0:
        raise UsageError(
            f"--idle-limit is {opts.idle_limit:g}", "give the longest pause to keep, in seconds (0 or more)"
        )
    _, events = _recorded(opts, "replay")
    play(events, sys.stdout.buffer, speed=opts.speed, max_idle=opts.idle_limit)
    return EXIT_OK


def asciicast_header(session: Session, events: list[Event]) -> dict[str, Any]:
    """The header: the size of the last resize before the first output (else 80x24), the time the session started."""
    from appshell.recorder.asciicast import header

    width, height = DEFAULT_SIZE
    for _, stream, data in events:
        if stream == "o":
            break
        if stream == "r":
            cols, _, rows = data.decode("ascii", "replace").partition("x")
            if cols.isdigit() and rows.isdigit():
                width, height = int(cols), int(rows)
    return header(
        width,
        height,
        timestamp=_epoch(session.start.get("ts")),
        title=f"appshell session {session.id}",
        duration=max((t for t, _, _ in events), default=0.0),
    )


def _epoch(ts: Any) -> float | None:
    """An RFC 3339 record time (``2026-11-24T01:02:03.456789Z``)
    as seconds since the epoch; None where it is not one."""
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def audit_export(opts: argparse.Namespace) -> int:
    """Write the session's terminal as asciicast v2 (asciinema's format) to ``-o FILE`` or stdout."""
    from appshell.recorder.asciicast import write

    if not opts.asciicast:
        raise UsageError("audit export needs a format", "use appshell audit export SESSION --asciicast [-o FILE]")
    session, events = _recorded(opts, "export")
    head = asciicast_header(session, events)
    if opts.output and opts.output != "-":
        with Path(opts.output).open("w", encoding="utf-8") as out:
            write(out, head, events)
        print(f"wrote {opts.output}: asciicast v2 (play it with: asciinema play {opts.output})", file=sys.stderr)
    else:
        write(sys.stdout, head, events)
    return EXIT_OK


# The verbs this module serves, as cli.main's AUDIT_VERBS names them.
VERBS = {"replay": audit_replay, "export": audit_export}
