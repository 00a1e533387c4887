"""The helpers against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


def test_sql_returns_a_table_and_rowcounts(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(
        [
            "-c",
            "print(sql('select title, year from books where year > :y order by year', y=1970))\n"
            "print(sql('update books set year = year + 0'))",
        ],
        cwd=root,
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == textwrap.dedent("""\
        ┌──────────────────┬──────┐
        │ title            │ year │
        ├──────────────────┼──────┤
        │ Children of Dune │ 1976 │
        └──────────────────┴──────┘
        (1 row)
        2
    """)


def test_where_and_show_objects(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(["-c", "show(where(Book, author_id=1))\nshow(find(Book, 2))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Book"
    assert lines[2] == "│ id │ title            │ year │ author_id │"
    assert "│  1 │ Dune             │ 1965 │         1 │" in lines
    assert "(2 rows)" in lines
    assert "│ title     │ Children of Dune │" in lines  # one object: a vertical table


def test_show_query_and_model(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(["-c", "show(select(Book.title).order_by(Book.year.desc()))\nshow(Author)"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.index("Children of Dune") < result.stdout.index("│ Dune ")
    assert "│  1 │ Herbert │" in result.stdout


def test_describe(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(["-c", "describe(Book)"], cwd=root, env=env)
    assert "│ author_id │ INTEGER      │ no       │ FK authors.id │" in result.stdout
    assert "│ author       │ many-to-one │ Author │" in result.stdout


def test_explain(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(["-c", "print(explain(select(Book).where(Book.year > 1970)))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    # SQLite answers with "SCAN books", PostgreSQL with "Seq Scan on books".
    assert "SCAN books" in result.stdout or "Seq Scan on books" in result.stdout


def test_rollback_helper(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(
        [
            "-c",
            "session.add(Author(name='X')); session.flush(); print(count(Author)); rollback(); print(count(Author))",
        ],
        cwd=root,
        env=env,
    )
    assert result.stdout.split() == ["2", "1"]


def test_audit_log_helper_lists_this_sessions_statements(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run([], cwd=root, env=env, input="print(count(Book))\nshow(audit_log())\n")
    assert result.exit_code == 0, result.output
    assert "│ n │ status  │" in result.stdout
    assert "│ 1 │ running │" in result.stdout  # the program itself, still running when it looks


def test_read_only_is_enforced_by_the_database(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    raw = run(["--read-only", "-c", "sql('delete from books')"], cwd=root, env=env)
    assert raw.exit_code == 1
    assert (
        "readonly" in raw.stderr.replace(" ", "").replace("-", "").lower()
    )  # SQLite: "attempt to write a readonly database"; PostgreSQL: "read-only transaction"
    orm = run(["--read-only", "-c", "session.add(Author(name='Y')); commit()"], cwd=root, env=env)
    assert orm.exit_code == 1
    assert "ReadOnlyError" in orm.stderr and "--write" in orm.stderr
    assert run(["-c", "print(count(Book), count(Author))"], cwd=root, env=env).stdout.split() == ["2", "1"]
