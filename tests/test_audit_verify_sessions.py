"""`audit verify` checks each session's records (issue 22 item 6): forged, properly sealed records are named,
not passed.

The forgeries are sealed the way a same-user operator can seal them: a FileSink appends them, so
the real Sealer seals each with the current key from ``audit.seal``. Every case is checked both by
the line-by-line walk and by the parallel pass, which must agree.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.audit import both_ways
from support.environment import clean_environ
from support.paths import APPSHELL

from appshell.audit import verify as verify_module
from appshell.audit.filesink import FileSink
from appshell.audit.records import canonical
from appshell.audit.seal import SealState, evolve, format_key, init_state, state_path
from appshell.audit.verify import verify_files

TS = "2026-11-24T00:00:00.000000Z"


def body(session: str, event: str, n: int | None = None, **more: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"ts": TS, "session": session, "event": event, **more}
    if n is not None:
        fields["n"] = n
    return fields


def session_records(session: str, statements: int = 3, end: bool = True) -> list[dict[str, Any]]:
    out = [body(session, "session_start", user="deploy", argv=["appshell", "-c", "x"], python_env={"PYTHONPATH": None})]
    for n in range(1, statements + 1):
        out += [
            body(session, "statement", n, source=f"refund({n})", kind="code"),
            body(session, "result", n, status="ok", error=None, duration_ms=1.5, sql=["UPDATE orders SET status=?"]),
        ]
    if end:
        out.append(body(session, "session_end", status="ok", statements=statements))
    return out


def interleaved_log(tmp_path: Path) -> tuple[Path, bytes]:
    """Two sessions whose records interleave, as concurrent sessions write them; then a third, open."""
    log = tmp_path / "audit.jsonl"
    _, key = init_state(log)
    a, b = session_records("aaaa"), session_records("bbbb")
    sink = FileSink(log)
    for pair in zip(a, b, strict=True):
        for record in pair:
            sink.append(record)
    for record in session_records("cccc", end=False):
        sink.append(record)
    sink.close()
    return log, key


def forge(log: Path, *bodies: dict[str, Any]) -> int:
    """Append *bodies* sealed with the current key, as the operator could; returns the line of the first."""
    first = log.read_bytes().count(b"\n") + 1
    sink = FileSink(log)
    for b in bodies:
        sink.append(b)
    sink.close()
    return first


def test_interleaved_sessions_verify_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, key = interleaved_log(tmp_path)
    for k in (None, key):
        report = both_ways(log, k, monkeypatch)
        assert report.ok and report.warnings == [], report.summary


CASES = [
    # (name, forged bodies, what verify says about the first forged line)
    (
        "duplicate statement n",
        [body("cccc", "statement", 2, source="print(count(Product))", kind="code")],
        "session cccc: a second statement n=2: appshell numbers each statement once",
    ),
    (
        "result without its statement",
        [body("cccc", "result", 9, status="ok", error=None, duration_ms=1.0, sql=[])],
        "session cccc: a result for statement n=9, with no statement n=9 before it",
    ),
    (
        "second result",
        [body("cccc", "result", 3, status="ok", error=None, duration_ms=1.0, sql=[])],
        "session cccc: a second result for statement n=3",
    ),
    ("second session_start", [body("cccc", "session_start", user="deploy")], "session cccc: a second session_start"),
    (
        "two session_end",
        [body("aaaa", "session_end", status="ok", statements=1)],
        "session aaaa: a second session_end (the first is at {log}:15): a session ends once",
    ),
    (
        "record after the end",
        [body("bbbb", "statement", 4, source="sql('update products set stock = 0')", kind="code")],
        "session bbbb: a statement record after the session's session_end at {log}:16",
    ),
]


@pytest.mark.parametrize(("name", "bodies", "says"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("with_key", [False, True])
def test_a_sealed_forgery_in_a_session_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, bodies: list[dict[str, Any]], says: str, with_key: bool
) -> None:
    log, key = interleaved_log(tmp_path)
    line = forge(
        log, *bodies, body("cccc", "statement", 4, source="print(1)", kind="code")
    )  # and a clean record after it
    report = both_ways(log, key if with_key else None, monkeypatch)
    assert not report.ok
    assert report.summary.startswith(f"{log}:{line}: " + says.format(log=log)), report.summary
    assert "1 record(s) that no appshell session writes" in report.summary


def test_every_finding_is_listed_and_the_chain_is_still_walked_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, key = interleaved_log(tmp_path)
    line = forge(
        log,
        body("aaaa", "statement", 1, source="x", kind="code"),
        body("cccc", "statement", 1, source="y", kind="code"),
    )
    report = both_ways(log, key, monkeypatch)
    assert not report.ok and "2 record(s)" in report.summary
    assert report.summary.startswith(f"{log}:{line}: session aaaa: a statement record after")
    assert report.warnings == [
        f"{log}:{line + 1}: session cccc: a second statement n=1: appshell numbers each statement once"
    ]
    # A fault in the chain after the findings is still found, and the findings are kept beside it.
    lines = log.read_bytes().split(b"\n")
    lines[-2] = lines[-2].replace(b'"source":"y"', b'"source":"z"')
    log.write_bytes(b"\n".join(lines))
    report = both_ways(log, key, monkeypatch)
    assert not report.ok and report.summary.startswith(f"{log}:{line + 1}: hash mismatch")
    assert report.warnings == [
        f"before that: {log}:{line}: session aaaa: a statement record after the session's session_end at {log}:15"
    ]


def test_the_cli_exits_4_and_names_the_line_and_the_session(tmp_path: Path) -> None:
    log, key = interleaved_log(tmp_path)
    line = forge(log, body("cccc", "statement", 2, source="print(count(Product))", kind="code"))
    done = subprocess.run(
        [APPSHELL, "audit", "verify", "--log", str(log), "--key", format_key(key)],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"BROKEN: {log}:{line}: session cccc: a second statement n=2" in done.stderr
    clean, _ = interleaved_log(tmp_path / "clean")
    ok = subprocess.run(
        [APPSHELL, "audit", "verify", "--log", str(clean)],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0 and "ok: " in ok.stdout, ok.stderr


def seal_raw(log: Path, text: bytes) -> None:
    """Append a hand-made line with a valid seal and hash over its very bytes, as an operator holding audit.seal can."""
    path = state_path(log)
    state = SealState.read(path)
    last = json.loads(log.read_bytes().splitlines()[-1])
    text = (
        text.replace(b"SEQ", b"%d" % (last["seq"] + 1))
        .replace(b"PREV", last["hash"].encode())
        .replace(b"EPOCH", b"%d" % state.epoch)
    )
    mac = hmac.digest(state.key, text, "sha256").hex().encode()
    at = text.index(b',"n":')
    sealed = text[:at] + b',"mac":"' + mac + b'"' + text[at:]
    digest = hashlib.sha256(sealed).hexdigest().encode()
    at = sealed.index(b',"kind":')
    line = sealed[:at] + b',"hash":"' + digest + b'"' + sealed[at:]
    with log.open("ab") as f:
        f.write(line + b"\n")
    path.write_bytes(
        SealState(state.epoch + 1, evolve(state.key), last["seq"] + 1, digest.decode(), state.fingerprint).dump()
    )


@pytest.mark.parametrize(
    "n_twice",
    [
        b',"n":1,"n":2,',  # JSON readers take the last: n=2, which the byte reading must not take for 1
        b',"n":1,"n" :2,',  # the same with a space
        b',"n":1,"\\u006e":2,',  # and spelled with an escape
    ],
)
def test_a_hand_sealed_line_cannot_show_verify_one_number_and_the_readers_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_twice: bytes
) -> None:
    log, key = interleaved_log(tmp_path)
    text = (
        b'{"epoch":EPOCH,"event":"statement","kind":"code"'
        + n_twice[:-1]
        + b',"prev":"PREV","seq":SEQ,"session":"cccc","source":"print(1)","ts":"'
        + TS.encode()
        + b'","v":1}'
    )
    seal_raw(log, text)
    report = both_ways(log, key, monkeypatch)
    # Not canonical JSON, so not what the sink writes: the JSON check calls it edited.
    assert not report.ok and "hash mismatch" in report.summary, report.summary


def test_a_hand_sealed_line_cannot_hide_a_second_session_key_behind_by_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session's own records say ``"by":"session"``: that value is let pass beside the session key, no more."""
    log, key = interleaved_log(tmp_path)
    text = (
        b'{"by":"session","epoch":EPOCH,"event":"statement","kind":"code","n":4'
        + b',"prev":"PREV","seq":SEQ,"session":"cccc","session":"dddd","source":"print(1)","ts":"'
        + TS.encode()
        + b'","v":1}'
    )
    seal_raw(log, text)
    report = both_ways(log, key, monkeypatch)
    assert not report.ok and "hash mismatch" in report.summary, report.summary


