"""The destructive guard reads SQL with a parser (issue 11 item 4): each of these deleted every row before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

WRITE = ["--profile", "production", "--reason", "INC-1", "--write"]
STATE = "from sqlalchemy import inspect\nprint(count(Book), [c['name'] for c in inspect(engine).get_columns('books')])"

ATTACKS = {
    "two statements": ("postgresql", "sql('select 1; delete from books')"),
    "data-modifying CTE": ("postgresql", "sql('with d as (delete from books returning *) select count(*) from d')"),
    "WHERE in RETURNING": ("postgresql", "sql('delete from books returning (select 1 where true)')"),
    "CTE then DELETE": ("sqlite", "sql('with x as (select 1) delete from books')"),
    "ALTER … DROP COLUMN": ("sqlite", "sql('alter table books drop column year')"),
    "ALTER … DROP COLUMN (PostgreSQL)": ("postgresql", "sql('alter table books drop column year')"),
}


@pytest.mark.parametrize("kind,code", ATTACKS.values(), ids=ATTACKS.keys())
def test_guard_sees_through(library_of: Callable[[str], tuple[Path, dict[str, str]]], kind: str, code: str) -> None:
    root, env = library_of(kind)
    before = run(["-c", STATE], cwd=root, env=env).stdout
    result = run([*WRITE, "-c", code + "; commit()"], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("DestructiveStatementRefused: ") and "pass --yes to allow it" in result.stderr, (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1  # one line, not SQLAlchemy's frames
    assert run(["-c", STATE], cwd=root, env=env).stdout == before


def test_mysql_hash_comment(library_of: Callable[[str], tuple[Path, dict[str, str]]]) -> None:
    root, env = library_of("mariadb")
    result = run([*WRITE, "-c", "sql('delete from books # where'); commit()"], cwd=root, env=env)
    assert result.exit_code == 1 and "DELETE without WHERE refused" in result.stderr, result.output
    assert run(["-c", "print(count(Book))"], cwd=root, env=env).stdout.strip() == "2"


def test_guard_covers_an_engine_made_later(library_of: Callable[[str], tuple[Path, dict[str, str]]]) -> None:
    root, env = library_of("sqlite")
    code = (
        "from sqlalchemy import create_engine, text\nwith create_engine(engine.url).begin() as c:\n"
        "    c.execute(text('delete from books'))"
    )
    result = run([*WRITE, "-c", code], cwd=root, env=env)
    assert result.exit_code == 1 and "DELETE without WHERE refused" in result.stderr, result.output
    assert run(["-c", "print(count(Book))"], cwd=root, env=env).stdout.strip() == "2"
