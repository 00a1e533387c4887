"""`audit verify` on its own: the parallel first pass agrees with the line-by-line walk, fault for fault."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.audit import both_ways

from appshell.audit.filesink import FileSink
from appshell.audit.seal import init_state
from appshell.audit.verify import verify_files


def sealed_log(tmp_path: Path, records: int = 240) -> tuple[Path, bytes]:
    log = tmp_path / "audit.jsonl"
    for i in range(20):  # unsealed records first: a log that was sealed later
        FileSink(log).append(
            {
                "ts": "2026-11-24T00:00:00.000000Z",
                "session": "old",
                "event": "statement",
                "n": i,
                "source": f"print({i})",
            }
        )
    _, key = init_state(log)
    sink = FileSink(log)
    for i in range(records):
        sink.append(
            {
                "ts": "2026-11-24T00:00:00.000000Z",
                "session": f"s{i // 40}",
                "event": "statement",
                "n": i,
                "source": f"refund({i})",
            }
        )
    sink.close()
    return log, key


def damage(log: Path, how: str) -> None:
    lines = log.read_bytes().split(b"\n")
    if how == "edit":
        lines[150] = lines[150].replace(b"refund(", b"REFUND(")
    elif how == "delete":
        del lines[90]
    elif how == "swap":
        lines[100], lines[101] = lines[101], lines[100]
    elif how == "torn":  # a crash's bytes, acknowledged by the record after them
        sink = FileSink(log)
        with log.open("ab") as f:
            f.write(b'{"v":1,"seq":')
        sink.append({"ts": "2026-11-24T00:00:00.000000Z", "session": "t", "event": "statement", "n": 0, "source": "x"})
        sink.close()
        return
    elif how == "cut":
        lines = lines[:-6] + [b""]
    log.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize("how", ["none", "edit", "delete", "swap", "torn", "cut"])
@pytest.mark.parametrize("with_key", [False, True])
def test_the_parallel_pass_agrees_with_the_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, with_key: bool
) -> None:
    log, key = sealed_log(tmp_path)
    damage(log, how)
    walked = both_ways(log, key if with_key else None, monkeypatch)
    expected_ok = how in ("none", "torn") or (how == "cut" and not with_key)
    assert walked.ok == expected_ok, walked.summary
    if with_key and walked.ok:
        assert "the first 20 records were written before sealing began" in walked.summary


def test_a_session_open_during_rotation_follows_the_chain_into_the_new_file(tmp_path: Path) -> None:
    from appshell.audit.filesink import rotate

    log, key = sealed_log(tmp_path, records=10)
    open_session = FileSink(log)
    open_session.append(
        {"ts": "2026-11-24T00:00:00.000000Z", "session": "live", "event": "statement", "n": 1, "source": "a"}
    )
    rotated = rotate(log)
    record = open_session.append(
        {"ts": "2026-11-24T00:00:00.000000Z", "session": "live", "event": "statement", "n": 2, "source": "b"}
    )
    open_session.close()
    assert (
        rotated.name == "audit.000000000001.jsonl" and record["seq"] == 33
    )  # 20 + 10 + 1, the rotation marker, then this
    assert log.read_text().count("\n") == 2
    report = verify_files(log, key)
    assert report.ok and "33 records" in report.summary, report.summary


def test_a_replaced_file_is_not_taken_for_a_rotation(tmp_path: Path) -> None:
    from appshell.audit.filesink import FileChanged

    log, _ = sealed_log(tmp_path, records=3)
    sink = FileSink(log)
    log.rename(tmp_path / "audit.000000000001.jsonl")  # renamed, as logrotate would, with no rotation record
    log.write_text("")
    with pytest.raises(FileChanged, match="no longer the file this session opened"):
        sink.append({"ts": "2026-11-24T00:00:00.000000Z", "session": "x", "event": "statement", "n": 1, "source": "c"})


def move_hash_into(line: bytes, into: bytes) -> bytes:
    """The line with its hash member cut out and put back inside a string value: the hashed text is unchanged."""
    start = line.index(b',"hash":"')
    member, rest = line[start : start + 74], line[:start] + line[start + 74 :]
    at = rest.index(into) + len(into)
    return rest[:at] + member + rest[at:]


@pytest.mark.parametrize("into", [b'"event":"state', b'"mac":"', b'"source":"refund('])
@pytest.mark.parametrize("with_key", [False, True])
def test_a_hash_member_moved_into_a_string_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_key: bool, into: bytes
) -> None:
    """The hash covers the line without its hash member, wherever that member stands; moved inside a
    string, the text hashed (and sealed) is the same, but no JSON reader can read the line any more
    (``audit show`` would lose the record). verify reads the hash only where sorted keys put it."""
    import json

    log, key = sealed_log(tmp_path)
    lines = log.read_bytes().split(b"\n")
    lines[150] = move_hash_into(lines[150], into)
    with pytest.raises(ValueError):
        json.loads(lines[150])
    log.write_bytes(b"\n".join(lines))
    walked = both_ways(log, key if with_key else None, monkeypatch)
    assert not walked.ok and walked.summary.startswith(f"{log}:151: not a JSON record"), walked.summary
