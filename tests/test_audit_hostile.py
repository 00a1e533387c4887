"""Issue 10's hostile operator, reproduced: each attack on the audit log is refused or caught."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.audit import audit_init as init
from support.audit import audit_records as records
from support.harness import run
from support.terminal import end_input, spawn_shell

from appshell.audit.records import canonical, digest
from appshell.audit.seal import evolve, record_mac

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


def sessions(shop: Path, log: Path, *codes: str) -> None:
    for code in codes:
        assert run(["--audit-log", str(log), "-c", code], cwd=shop).exit_code == 0


def verify(shop: Path, *args: str) -> Any:
    return run(["audit", "verify", *args], cwd=shop)


# -- the file: unlinked, replaced, cut ------------------------------------------------------


def test_unlinking_the_log_inside_a_required_session_fails_closed(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    result = run(
        ["--profile", "staging", "--audit-log", str(log), "-c", f"import os; os.unlink({str(log)!r})"], cwd=shop
    )
    assert result.exit_code == 3, result.output
    assert "was removed while this session had it open (unlinked)" in result.stderr
    assert "it ran; its outcome could not be recorded" in result.stderr


def test_after_unlinking_the_next_statement_is_refused(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    child = spawn_shell(shop, "--shell", "python", "--profile", "staging", "--audit-log", str(log), "-q", term="dumb")
    child.expect(">>> ")
    child.sendline(f"import os; os.unlink({str(log)!r})")
    child.expect("it ran; its outcome could not be recorded")
    child.expect(">>> ")
    child.sendline("open('mark', 'w').close()")
    child.expect("the statement was not run")
    child.expect(">>> ")
    end_input(child)
    assert not (shop / "mark").exists()


def test_a_file_cut_under_a_running_session_is_a_sink_failure(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    code = f"import os; os.truncate({str(log)!r}, 10)"
    result = run(["--profile", "staging", "--audit-log", str(log), "-c", code], cwd=shop)
    assert result.exit_code == 3 and "shorter than the" in result.stderr and "(cut)" in result.stderr


# -- sealing: cut tail, edit and rehash -----------------------------------------------------


def test_sealing_state_holds_only_the_current_key(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    key = bytes.fromhex(init(shop, log)[5:])
    sessions(shop, log, "print(1)", "print(2)")
    state_file = log.with_suffix(".seal")
    assert state_file.stat().st_mode & 0o777 == 0o600
    state = json.loads(state_file.read_text())
    recs = records(log)
    assert state["epoch"] == len(recs) == 8 and state["seq"] == recs[-1]["seq"] and state["hash"] == recs[-1]["hash"]
    k = key
    for i, rec in enumerate(recs):  # each record sealed by its own key, the key stepped after it
        assert rec["epoch"] == i and rec["mac"] == record_mac(k, rec)
        k = evolve(k)
    assert state["key"] == k.hex() and key.hex() not in state_file.read_text()
    ok = verify(shop, "--log", str(log), "--key", "fss1-" + key.hex())
    assert ok.exit_code == 0 and "8 sealed records authenticated" in ok.stdout, ok.output
    plain = verify(shop, "--log", str(log))
    assert plain.exit_code == 0 and "authenticity not checked (no --key)" in plain.stdout


def test_a_cut_tail_is_caught_by_the_key(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    key = init(shop, log)
    sessions(shop, log, "print(1)", "print(2)", "print(3)")
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-4]))  # head -n -4: the last session is gone
    plain = verify(shop, "--log", str(log))
    assert (
        plain.exit_code == 0 and "authenticity not checked (no --key)" in plain.stdout
    )  # the chain alone cannot see it
    caught = verify(shop, "--log", str(log), "--key", key)
    assert caught.exit_code == 4
    assert (
        "the log was cut: the sealing state has sealed 4 record(s) after" in caught.stderr
        and "audit.jsonl:8" in caught.stderr
    )


def rehash(recs: list[dict[str, Any]]) -> str:
    """The hostile 10-line script: recompute seq, prev and hash after an edit."""
    prev, out = "0" * 64, []
    for i, rec in enumerate(recs, start=1):
        rec = {k: v for k, v in rec.items() if k != "hash"}
        rec["seq"], rec["prev"] = i, prev
        rec["hash"] = prev = digest(rec)
        out.append(canonical(rec).decode() + "\n")
    return "".join(out)


@pytest.mark.parametrize("attack", ["edit", "delete", "reorder"])
def test_edit_and_rehash_is_caught_by_the_key(shop: Path, tmp_path: Path, attack: str) -> None:
    log = tmp_path / "audit.jsonl"
    key = init(shop, log)
    sessions(shop, log, "print('refund 1')", "print('refund 2')", "print(3)")
    recs = records(log)
    if attack == "edit":
        recs[5]["source"] = "print('nothing to see')"
    elif attack == "delete":
        del recs[4:8]  # the whole second session
    else:
        recs[4], recs[8] = recs[8], recs[4]
    log.write_text(rehash(recs))
    if attack == "edit":
        assert verify(shop, "--log", str(log)).exit_code == 0  # the hash chain alone is fooled
    caught = verify(shop, "--log", str(log), "--key", key)
    assert caught.exit_code == 4, caught.output
    assert "audit.jsonl:5" in caught.stderr or "audit.jsonl:6" in caught.stderr
    assert (
        "MAC mismatch" in caught.stderr
        or "sealed record(s) before it were removed" in caught.stderr
        or "reordered" in caught.stderr
    )


def test_a_wrong_key_or_a_deleted_state_is_not_taken_for_proof(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    init(shop, log)
    sessions(shop, log, "print(1)")
    other = "fss1-" + "ab" * 32
    assert "MAC mismatch" in verify(shop, "--log", str(log), "--key", other).stderr
    key = bytes.fromhex(json.loads(log.with_suffix(".seal").read_text())["key"])  # what the operator can read
    log.with_suffix(".seal").unlink()
    missing = verify(shop, "--log", str(log), "--key", "fss1-" + key.hex())
    assert missing.exit_code == 4


# -- incremental verify, rotation ------------------------------------------------------------


def test_verify_goes_on_from_a_checkpoint_and_rotation_continues_the_chain(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    key = init(shop, log)
    checkpoint = tmp_path / "auditor" / "checkpoint.json"
    checkpoint.parent.mkdir()
    sessions(shop, log, "print(1)", "print(2)")
    first = verify(shop, "--log", str(log), "--key", key, "--checkpoint", str(checkpoint))
    assert first.exit_code == 0 and checkpoint.exists(), first.output
    rotated = run(["audit", "rotate", "--log", str(log)], cwd=shop)
    assert rotated.exit_code == 0, rotated.output
    old = tmp_path / "audit.000000000001.jsonl"
    assert (
        old.exists()
        and records(log)[0]["event"] == "log_rotated"
        and records(log)[0]["prev"] == records(old)[-1]["hash"]
    )
    sessions(shop, log, "print(3)")
    again = verify(shop, "--log", str(log), "--key", key, "--checkpoint", str(checkpoint))
    assert again.exit_code == 0, again.output
    assert "from the checkpoint at seq 8" in again.stdout and "13 records" in again.stdout
    whole = verify(shop, "--log", str(log), "--key", key)
    assert whole.exit_code == 0 and "audit.000000000001.jsonl" in whole.stdout, whole.output
    first_session = records(old)[0]["session"]
    assert (
        "print(1)" in run(["audit", "show", first_session, "--log", str(log)], cwd=shop).stdout
    )  # in the rotated file
    tail = run(["audit", "tail", "-n", "3", "--log", str(log)], cwd=shop).stdout
    assert first_session in tail and records(log)[1]["session"] in tail  # across the set
    old.write_text(
        old.read_text().replace("print(2)", "print(9)")
    )  # an edit before the checkpoint: the full walk sees it
    assert verify(shop, "--log", str(log), "--key", key).exit_code == 4


# -- the witness --------------------------------------------------------------------------


def witness_profile(shop: Path) -> None:
    (shop / "profiles" / "development.toml").write_text('[audit]\nsinks = ["file", "sql"]\nrequired = true\n')


@pytest.mark.parametrize("attack", ["none", "cut", "edit"])
def test_the_witness_catches_what_the_file_lost(shop: Path, tmp_path: Path, attack: str) -> None:
    witness_profile(shop)
    log = tmp_path / "audit.jsonl"
    url = f"sqlite:///{tmp_path / 'witness.db'}"
    for code in ("print(1)", "print(2)", "print(3)"):
        assert run(["--audit-log", str(log), "-c", code], cwd=shop, env={"APPSHELL_AUDIT_URL": url}).exit_code == 0
    recs = records(log)
    if attack == "cut":
        log.write_text(rehash(recs[:-4]))
    elif attack == "edit":
        recs[5]["source"] = "print(0)"
        log.write_text(rehash(recs))
    result = verify(shop, "--log", str(log), "--witness", url)
    if attack == "none":
        assert (
            result.exit_code == 0 and "the witness holds the same 3 session(s), record for record" in result.stdout
        ), result.output
    elif attack == "cut":
        assert (
            result.exit_code == 4
            and "the file's tail was cut: the witness holds 4 record(s) after the file's last line" in result.stderr
        )
    else:
        assert result.exit_code == 4 and "audit.jsonl:6: altered" in result.stderr


# -- the SQL sink on PostgreSQL -------------------------------------------------------------


def pg_app(app_dir: Any, pg_url: str) -> tuple[Path, dict[str, str]]:
    root = app_dir("plainapp")
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text('[audit]\nsinks = ["file", "sql"]\nrequired = true\n')
    env = {"DATABASE_URL": pg_url}
    assert run(["-c", "metadata.create_all(engine)"], cwd=root, env=env).exit_code == 0
    return root, env


def test_deleting_rows_from_the_app_connection_is_caught(app_dir: Any, pg_url: str) -> None:
    root, env = pg_app(app_dir, pg_url)
    assert run(["-c", "print(count(Author))"], cwd=root, env=env).exit_code == 0
    attack = run(["-c", "sql('delete from appshell_audit where seq > 2'); commit()"], cwd=root, env=env)
    assert attack.exit_code == 0, attack.output
    assert run(["-c", "print(1)"], cwd=root, env=env).exit_code == 0  # the sink goes on in its own session's chain
    table = run(["audit", "verify", "--url", pg_url], cwd=root)
    assert table.exit_code == 4 and "are missing between rows — rows were deleted" in table.stderr, table.output
    log = root / ".appshell" / "audit.jsonl"
    witness = run(["audit", "verify", "--log", str(log), "--witness", pg_url], cwd=root)
    assert witness.exit_code == 4 and "extra — session" in witness.stderr and "is not in the witness" in witness.stderr


def test_a_held_lock_cannot_hang_a_session(app_dir: Any, pg_url: str) -> None:
    from sqlalchemy import create_engine, text

    root, env = pg_app(app_dir, pg_url)
    holder = create_engine(pg_url)
    with holder.connect() as conn:
        conn.execute(text("select pg_advisory_lock(hashtext('appshell_audit'))"))  # the old global lock: no effect now
        result = run(["-c", "print('ran')"], cwd=root, env=env, timeout=60)
        assert result.exit_code == 0 and result.stdout == "ran\n", result.output
        conn.execute(text("select pg_advisory_unlock_all()"))
        conn.commit()
        conn.execute(
            text("lock table appshell_audit in access exclusive mode")
        )  # the table's owner can: the sink gives up
        blocked = run(["-c", "print('ran')"], cwd=root, env=env, timeout=60)
        conn.rollback()
    holder.dispose()
    assert blocked.exit_code == 3 and "ran" not in blocked.stdout, blocked.output
    assert "lock timeout" in blocked.stderr.lower() and "the session was not started" in blocked.stderr


# -- review: control characters ----------------------------------------------------------------


def test_tail_and_show_escape_control_characters(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    code = "x = 1  # \x1b[2K\x1b[G"
    assert (
        run(["--audit-log", str(log), "--reason", "INC\x1b]0;pwned\x07 \u202eevil", "-c", code], cwd=shop).exit_code
        == 0
    )
    session = records(log)[0]["session"]
    shown = run(["audit", "show", session[:6], "--log", str(log)], cwd=shop)
    tail = run(["audit", "tail", "--log", str(log)], cwd=shop)
    for out in (shown.stdout, tail.stdout):
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "x = 1  # \\x1b[2K\\x1b[G" in shown.stdout and "\\u202e" in shown.stdout
    assert "INC\\x1b]0;pwned\\x07" in tail.stdout


def test_show_reads_one_session_through_the_index(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    sessions(shop, log, "print(1)", "print(22)", "print(3)")
    index = log.with_suffix(".idx").read_text().splitlines()
    assert len(index) == 3
    second, offset = index[1].split()
    with log.open("rb") as f:
        f.seek(int(offset))
        assert json.loads(f.readline())["session"] == second
    shown = run(["audit", "show", second, "--log", str(log)], cwd=shop)
    assert "print(22)" in shown.stdout and "print(1)" not in shown.stdout
    log.with_suffix(".idx").write_text(f"{second} 5\n")  # a wrong index costs a scan, never a wrong answer
    assert "print(22)" in run(["audit", "show", second, "--log", str(log)], cwd=shop).stdout


WRITER = """
import sys
from pathlib import Path
from appshell.audit.auditor import Auditor
from appshell.audit.sinks import FileSink
from appshell.record.journal import Journal
from appshell.config.redact import Redactor

