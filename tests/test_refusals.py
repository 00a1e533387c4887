"""One-line refusals everywhere (issue 25 item 3): a read-only or sandbox refusal of raw SQL, a Core
statement or an async call is one line naming what fixes it, in every mode and shell, sync and async;
the whole traceback only with --traceback (IPython: %tb)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.apps import library_on
from support.harness import Result, run
from support.terminal import leave, spawn_shell

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

RAW = "sql('delete from books')"
CORE = "from sqlalchemy import delete\nsession.execute(delete(Book))"
ASYNC_RAW = "from sqlalchemy import text\nawait session.execute(text('delete from books'))"
PROMPT = [r">>>", r"In \["]  # coloured prompts: their text, between escape codes


def _one_line(result: Result, *words: str) -> str:
    """The run failed with exit 1 and said so in one line (the sandbox's summary aside), naming *words*."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("appshell: sandbox")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_library(request: pytest.FixtureRequest, app_dir: Callable[[str], Path]) -> tuple[Path, dict[str, str]]:
    """tests/apps/plainapp with two books, on SQLite, PostgreSQL and MariaDB."""
    url = request.getfixturevalue(
        {"sqlite": "sqlite_url", "postgresql": "pg_url", "mariadb": "mariadb_url"}[request.param]
    )
    return library_on(app_dir, url)


@pytest.mark.parametrize("program", [RAW, CORE], ids=["raw", "core"])
def test_read_only_refusal_of_sql_is_one_line_naming_write(
    any_library: tuple[Path, dict[str, str]], program: str
) -> None:
    root, env = any_library
    line = _one_line(
        run(["--read-only", "-c", program], cwd=root, env=env),
        "this session is read-only",
        "--write",
        "the database refused",
    )
    assert "delete from books" in line.lower()
    assert run(["-c", "print('books', count(Book))"], cwd=root, env=env).stdout == "books 2\n"  # nothing was deleted


def test_read_only_refusal_in_a_script_and_on_stdin(
    app_dir: Callable[[str], Path], sqlite_url: str, tmp_path: Path
) -> None:
    root, env = library_on(app_dir, sqlite_url)
    script = tmp_path / "fix.py"
    script.write_text(f"print('start')\n{RAW}\nprint('not reached')\n")
    result = run(["--read-only", str(script)], cwd=root, env=env)
    _one_line(result, "--write")
    assert result.stdout == "start\n"
    _one_line(run(["--read-only", "-"], cwd=root, env=env, input=RAW + "\n"), "--write")


def test_a_profile_without_write_names_another_profile(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root, env = library_on(app_dir, sqlite_url)
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text("[access]\nallow_write = false\n")
    line = _one_line(run(["--read-only", "-c", RAW], cwd=root, env=env), "read-only")
    assert "does not allow --write" in line and "another profile" in line


@pytest.mark.parametrize("program", [RAW, ASYNC_RAW], ids=["helper", "await"])
def test_async_read_only_refusal_is_one_line(asyncapp: tuple[Path, dict[str, str]], program: str) -> None:
    root, env = asyncapp
    _one_line(
        run(["--app", "asyncapp.db", "--read-only", "-c", program], cwd=root, env=env),
        "this session is read-only",
        "--write",
    )


def test_sandbox_refusal_of_raw_and_async_sql_is_one_line(asyncapp: tuple[Path, dict[str, str]]) -> None:
    root, env = asyncapp
    for program in ("sql('commit')", "from sqlalchemy import text\nawait session.execute(text('commit'))"):
        _one_line(
            run(["--app", "asyncapp.db", "--sandbox", "-c", program], cwd=root, env=env),
            "refused in the sandbox",
            "without --sandbox",
        )


def test_traceback_flag_shows_the_whole_traceback(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root, env = library_on(app_dir, sqlite_url)
    result = run(["--read-only", "--traceback", "-c", RAW], cwd=root, env=env)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr and "readonly database" in result.stderr, result.stderr


def test_the_users_own_exception_is_named_with_the_refusal(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root, env = library_on(app_dir, sqlite_url)
    program = f"try:\n    {RAW}\nexcept Exception:\n    raise ValueError('fix failed')"
    line = _one_line(run(["--read-only", "-c", program], cwd=root, env=env), "--write")
    assert line.startswith("ValueError: fix failed — after ")


def test_other_database_errors_keep_their_traceback(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root, env = library_on(app_dir, sqlite_url)
    result = run(["--read-only", "-c", "sql('select * from no_such_table')"], cwd=root, env=env)
    assert result.exit_code == 1 and "Traceback" in result.stderr and "no such table" in result.stderr


def test_a_refusal_wrapped_by_sqlalchemy_is_found() -> None:
    from sqlalchemy.exc import StatementError

    from appshell.console.refusals import Refusals
    from appshell.safety.guard import DestructiveStatementRefused

    refused = DestructiveStatementRefused(
        "DELETE without WHERE refused (no terminal to ask); the statement was not run"
    )
    wrapped = StatementError("wrapped", "delete from books", {}, refused)
    try:
        raise wrapped from refused
    except StatementError as exc:
        assert Refusals().line(exc) == refused.format()
        assert Refusals(traceback=True).line(exc) is None
    assert Refusals().line(ValueError("mine")) is None


# -- the shells, in a real terminal --------------------------------------------------------------------


def _refused_at_the_prompt(child: object, statement: str) -> str:
    import pexpect

    assert isinstance(child, pexpect.spawn)
    child.expect(PROMPT)
    child.sendline(statement)
    child.expect(r"this session is read-only[^\r\n]*--write")
    said = str(child.before) + str(child.after)
    child.expect(PROMPT)
    return said + str(child.before)


@pytest.mark.subprocess
@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_shells_say_a_refusal_in_one_line(app_dir: Callable[[str], Path], sqlite_url: str, shell: str) -> None:
    root, env = library_on(app_dir, sqlite_url)
    child = spawn_shell(root, "--shell", shell, "--read-only", "-q", env=env)
    said = _refused_at_the_prompt(child, RAW)
    assert "Traceback" not in said and "sqlalchemy" not in said.replace("sqlalchemy import", ""), said
    child.sendline("print('books', count(Book))")  # the shell goes on
    child.expect("books 2")
    if shell == "ipython":
        child.expect(PROMPT)
        child.sendline("%tb")  # the whole traceback, on request
        child.expect("Traceback")
        child.expect("readonly database")
    child.expect(PROMPT)
    leave(child)


@pytest.mark.subprocess
@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_async_shells_say_a_refusal_in_one_line(aiosqlite_app: tuple[Path, dict[str, str]], shell: str) -> None:
    root, env = aiosqlite_app
    child = spawn_shell(root, "--app", "asyncapp.db", "--shell", shell, "--read-only", "-q", env=env)
    said = _refused_at_the_prompt(
        child, "await session.execute(text('delete from books'))" if shell != "python" else RAW
    )
    assert "Traceback" not in said, said
    child.sendline("print('books', count(Book))")
    child.expect("books 2")
    child.expect(PROMPT)
    leave(child)


@pytest.mark.subprocess
def test_traceback_flag_in_a_shell(app_dir: Callable[[str], Path], sqlite_url: str) -> None:
    root, env = library_on(app_dir, sqlite_url)
    child = spawn_shell(root, "--shell", "python", "--read-only", "--traceback", "-q", env=env)
    child.expect(PROMPT)
    child.sendline(RAW)
    child.expect("Traceback")
    child.expect("readonly database")
    child.expect(PROMPT)
    leave(child)


BREAK = "raw = session.connection().connection.dbapi_connection; raw.execute('COMMIT'); sql('select 1')"


@pytest.mark.subprocess
def test_sandbox_broken_is_said_once_in_a_program(app_dir: Callable[[str], Path], pg_url: str) -> None:
    root, env = library_on(app_dir, pg_url)
    result = run(["--sandbox", "-c", BREAK], cwd=root, env=env)
    assert result.exit_code == 6 and result.stderr.count("SANDBOX BROKEN") == 1, result.stderr


@pytest.mark.subprocess
@pytest.mark.parametrize("shell", ["ipython", "ptpython", "python"])
def test_sandbox_broken_is_said_once_in_each_shell(app_dir: Callable[[str], Path], pg_url: str, shell: str) -> None:
    import pexpect

    root, env = library_on(app_dir, pg_url)
    child = spawn_shell(root, "--shell", shell, "--sandbox", "-q", env=env)
    child.expect(PROMPT)
    child.sendline(BREAK)
    child.expect(pexpect.EOF)  # the session ends, in every shell the same way
    child.close()
    assert child.exitstatus == 6
    assert str(child.before).count("SANDBOX BROKEN") == 1, child.before


def test_a_read_only_role_refusal_is_one_line(app_dir: Callable[[str], Path], pg_url: str, pg_role: str) -> None:
    root, env = library_on(app_dir, pg_url)
    (root / "profiles").mkdir()
    (root / "profiles" / "development.toml").write_text(
        '[database]\nread_only = true\nread_only_url_env = "DATABASE_URL_READONLY"\n'
    )
    line = _one_line(
        run(["-c", RAW], cwd=root, env={**env, "DATABASE_URL_READONLY": pg_role}), "a read-only role", "--write"
    )
    assert "the database refused `delete from books`" in line


class _DriverError(Exception):
    """A driver's error, as psycopg (sqlstate) and pymysql (args: number, message) carry their codes."""

    def __init__(self, *args: object, sqlstate: str | None = None) -> None:
        super().__init__(*args)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "enforced", "says"),
    [
        (
            _DriverError("cannot execute DELETE in a read-only transaction", sqlstate="25006"),
            False,
            "its transaction is aborted",
        ),
        (_DriverError("permission denied for table books", sqlstate="42501"), True, "a read-only role"),
        (
            _DriverError("permission denied for table books", sqlstate="42501"),
            False,
            None,
        ),  # the app's own user lacks a grant
        (
            _DriverError(1792, "Cannot execute statement in a READ ONLY transaction", sqlstate="25006"),
            False,
            "READ ONLY transaction",
        ),
        (_DriverError(1142, "DELETE command denied to user 'ro'", sqlstate="42000"), True, "command denied"),
        (_DriverError("no such table: books"), False, None),
        (_DriverError(1143, "SELECT command denied to user 'ro' for column 'email'", sqlstate="42000"), True, None),
    ],
    ids=["pg-read-only", "pg-role", "pg-grant", "mysql-read-only", "mysql-role", "other", "a-read-refused"],
)
def test_the_databases_refusals(error: Exception, enforced: bool, says: str | None) -> None:
    from sqlalchemy.exc import DBAPIError

    from appshell.console.refusals import Refusals

    sql = (
        "select email from books" if "SELECT" in str(error) else "delete from books"
    )  # a protected column's grant: a read
    wrapped = DBAPIError.instance(sql, {}, error, _DriverError)
    line = Refusals(read_only=True, profile="p", enforced=enforced).line(wrapped)
    assert (line is None) == (says is None), line
    if says is not None:
        assert line is not None and says in line and "`delete from books`" in line and "--write" in line
    assert Refusals(read_only=False).line(wrapped) is None  # a read-write session: the database's error, as it is


@pytest.mark.subprocess
def test_a_refusal_in_pythonstartup_is_one_line(
    app_dir: Callable[[str], Path], sqlite_url: str, tmp_path: Path
) -> None:
    root, env = library_on(app_dir, sqlite_url)
    startup = tmp_path / "startup.py"
    startup.write_text(RAW + "\n")
    child = spawn_shell(root, "--shell", "python", "--read-only", "-q", env={**env, "PYTHONSTARTUP": str(startup)})
    child.expect(r"this session is read-only[^\r\n]*--write")
    child.expect(PROMPT)
    assert "Traceback" not in str(child.before)
    leave(child)