def test_records_a_recorder_kept_session_wrote_are_checked_on_their_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's statements and results say ``"by":"session"`` (docs/audit.md, the recorder process): the
    fast path reads them (a JSON parse per line made `verify --key` 3.4x slower on such a log:
    bench/bench_audit_scale.py --recorder)."""
    log = tmp_path / "audit.jsonl"
    _, key = init_state(log)
    sink = FileSink(log)
    for record in session_records("aaaa"):
        sink.append({**record, "by": "session"})
    sink.close()
    parsed: list[int] = []
    slow = verify_module._Walk._slow
    monkeypatch.setattr(verify_module, "PARALLEL_MIN", 1 << 60)
    monkeypatch.setattr(
        verify_module._Walk,
        "_slow",
        lambda self, path, number, *rest: (parsed.append(number), slow(self, path, number, *rest)),
    )
    report = verify_files(log, key)
    assert report.ok, report.summary
    assert parsed == [1], parsed  # the session_start alone, whose argv is a list


def test_a_checkpoint_in_the_middle_of_a_session_finds_no_result_without_statement(tmp_path: Path) -> None:
    log, key = interleaved_log(tmp_path)
    checkpoint = tmp_path / "checkpoint.json"
    assert verify_files(log, key, checkpoint).ok  # cccc is open, with statements 1..3
    forge(log, body("cccc", "result", 2, status="ok", error=None, duration_ms=1.0, sql=[]))
    report = verify_files(log, key, checkpoint)
    # Its statement n=2 is before the checkpoint (not read again): the second result is a finding of a full verify only.
    assert report.ok, report.summary
    full = verify_files(log, key)
    assert not full.ok and "a second result for statement n=2" in full.summary
    forge(log, body("cccc", "session_end", status="ok"), body("cccc", "statement", 7, source="x", kind="code"))
    report = verify_files(log, key, checkpoint)
    assert not report.ok and "a statement record after the session's session_end" in report.summary


def test_the_hand_rolled_hmac_is_hmac_sha256() -> None:
    for key in (bytes(32), bytes(range(32)), hashlib.sha256(b"k").digest()):
        for data in (b"", b"x", canonical({"a": "é" * 100})):
            assert verify_module._hmac(key, data) == hmac.digest(key, data, "sha256")