auditor = Auditor([FileSink(Path(sys.argv[1]))], required=True, redact=Redactor())
auditor.start({"mode": "command"})
journal = Journal([auditor])
for i in range(50):
    with journal.statement(f"writer {sys.argv[2]} statement {i}"):
        pass
auditor.end("ok")
"""


def test_concurrent_sealed_sessions_keep_one_sealed_chain(shop: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    key = init(shop, log)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(w)]) for w in range(6)]
    assert [w.wait(timeout=120) for w in writers] == [0] * 6
    recs = records(log)
    assert len(recs) == 6 * 102 and [r["epoch"] for r in recs] == list(range(len(recs)))
    result = verify(shop, "--log", str(log), "--key", key)
    assert result.exit_code == 0 and f"{len(recs)} sealed records authenticated" in result.stdout, result.output


def test_sql_sink_on_mariadb_keeps_per_session_chains(shop: Path, tmp_path: Path, mariadb_url: str) -> None:
    witness_profile(shop)
    log = tmp_path / "audit.jsonl"
    env = {"APPSHELL_AUDIT_URL": mariadb_url}
    for code in ("print(1)", "print(2)"):
        assert run(["--audit-log", str(log), "-c", code], cwd=shop, env=env).exit_code == 0
    ok = verify(shop, "--url", mariadb_url)
    assert ok.exit_code == 0 and "8 records in 2 sessions, every session's chain intact" in ok.stdout, ok.output
    assert verify(shop, "--log", str(log), "--witness", mariadb_url).exit_code == 0
    from sqlalchemy import create_engine, text

    engine = create_engine(mariadb_url)
    with engine.begin() as conn:
        conn.execute(text("delete from appshell_audit where seq > 3"))  # each session's session_end
    engine.dispose()
    caught = verify(shop, "--log", str(log), "--witness", mariadb_url)
    assert caught.exit_code == 4 and "is not in the witness" in caught.stderr, caught.output


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_tail_and_show_on_the_sql_table_read_only_their_sessions(
    shop: Path, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    witness_profile(shop)
    url = f"sqlite:///{tmp_path / 'audit.db'}" if backend == "sqlite" else str(request.getfixturevalue("mariadb_url"))
    for code in ("print(1)", "print('second_one')", "print(3)"):
        result = run(
            ["--audit-log", str(tmp_path / "a.jsonl"), "--reason", f"R-{code}", "-c", code],
            cwd=shop,
            env={"APPSHELL_AUDIT_URL": url},
        )
        assert result.exit_code == 0, result.output
    tail = run(["audit", "tail", "-n", "2", "--url", url], cwd=shop)
    assert (
        tail.exit_code == 0
        and "R-print(3)" in tail.stdout
        and "second_one" in tail.stdout
        and "R-print(1)" not in tail.stdout
    )
    second = records(tmp_path / "a.jsonl")[4]["session"]
    shown = run(["audit", "show", second[:5], "--url", url], cwd=shop)
    assert shown.exit_code == 0 and "print('second_one')" in shown.stdout and "status ok" in shown.stdout, shown.output
