"""Ctrl-C during a database statement (issue 25 item 6): one line says the statement was interrupted and
its transaction rolled back; appshell rolls it back (recorded as a statement of its own, with its outcome),
so the next statement runs without the operator's rollback() — in every shell, sync and async. In a
sandbox the rollback returns to the sandbox's savepoint: what the sandbox holds survives it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest
from support.apps import library_on
from support.audit import audit_records
from support.terminal import leave, spawn_shell

pytestmark = pytest.mark.subprocess  # Ctrl-C through a real pty

PROMPT = [r">>>", r"In \["]  # coloured prompts: their text, between escape codes
SAID = r"KeyboardInterrupt: the database statement was interrupted; its transaction was rolled back"
LONG = {  # a statement that runs until it is stopped
    "sqlite": "sql('with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c')",
    "postgresql": "sql('select pg_sleep(60)')",
}
ROLLBACK = "rollback()  # by appshell: Ctrl-C interrupted a database statement"


def _interrupt(child: pexpect.spawn, statement: str) -> None:
    """Run *statement* at the prompt and press Ctrl-C once it is running."""
    child.sendline(f"print('run' + 'ning', flush=True); {statement}")  # the echo does not match
    child.expect("running")
    time.sleep(1.0)  # the database is in the statement now
    child.sendintr()


def _rollback_recorded(log: Path) -> None:
    records = audit_records(log)
    interrupted = [r for r in records if r["event"] == "result" and r.get("status") == "interrupted"]
    assert interrupted, records
    rollbacks = [r for r in records if r["event"] == "statement" and r.get("kind") == "rollback"]
    assert [r["source"] for r in rollbacks] == [ROLLBACK], records
    outcome = [r for r in records if r["event"] == "result" and r["n"] == rollbacks[0]["n"]]
    assert outcome and outcome[0]["status"] == "ok", records
    assert rollbacks[0]["seq"] > interrupted[0]["seq"]  # after the interrupted statement's outcome


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect_library(request: pytest.FixtureRequest, app_dir: Callable[[str], Path]) -> tuple[str, Path, dict[str, str]]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return (request.param, *library_on(app_dir, url))


@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_ctrl_c_during_a_query_rolls_back_and_says_so(
    dialect_library: tuple[str, Path, dict[str, str]], shell: str, tmp_path: Path
) -> None:
    dialect, root, env = dialect_library
    log = tmp_path / "audit.jsonl"
    child = spawn_shell(root, "--shell", shell, "-q", "--audit-log", str(log), env=env)
    child.expect(PROMPT)
    _interrupt(child, LONG[dialect])
    child.expect(SAID, timeout=15)
    child.expect(PROMPT)
    child.sendline("print('after', count(Book))")  # no rollback() typed: the session goes on
    child.expect("after 2")
    child.expect(PROMPT)
    leave(child)
    _rollback_recorded(log)


@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_ctrl_c_during_an_async_query(asyncapp: tuple[Path, dict[str, str]], shell: str, tmp_path: Path) -> None:
    root, env = asyncapp
    log = tmp_path / "audit.jsonl"
    child = spawn_shell(root, "--app", "asyncapp.db", "--shell", shell, "-q", "--audit-log", str(log), env=env)
    child.expect(PROMPT)
    if "asyncpg" in env["DATABASE_URL"]:
        statement = "await session.execute(text('select pg_sleep(60)'))" if shell != "python" else LONG["postgresql"]
    else:
        statement = LONG["sqlite"]
    _interrupt(child, statement)
    child.expect(SAID, timeout=15)
    child.expect(PROMPT)
    child.sendline("print('after', count(Book))")
    child.expect("after 2")
    child.expect(PROMPT)
    leave(child)
    _rollback_recorded(log)


@pytest.mark.parametrize("shell", ["ipython", "python"])
def test_ctrl_c_in_a_sandbox_returns_to_the_sandbox(
    dialect_library: tuple[str, Path, dict[str, str]], shell: str
) -> None:
    dialect, root, env = dialect_library
    child = spawn_shell(root, "--shell", shell, "-q", "--sandbox", env=env)
    child.expect(PROMPT)
    child.sendline(
        "session.add(Author(name='Zed')); commit(); print('authors', count(Author))"
    )  # commit(): into the sandbox
    child.expect("authors 2")
    child.expect(PROMPT)
    _interrupt(child, LONG[dialect])
    child.expect(SAID, timeout=15)
    child.expect(PROMPT)
    child.sendline("print('still', count(Author))")
    child.expect("still 2")  # Zed, committed into the sandbox before the interrupted statement, is still there
    child.expect(PROMPT)
    leave(child)
    assert "SANDBOX BROKEN" not in str(child.before)


@pytest.mark.parametrize("shell", ["ipython", "python"])
def test_ctrl_c_in_an_async_sandbox_says_what_it_lost(asyncapp: tuple[Path, dict[str, str]], shell: str) -> None:
    """asyncpg's interrupted connection is closed by SQLAlchemy (the task is cancelled mid-protocol): the database
    ends the sandbox's transaction with it, and the line says so; aiosqlite keeps it, and the line says that."""
    root, env = asyncapp
    child = spawn_shell(root, "--app", "asyncapp.db", "--shell", shell, "-q", "--sandbox", env=env)
    child.expect(PROMPT)
    child.sendline("session.add(Book(title='Zed')); commit(); print('books', count(Book))")
    child.expect("books 3")
    child.expect(PROMPT)
    _interrupt(child, LONG["postgresql" if "asyncpg" in env["DATABASE_URL"] else "sqlite"])
    child.expect(SAID + r"[^\r\n]*", timeout=15)
    said = str(child.after)
    child.expect(PROMPT)
    child.sendline("print('still', count(Book))")
    child.expect(r"still (\d)")
    kept = child.match.group(1) == "3"
    assert kept == ("to the sandbox's last commit()" in said), said
    assert kept != ("the sandbox's changes so far too" in said), said
    child.expect(PROMPT)
    leave(child)


def test_ctrl_c_outside_a_query_keeps_the_pending_changes(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    """Only a database statement's interruption rolls back: Ctrl-C
    in the operator's own loop leaves their changes alone."""
    root, env = library_on(app_dir, sqlite_url)
    child = spawn_shell(root, "--shell", "python", "-q", env=env)
    child.expect(PROMPT)
    child.sendline("session.add(Author(name='Zed')); print('pen' + 'ding', len(session.new))")
    child.expect("pending 1")
    child.expect(PROMPT)
    _interrupt(child, "import time; time.sleep(30)")
    child.expect("KeyboardInterrupt")
    child.expect(PROMPT)
    child.sendline("print('kept', len(session.new))")
    child.expect("kept 1")
    child.expect(PROMPT)
    leave(child)


def test_ctrl_c_on_a_connection_of_ones_own_says_whose_it_was(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    """The session's rollback() cannot end a transaction on the
    operator's own connection: the line does not claim it did."""
    root, env = library_on(app_dir, sqlite_url)
    child = spawn_shell(root, "--shell", "python", "-q", env=env)
    child.expect(PROMPT)
    child.sendline("conn = engine.connect()")
    child.expect(PROMPT)
    _interrupt(child, LONG["sqlite"].replace("sql(", "conn.execute(text(") + ")")
    child.expect(
        r"KeyboardInterrupt: the database statement was interrupted; it ran on a connection of your own", timeout=15
    )
    child.expect(PROMPT)
    child.sendline("conn.rollback(); conn.close(); print('after', count(Book))")
    child.expect("after 2")
    child.expect(PROMPT)
    leave(child)
