"""Safety on real SQLite and PostgreSQL: sandbox, read-only, destructive guard, timeouts, tagging."""

from __future__ import annotations

import json
import re
import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest
from support.apps import library_on
from support.harness import run
from support.processes import started
from support.terminal import end_input, spawn_shell

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

STATE = "print(json.dumps([count(Author), count(Book), sorted(b.title for b in where(Book))]))"
BEFORE = [1, 2, ["Children of Dune", "Dune"]]


def state(root: Path, env: dict[str, str]) -> object:
    result = run(["-c", "import json\n" + STATE], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def write_profile(root: Path, text: str, name: str = "development") -> None:
    (root / "profiles").mkdir(exist_ok=True)
    (root / "profiles" / f"{name}.toml").write_text(text)


# -- sandbox ------------------------------------------------------------------


def test_sandbox_dry_run_rolls_everything_back(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    code = textwrap.dedent("""
        book = find(Book, 1); book.title = "Dune (revised)"; commit()
        session.add(Author(name="Le Guin")); commit()
        sql("delete from books where year > 1970")
        session.execute(text("insert into authors (name) values ('Banks')"))
        sql("create table scratch (x integer)")
        print(count(Author), count(Book), first(Book).title)
    """)
    result = run(["--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["3", "1", "Dune", "(revised)"]  # inside: committed changes are visible
    assert "sandbox dry run — these changes were made, then rolled back" in result.stderr
    assert "│ authors │        2 │       0 │       0 │" in result.stderr
    assert "│ books   │        0 │       1 │       1 │" in result.stderr
    assert state(root, env) == BEFORE
    missing = run(
        ["-c", "from sqlalchemy import inspect; print(inspect(engine).has_table('scratch'))"], cwd=root, env=env
    )
    assert missing.stdout.strip() == "False"  # DDL is transactional on SQLite and PostgreSQL: rolled back too


def test_sandbox_rolls_back_after_an_error(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(["--sandbox"], cwd=root, env=env, input="session.add(Author(name='X')); commit()\n1/0\n")
    assert result.exit_code == 1 and "ZeroDivisionError" in result.stderr
    assert "│ authors │        1 │" in result.stderr
    assert state(root, env) == BEFORE


def test_sandbox_from_profile_and_environment(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    assert run(["-c", "sql('delete from books')"], cwd=root, env={**env, "APPSHELL_SANDBOX": "1"}).exit_code == 0
    write_profile(root, "[database]\nsandbox = true\n")
    assert run(["-c", "sql('delete from books')"], cwd=root, env=env).exit_code == 0
    assert state(root, env) == BEFORE


def test_flask_session_is_sandboxed(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root = app_dir("flaskapp")
    env = {"DATABASE_URL": sqlite_url}
    assert run(["-c", "from flaskapp import db; db.create_all()"], cwd=root, env=env).exit_code == 0
    result = run(
        [
            "--sandbox",
            "-c",
            "from flaskapp import db; db.session.add(Gadget(name='x')); db.session.commit(); print(count(Gadget))",
        ],
        cwd=root,
        env=env,
    )
    assert result.stdout.strip() == "1", result.output
    assert run(["-c", "print(count(Gadget))"], cwd=root, env=env).stdout.strip() == "0"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_sandbox_killed_mid_session_leaves_nothing(library: tuple[Path, dict[str, str]], sig: signal.Signals) -> None:
    root, env = library
    code = (
        "session.add(Author(name='Ghost')); commit(); sql('delete from books'); "
        "print('go', flush=True); import time; time.sleep(60)"
    )
    proc = started(["--sandbox", "-c", code], root, env)
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == (-9 if sig == signal.SIGKILL else 128 + signal.SIGTERM)
    if sig == signal.SIGTERM:
        assert proc.stderr is not None and b"rolled back" in proc.stderr.read()
    for _ in range(50):  # the server notices the dropped connection at once, but not synchronously
        try:
            if state(root, env) == BEFORE:
                break
        except AssertionError:
            pass
        time.sleep(0.1)
    assert state(root, env) == BEFORE


def test_interactive_sandbox_ctrl_d(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    child = spawn_shell(root, "--shell", "python", "--sandbox", env=env, term="dumb")
    child.expect(r"SANDBOX \(all changes rolled back at exit\)")
    child.expect(">>> ")
    child.sendline("sql('delete from books'); commit(); print('books', count(Book))")
    child.expect("books 0")
    child.expect(">>> ")
    child.sendcontrol("d")
    child.expect("rolled back")
    child.expect(pexpect.EOF)
    assert state(root, env) == BEFORE


# -- read-only ----------------------------------------------------------------


def test_production_is_read_only_unless_write(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    ro = run(["--profile", "production", "--reason", "t", "-c", "print(sql('delete from books'))"], cwd=root, env=env)
    assert ro.exit_code == 1
    assert state(root, env) == BEFORE
    rw = run(
        [
            "--profile",
            "production",
            "--reason",
            "t",
            "--write",
            "-y",
            "-c",
            "print(sql('delete from books where year > 1970'))",
        ],
        cwd=root,
        env=env,
    )
    assert rw.exit_code == 0 and rw.stdout.strip() == "1", rw.output


def test_write_refused_where_profile_forbids(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    write_profile(root, "[database]\nread_only = true\n[access]\nallow_write = false\n", "locked")
    result = run(["--profile", "locked", "--write", "-c", "1"], cwd=root, env=env)
    assert result.exit_code == 2
    assert (
        result.stderr
        == "appshell: error: profile 'locked' does not allow --write — use another profile or drop --write\n"
    )


def test_read_only_raw_sql_changes_nothing_even_after_set(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(
        [
            "--read-only",
            "-c",
            "try:\n    sql('update books set year = 0')\nexcept Exception as e:\n    print(type(e).__name__)\n"
            "rollback()\nprint(count(Book, year=0))",
        ],
        cwd=root,
        env=env,
    )
    assert result.stdout.split() == ["OperationalError" if "sqlite" in env["DATABASE_URL"] else "InternalError", "0"], (
        result.output
    )


# -- destructive-statement guard ----------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "sql('delete from books')",
        "sql('UPDATE books SET year = 2000')",
        "session.execute(delete(Book))",
        "session.execute(update(Book).values(year=1))",
        "sql('drop table books')",
    ],
)
def test_destructive_refused_without_tty(library: tuple[Path, dict[str, str]], code: str) -> None:
    root, env = library
    result = run(["--profile", "staging", "-c", code + "; commit()"], cwd=root, env=env)
    assert result.exit_code == 1
    assert "DestructiveStatementRefused" in result.stderr and "pass --yes to allow it" in result.stderr
    assert state(root, env) == BEFORE


def test_destructive_with_where_or_yes_runs(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    assert (
        run(
            ["--profile", "staging", "-c", "sql('delete from books where year > 1970'); commit()"], cwd=root, env=env
        ).exit_code
        == 0
    )
    assert (
        run(
            ["--profile", "staging", "--yes", "-c", "sql('update books set year = 1'); commit()"], cwd=root, env=env
        ).exit_code
        == 0
    )
    assert run(["-c", "print(count(Book), count(Book, year=1))"], cwd=root, env=env).stdout.split() == ["1", "1"]


def test_destructive_confirmation_at_a_tty(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    child = spawn_shell(root, "--shell", "python", "--profile", "staging", "-q", env=env, term="dumb")
    child.expect(">>> ")
    child.sendline("sql('delete from books')")
    child.expect("DELETE without WHERE")
    child.expect("delete from books")
    child.expect("Run it\\? Type 'yes'")
    child.sendline("no")
    child.expect("DestructiveStatementRefused: DELETE without WHERE refused \\(answered no\\)")
    child.expect(">>> ")
    child.sendline("sql('delete from books'); commit()")
    child.expect("Run it\\?")
    child.sendline("yes")
    child.expect(">>> ")
    end_input(child)
    assert run(["-c", "print(count(Book))"], cwd=root, env=env).stdout.strip() == "0"


# -- timeouts, tagging, echo ---------------------------------------------------


def test_statement_timeout(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    write_profile(root, "[database]\nstatement_timeout_ms = 300\n")
    slow = (
        "sql('select pg_sleep(3)')"
        if "postgresql" in env["DATABASE_URL"]
        else "sql('with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c')"
    )
    # Without the timeout, pg_sleep would succeed (exit 0) and the endless CTE would never return.
    result = run(["-c", slow], cwd=root, env=env, timeout=60)
    assert result.exit_code == 1
    assert "statement timeout" in result.stderr or "interrupted" in result.stderr, result.stderr


def test_postgresql_connection_tagged_with_audit_session(
    app_dir: Callable[[str], Path], pg_url: str, tmp_path: Path
) -> None:
    root = app_dir("plainapp")
    log = tmp_path / "audit.jsonl"
    code = (
        "print(sql(\"select current_setting('application_name') as a, "
        "current_setting('idle_in_transaction_session_timeout') as i\")[0])"
    )
    result = run(["--sandbox", "--audit-log", str(log), "-c", code], cwd=root, env={"DATABASE_URL": pg_url})
    assert result.exit_code == 0, result.output
    session = json.loads(log.read_text().splitlines()[0])["session"]
    assert result.stdout.strip() == f"('appshell:{session}', '15min')"


def test_echo_sql_flag_and_helper(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(["--echo-sql", "-c", "count(Book, year=1965)"], cwd=root, env=env)
    assert re.search(
        r"-- SQL from <string>:1\nSELECT count\(\*\) AS count_1 \nFROM books \n"
        r"WHERE books.year = (\?|%\(year_1\)s(::INTEGER)?)\n"
        r"-- parameters: .*\n-- \d+\.\d ms",
        result.stderr,
    ), result.stderr
    toggled = run(["-c", "count(Book); echo_sql(); count(Author); echo_sql(False); first(Book)"], cwd=root, env=env)
    assert toggled.stderr.count("-- SQL") == 1 and "FROM authors" in toggled.stderr


def test_echo_sql_names_the_operators_line_and_lays_out_long_sql(
    library: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, env = library
    script = tmp_path / "report.py"
    script.write_text(
        "print('start')\n"
        "sql('select b.id, b.title, b.year from books b "
        "where b.year > 1900 and b.title is not null order by b.year desc')\n"
    )
    result = run(["--echo-sql", str(script)], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert f"-- SQL from {script}:2\nSELECT\n  b.id,\n  b.title,\n  b.year\nFROM books AS b\nWHERE" in result.stderr, (
        result.stderr
    )
    assert re.search(r"ORDER BY\n  b.year DESC\n-- \d+\.\d ms", result.stderr), result.stderr


def test_mariadb_read_only_and_sandbox(app_dir: Callable[[str], Path], mariadb_url: str) -> None:
    root, env = library_on(app_dir, mariadb_url)
    ro = run(["--read-only", "-c", "sql('delete from books')"], cwd=root, env=env)
    assert ro.exit_code == 1 and "READ ONLY" in ro.stderr.upper()
    sandboxed = run(["--sandbox", "-c", "sql('delete from books'); commit(); print(count(Book))"], cwd=root, env=env)
    assert sandboxed.stdout.strip() == "0" and "│ books │        0 │       0 │       2 │" in sandboxed.stderr, (
        sandboxed.output
    )
    ddl = run(["--sandbox", "-c", "sql('create table scratch (x int)')"], cwd=root, env=env)
    assert (
        ddl.exit_code == 1
        and "SandboxRefused: CREATE cannot be rolled back on mariadb" in ddl.stderr
        and "Traceback" not in ddl.stderr
    )
    assert state(root, env) == BEFORE
