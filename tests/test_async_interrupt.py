"""Ctrl-C in an async app's shell (issue 12): the awaited statement or the query in flight is
cancelled on the session's loop — the server stops the query — and the shell goes on."""

from __future__ import annotations

import time
from pathlib import Path

import pexpect
import pytest
from sqlalchemy import create_engine, text
from support.terminal import leave, spawn_shell

PROMPT = [r">>>", r"In \["]  # coloured prompts: their text, between escape codes


@pytest.mark.subprocess  # Ctrl-C in each interactive shell, through a real pty
@pytest.mark.parametrize("shell", ["python", "ptpython", "ipython"])
def test_ctrl_c_cancels_the_awaited_statement_and_the_query_in_flight(
    asyncpg_app: tuple[Path, dict[str, str]], shell: str
) -> None:
    root, env = asyncpg_app
    child = spawn_shell(root, "--app", "asyncapp.db", "--shell", shell, env=env)
    child.expect(PROMPT)
    child.sendline("import asyncio; print('await' + 'ing', flush=True); await asyncio.sleep(60)")
    child.expect("awaiting")  # the statement runs (its echo reads 'await' + 'ing') …
    time.sleep(0.2)  # … and is in asyncio.sleep
    child.sendintr()
    child.expect("KeyboardInterrupt")
    child.expect(PROMPT)
    child.sendline("count(Book) * 100")
    child.expect("200")
    child.expect(PROMPT)
    # AUTOCOMMIT: pg_stat_activity is read once per transaction (a snapshot), and this one reads it repeatedly.
    engine = create_engine(env["DATABASE_URL"].replace("+asyncpg", "+psycopg"), isolation_level="AUTOCOMMIT")
    # This test's own database: another worker's pg_sleep is not counted.
    in_flight = (
        "select count(*) from pg_stat_activity where datname = current_database() "
        "and query like '%pg_sleep(60)%' and state = 'active' and pid <> pg_backend_pid()"
    )
    child.sendline("sql('select pg_sleep(60)')")
    with engine.connect() as conn:
        # Ctrl-C once the server has been sleeping a while (active for 0.3 s: not asyncpg's prepare of it);
        # the shell's output is read meanwhile, as ptpython waits for that.
        deadline, sleeping = time.monotonic() + 20, 0
        while not sleeping and time.monotonic() < deadline:
            sleeping = conn.execute(
                text(in_flight + " and clock_timestamp() - query_start > interval '0.3 s'")
            ).scalar_one()
            child.expect([pexpect.TIMEOUT], timeout=0.05)
        assert sleeping == 1
    child.sendintr()
    # SQLAlchemy closed the interrupted connection: appshell rolls the session back (issue 25 item 6), and says so.
    child.expect("KeyboardInterrupt: the database statement was interrupted; its transaction was rolled back")
    child.expect(PROMPT)
    with engine.connect() as conn:  # the server was told: the query is not running on behind the prompt
        assert conn.execute(text(in_flight)).scalar() == 0
    engine.dispose()
    child.sendline("print('after', count(Book))")  # no rollback() typed
    child.expect("after 2")
    child.expect(PROMPT)
    leave(child)
