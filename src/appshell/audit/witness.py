"""`audit verify --witness URL`: the file against the SQL sink's table, which the operator cannot rewrite.

Both sinks receive the same body for every record; only the chain fields
differ (see :func:`~appshell.audit.records.body_digest`). Per session, the
witness's records and the file's must be the same, in the same order. Only
sessions that wrote to both are compared: those whose ``session_start`` names
this file (``audit_log``) and lists the ``sql`` sink.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from appshell.audit.records import body_digest
from appshell.audit.verify import Report, rotation_set

__all__ = ["compare"]

Entry = tuple[str, str, Any, str]  # (where, event, n, body digest)


def _file_sessions(path: Path) -> tuple[dict[str, list[Entry]], set[str], str | None, set[str]]:
    sessions: dict[str, list[Entry]] = defaultdict(list)
    logs: set[str] = set()
    with_sql: set[str] = set()  # sessions whose session_start lists the sql sink
    last_ts = None
    for file in rotation_set(path):
        with file.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue  # damage: verify without --witness names it
                if not isinstance(record, dict) or "session" not in record:
                    continue
                if record.get("event") == "session_start":
                    if record.get("audit_log"):
                        logs.add(str(record["audit_log"]))
                    if "sql" in (record.get("sinks") or []):
                        with_sql.add(str(record["session"]))
                sessions[str(record["session"])].append(
                    (f"{file}:{number}", str(record.get("event")), record.get("n"), body_digest(record))
                )
                last_ts = record.get("ts", last_ts)
    return sessions, logs, last_ts, with_sql


def compare(path: Path, url: str, report: Report) -> Report:
    """Missing, extra and altered records between the file set at *path* and the witness table at *url*."""
    from appshell.audit.sqlsink import TABLE, read_rows

    file_sessions, logs, last_ts, with_sql = _file_sessions(path)
    logs.add(str(path.resolve()))
    witness: dict[str, list[Entry]] = defaultdict(list)
    in_scope: set[str] = set()
    witness_ts: dict[str, str] = {}
    for row_id, raw in read_rows(url):
        record = json.loads(raw)
        session = str(record.get("session"))
        if record.get("event") == "session_start" and str(record.get("audit_log")) in logs:
            in_scope.add(session)
        witness[session].append(
            (f"{TABLE}#id={row_id}", str(record.get("event")), record.get("n"), body_digest(record))
        )
        witness_ts[f"{TABLE}#id={row_id}"] = str(record.get("ts"))
    for session, entries in file_sessions.items():
        start = entries[0]
        if start[1] == "session_start" and session not in witness:
            in_scope.add(session)  # it wrote to this file; if it listed the sql sink, the witness must have it
    problems: list[str] = []
    cut: list[str] = []
    compared = 0
    for session in sorted(in_scope):
        mine, theirs = file_sessions.get(session, []), witness.get(session, [])
        if not theirs and session not in with_sql:
            continue
        compared += 1
        for i in range(max(len(mine), len(theirs))):
            m = mine[i] if i < len(mine) else None
            t = theirs[i] if i < len(theirs) else None
            if m is not None and t is not None and m[3] != t[3]:
                problems.append(
                    f"{m[0]}: altered — session {session} {m[1]} "
                    f"{m[2] if m[2] is not None else ''} differs from the witness ({t[0]})"
                )
            elif m is None and t is not None:
                what = f"session {session} {t[1]} {t[2] if t[2] is not None else ''} ({t[0]})"
                (cut if last_ts is None or witness_ts[t[0]] > last_ts else problems).append(what)
            elif t is None and m is not None:
                problems.append(f"{m[0]}: extra — session {session} {m[1]} is not in the witness")
    if cut:
        problems.append(
            f"the file's tail was cut: the witness holds {len(cut)} "
            f"record(s) after the file's last line, first {cut[0]}"
        )
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Report(False, f"witness {TABLE}: {problems[0]}{more}", report.warnings + problems[1:])
    return Report(
        True, f"{report.summary}; the witness holds the same {compared} session(s), record for record", report.warnings
    )
