"""The journal and the nested-code recorder: pure logic, in-process, table-driven."""

from __future__ import annotations

import os
from typing import Any

import pytest

from appshell.errors import SessionEnded
from appshell.hooks.frames import is_library_file
from appshell.record import nested
from appshell.record.journal import Entry, Journal, outcome_of


class Recorder:
    """A journal sink that keeps what it is told (the audit log's interface)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, dict[str, Any]]] = []

    def statement(self, entry: Entry, extra: dict[str, Any]) -> None:
        self.records.append(("statement", entry.n, dict(extra, source=entry.source, kind=entry.kind)))

    def result(self, entry: Entry) -> None:
        self.records.append(("result", entry.n, {"status": entry.status, "error": entry.error}))


@pytest.fixture
def journal() -> tuple[Journal, Recorder]:
    sink = Recorder()
    return Journal([sink]), sink


@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [
        (None, "ok", None),
        (KeyboardInterrupt(), "interrupted", "KeyboardInterrupt"),
        (SystemExit(0), "ok", None),
        (SystemExit(None), "ok", None),
        (SystemExit(4), "error", "SystemExit: 4"),
        (ValueError("bad\nsecond line"), "error", "ValueError: bad"),
        (RuntimeError(), "error", "RuntimeError"),
    ],
)
def test_outcome_of(exc: BaseException | None, status: str, error: str | None) -> None:
    assert outcome_of(exc) == (status, error)


def test_nested_statements_name_their_parent_and_both_get_results(journal: tuple[Journal, Recorder]) -> None:
    j, sink = journal
    outer = j.begin("get_ipython().run_cell('x = 1')", kind="cell")
    inner = j.begin("x = 1", kind="cell")
    assert j.current is inner and inner.parent == outer.n
    j.end(inner)
    assert j.current is outer
    j.end(outer)
    assert [(event, n) for event, n, _ in sink.records] == [
        ("statement", 1),
        ("statement", 2),
        ("result", 2),
        ("result", 1),
    ]
    assert sink.records[1][2]["parent"] == 1 and "parent" not in sink.records[0][2]


def test_ending_a_statement_ends_what_was_left_open_inside_it(journal: tuple[Journal, Recorder]) -> None:
    j, _ = journal
    outer = j.begin("outer")
    j.begin("inner that never reported its end")
    j.end(outer)
    assert j.current is None and j.stack == []


def test_nested_code_is_recorded_without_a_result(journal: tuple[Journal, Recorder]) -> None:
    j, sink = journal
    with j.statement("exec(input())"):
        j.nested("print('typed')", kind="nested", filename="<string>")
    assert [(event, n) for event, n, _ in sink.records] == [("statement", 1), ("statement", 2), ("result", 1)]
    assert sink.records[1][2] == {"parent": 1, "filename": "<string>", "source": "print('typed')", "kind": "nested"}


def test_sql_is_collected_for_the_running_statement_recorded_between_and_refused_after_close(
    journal: tuple[Journal, Recorder],
) -> None:
    j, _ = journal
    with j.statement("count(X)") as entry:
        j._on_sql(None, None, "SELECT 1")
    j._on_sql(None, None, "SELECT 2")  # between statements (a thread, a signal handler): recorded before it runs
    assert entry.sql == ["SELECT 1"]
    assert j.entries[-1].kind == "sql" and j.entries[-1].source == "SELECT 2" and j.entries[-1].parent is None
    j.close()
    with pytest.raises(SessionEnded, match="thread left running after the session ended"):
        j._on_sql(None, None, "SELECT 3")


def test_a_forked_child_writes_no_result(journal: tuple[Journal, Recorder], monkeypatch: pytest.MonkeyPatch) -> None:
    j, sink = journal
    entry = j.begin("os.fork()")
    monkeypatch.setattr(os, "getpid", lambda: j.pid + 1)
    j.end(entry)
    assert [event for event, _, _ in sink.records] == ["statement"]
    with pytest.raises(SessionEnded, match="forked child"):
        j._on_sql(None, None, "SELECT 1")


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("x = 1", "x = 1"),
        (b"x = 1", "x = 1"),
        (b"s = '\xff'", "s = '\udcff'"),  # undecodable bytes kept, not dropped
        (memoryview(b"y"), "y"),
        (compile("1", "<s>", "eval"), None),  # a code object: compiled from text recorded as such
    ],
)
def test_compiled_source_as_text(source: Any, text: str | None) -> None:
    assert nested._text(source) == text


@pytest.mark.parametrize(
    ("filename", "library"),
    [
        ("<console>", False),
        ("<string>", False),
        ("<ipython-input-3-abc>", False),
        (os.__file__, True),  # the standard library
        (pytest.__file__, True),  # an installed package
        (nested.__file__, True),  # appshell itself
        ("/srv/app/fix_orders.py", False),  # the operator's script
    ],
)
def test_who_compiles_is_the_operator_or_a_library(filename: str, library: bool) -> None:
    assert is_library_file(filename) is library


def test_the_shells_own_compile_of_the_statement_is_not_recorded_twice(journal: tuple[Journal, Recorder]) -> None:
    j, sink = journal
    with j.statement("print(1)"):
        nested._record_compile(j, "print(1)\n", "<stdin>", "ptpython.repl")  # the statement itself
        nested._record_compile(j, "x = 2", "<console>", "codeop")
        nested._record_compile(j, "x = 2\n", "<console>", "codeop")  # codeop compiles one input several times
    sources = [extra["source"] for event, _, extra in sink.records if event == "statement"]
    assert sources == ["print(1)", "x = 2"]
