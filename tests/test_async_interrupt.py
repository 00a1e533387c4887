"""Ctrl-C in an async app's shell (issue 12): the awaited statement or the query in flight is
cancelled on the session's loop — the server stops the query — and the shell goes on."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from conftest import clean_environ, leave, spawn_shell

PROMPT = [r">>>", r"In \["]  # coloured prompts: their text, between escape codes


@pytest.mark.parametrize("shell", ["python", "ptpython", "ipython"])
def test_ctrl_c_cancels_the_awaited_statement_and_the_query_in_flight(app_dir: Callable[[str], Path], asyncpg_url: str, shell: str) -> None:
    root = app_dir("asyncapp")
    env = {"DATABASE_URL": asyncpg_url}
    subprocess.run([sys.executable, "-m", "asyncapp.seed"], cwd=root, env=clean_environ(env), check=True, capture_output=True)
    child = spawn_shell(root, "--app", "asyncapp.db", "--shell", shell, env=env)
    child.expect(PROMPT)
    child.sendline("import asyncio; await asyncio.sleep(60)")
    time.sleep(1.5)
    child.sendintr()
    child.expect("KeyboardInterrupt")
    child.expect(PROMPT)
    child.sendline("count(Book) * 100")
    child.expect("200")
    child.expect(PROMPT)
    child.sendline("sql('select pg_sleep(60)')")
    time.sleep(1.5)
    child.sendintr()
    child.expect("KeyboardInterrupt")
    child.expect(PROMPT)
    sync_url = asyncpg_url.replace("+asyncpg", "+psycopg")
    engine = create_engine(sync_url)
    with engine.connect() as conn:  # the server was told: the query is not running on behind the prompt
        running = conn.execute(text("select count(*) from pg_stat_activity where query like '%pg_sleep(60)%' and state = 'active' and pid <> pg_backend_pid()"))
        assert running.scalar() == 0
    engine.dispose()
    child.sendline("rollback()")  # as for a sync driver: SQLAlchemy closed the interrupted connection
    child.expect(PROMPT)
    child.sendline("print('after', count(Book))")
    child.expect("after 2")
    child.expect(PROMPT)
    leave(child)
