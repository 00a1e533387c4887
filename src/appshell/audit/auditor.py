"""The auditor: turns the journal's statements into audit records in every sink.

Where the profile sets ``audit.required``, a sink that cannot be opened stops
appshell before the shell starts, and a sink that fails mid-session stops the
next statement (exit 3 in non-interactive modes). Elsewhere a failing sink is
dropped with one warning, and the session goes on.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appshell.audit.identity import identity
from appshell.audit.records import encodable, now_rfc3339
from appshell.audit.sinks import AuditSink, FileSink, SqlSink, SyslogSink
from appshell.config.redact import Redactor, mask_url
from appshell.config.settings import session_redactor
from appshell.errors import AppshellError, AuditFailure

if TYPE_CHECKING:
    from appshell.config.settings import Settings
    from appshell.record.journal import Entry

__all__ = ["Auditor", "open_auditor", "default_log_path", "audit_url", "syslog_address"]


def default_log_path(settings: Settings) -> Path:
    """--audit-log, APPSHELL_AUDIT_LOG, profile audit.path; else .appshell/audit.jsonl in the project."""
    if settings.audit_log:
        path = Path(settings.audit_log).expanduser()
        return path if path.is_absolute() or settings.project_root is None else settings.project_root / path
    if settings.project_root is not None:
        return settings.project_root / ".appshell" / "audit.jsonl"
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "appshell" / "audit.jsonl"


def audit_url(settings: Settings, database_url: str) -> str:
    """The database of the sql sink: the resolved audit URL (APPSHELL_AUDIT_URL, audit.url: under audit.locked
    the profile's), its ``${NAME}`` password filled in, else the app's own database."""
    if not settings.audit_url:
        return database_url
    from appshell.config.settings import expand_url_password

    return expand_url_password(settings.audit_url, {**settings.dotenv, **os.environ})


def syslog_address(settings: Settings) -> str:
    """Where the syslog sink sends: the resolved address (APPSHELL_SYSLOG_ADDRESS, audit.syslog_address), else
    /dev/log."""
    return settings.audit_syslog or "/dev/log"


# What a failed record means for the code it records, said exactly (issue 9):
# an operator who reads "not run" after it ran would run it again.
CONSEQUENCES = {
    "session_start": ("the session was not started", ""),
    "statement": ("the statement was not run", ""),
    "result": ("it ran; its outcome could not be recorded", "check whether it took effect before running it again; "),
    "session_end": ("it ran; its outcome could not be recorded", "the session's statements ran; "),
}


def _redact_tree(value: Any, redact: Redactor, digests: dict[str, str] | None = None, where: str = "") -> Any:
    """*value* with secrets masked; in *digests*, for each text a pattern (a URL's password, a profile regex) changed,
    the sha256 of that text with only appshell's own known secrets masked (issue 22 item 8: redaction never erases
    evidence — an auditor holding the text the operator ran can prove it is what ran)."""
    if isinstance(value, str):
        masked = redact(value)
        if masked != value and digests is not None:
            known = redact.known(value)
            if known != masked:  # a pattern masked more than the values appshell read: keep a digest of what it masked
                digests[where] = hashlib.sha256(known.encode("utf-8", "surrogatepass")).hexdigest()
        return masked
    if isinstance(value, list):
        return [_redact_tree(v, redact, digests, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _redact_tree(v, redact, digests, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    return value


class Auditor:
    """A journal sink that writes the records of docs/audit.md to the audit sinks."""

    def __init__(self, sinks: list[AuditSink], required: bool, redact: Redactor) -> None:
        self.sinks = sinks
        self.required = required
        self.redact = redact
        self.session = uuid.uuid4().hex[:16]
        self.started = time.perf_counter()
        self.statements = 0
        self.ended = False

    def _write(self, event: str, fields: dict[str, Any]) -> None:
        # Made encodable once, before any sink: undecodable input is the input's
        # property, not a sink's failure, and every sink records the same body.
        body = encodable({"ts": now_rfc3339(), "session": self.session, "event": event, **fields})
        digests: dict[str, str] = {}
        # Digests for what the operator ran (statements, their SQL and errors) only: a session_start's
        # database URL or argv holds real credentials, and a digest of a short one could be guessed.
        body = _redact_tree(body, self.redact, digests if event in ("statement", "result") else None)
        if digests:
            body["redacted"] = digests  # field path -> sha256 of its text before the pattern masks (see _redact_tree)
        for sink in list(self.sinks):
            try:
                sink.append(body)
            except Exception as exc:
                self._failed(sink, event, exc)

    def write(self, event: str, fields: dict[str, Any]) -> None:
        """One record of *event* to every sink (the recorder's, and what it seals for the session)."""
        self._write(event, fields)

    def close(self) -> None:
        """Close the sinks without a session_end of this auditor's own (the recorder writes that one itself)."""
        self.ended = True
        for sink in self.sinks:
            sink.close()

    def _failed(self, sink: AuditSink, event: str, exc: Exception) -> None:
        path = getattr(sink, "path", None)  # a file sink names its file
        where = f"{sink.name} sink" + (f" ({path})" if path is not None else "")
        what = f"audit {where} failed ({type(exc).__name__}: {exc})"
        if self.required:
            consequence, fix = CONSEQUENCES.get(event, (f"its {event} record was not written", ""))
            how = (
                exc.fix
                if isinstance(exc, AppshellError)
                else "fix the sink (permissions, disk, database) and reopen appshell"
            )
            if isinstance(exc, AppshellError):
                what = f"audit {where} failed: {exc.what}"
            raise AuditFailure(f"the {what}; {consequence}", f"{fix}{how}") from exc
        self.sinks.remove(sink)
        print(f"appshell: warning: {what} — continuing without it (audit.required is off)", file=sys.stderr)

    # -- the session ------------------------------------------------------------

    def start(self, fields: dict[str, Any]) -> None:
        # Which sinks hold this session, and which file: what `verify --witness` compares.
        files = [str(Path(getattr(s, "path")).resolve()) for s in self.sinks if s.name == "file"]
        where = {"sinks": [s.name for s in self.sinks], "audit_log": files[0] if files else None}
        self._write("session_start", {**identity(), **where, **fields})

    def end(self, status: str) -> None:
        if self.ended:
            return
        self.ended = True
        duration = round((time.perf_counter() - self.started) * 1000, 3)
        try:
            self._write("session_end", {"status": status, "statements": self.statements, "duration_ms": duration})
        finally:
            for sink in self.sinks:
                sink.close()

    # -- the journal's Sink protocol -------------------------------------------

    def statement(self, entry: Entry, extra: dict[str, Any]) -> None:
        self.statements += 1
        self._write("statement", {"n": entry.n, "source": entry.source, "kind": entry.kind, **extra})

    def result(self, entry: Entry) -> None:
        self._write(
            "result",
            {
                "n": entry.n,
                "status": entry.status,
                "error": entry.error,
                "duration_ms": entry.duration_ms,
                "sql": entry.sql,
            },
        )


def _open_sink(kind: str, settings: Settings, database_url: str) -> AuditSink:
    if kind == "file":
        return FileSink(default_log_path(settings))
    if kind == "sql":
        return SqlSink(audit_url(settings, database_url))
    return SyslogSink(syslog_address(settings))


def open_auditor(settings: Settings, database_url: str) -> Auditor:
    """Open the profile's sinks; a required one that fails to open stops appshell (exit 3)."""
    profile = settings.profile
    required = profile.audit.required
    sinks: list[AuditSink] = []
    for kind in profile.audit.sinks:
        try:
            sinks.append(_open_sink(kind, settings, database_url))
        except Exception as exc:
            hint = {
                "file": "--audit-log/APPSHELL_AUDIT_LOG/audit.path",
                "sql": "APPSHELL_AUDIT_URL or the database",
                "syslog": "the syslog daemon",
            }[kind]
            if isinstance(exc, AppshellError):  # it knows its fix (a driver to install)
                message, fix = f"cannot open the audit {kind} sink: {mask_url(exc.what)}", exc.fix
            else:
                message, fix = (
                    f"cannot open the audit {kind} sink ({type(exc).__name__}: {mask_url(str(exc))})",
                    f"check {hint}",
                )
            if required:
                raise AuditFailure(message, f"{fix}; profile '{profile.name}' requires the audit") from None
            print(f"appshell: warning: {message} — {fix}; continuing without it", file=sys.stderr)
    redact = session_redactor(settings, os.environ)  # the profile decides what may be masked
    return Auditor(sinks, required, redact)
