"""Safety from the database's own truth (issue 21 items 1–4): every reproduction of the issue, on real databases.

Each passed the parser and did what the database was told on the old code: a sandbox committed through an
executable comment, read-only lifted by a unicode-escaped name or a DO block, a summary saying "no changes
seen" after EXECUTE or DO deleted every row, cascaded deletions missing from the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.audit import audit_records
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

YEARS = "print(count(Book, year=0))"
BOOKS = "print(count(Book))"
RAW = "raw = session.connection().connection.dbapi_connection\n"
GUARDED = 'description = "confirm destructive statements"\n[access]\nconfirm_destructive = true\n'


def state(root: Path, env: dict[str, str], code: str = YEARS) -> str:
    result = run(["-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


# -- item 1: did the outer transaction survive? ------------------------------------------------------------


def test_mariadb_executable_comment_cannot_commit_the_sandbox(
    library_of: Callable[[str], tuple[Path, dict[str, str]]],
) -> None:
    """The issue's reproduction: exit 0, "rolled back", and the change committed."""
    root, env = library_of("mariadb")
    code = (
        "sql('update books set year = 0 where id = 1')\n"
        "sql('/*!50000 COMMIT AND CHAIN */')\n"
        "sql('SAVEPOINT appshell_sandbox')"
    )
    result = run(["--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 1, result.output
    assert "executable comment" in result.stderr and "refused in the sandbox" in result.stderr, result.stderr
    assert state(root, env) == "0"


def test_mariadb_commit_and_chain_below_sqlalchemy_is_detected(
    library_of: Callable[[str], tuple[Path, dict[str, str]]], tmp_path: Path
) -> None:
    """The driver's own cursor: no hook sees it, IN_TRANS stays on (AND CHAIN), the savepoint is made again —
    the session's own count of COMMIT statements tells the transaction is another one."""
    root, env = library_of("mariadb")
    log = tmp_path / "audit.jsonl"
    code = (
        RAW + "c = raw.cursor()\nc.execute('update books set year = 0 where id = 1')\n"
        "c.execute('COMMIT AND CHAIN'); c.execute('SAVEPOINT appshell_sandbox')\n" + BOOKS
    )
    result = run(["--sandbox", "--audit-log", str(log), "-c", code], cwd=root, env=env)
    assert state(root, env) == "1"  # committed: appshell cannot prevent what the driver sends below it …
    assert result.exit_code == 6, result.output  # … it says so
    assert "SANDBOX BROKEN" in result.stderr and "another transaction was open in its place" in result.stderr, (
        result.stderr
    )
    assert "all rolled back" not in result.stderr
    assert audit_records(log)[-1]["status"] == "sandbox_broken"


def test_aiomysql_executable_comment_cannot_commit_the_sandbox(
    app_dir: Callable[[str], Path], mariadb_url: str
) -> None:
    """The async twin, through aiomysql's adapter (an AsyncEngine on MariaDB)."""
    from support.harness import run_module

    url = mariadb_url.replace("mysql+pymysql://", "mysql+aiomysql://")
    root = app_dir("asyncapp")
    env = {"DATABASE_URL": url}
    run_module("asyncapp.seed", root, env, process=False)
    code = "sql(\"update books set title = 'X' where id = 1\")\nsql('/*!50000 COMMIT AND CHAIN */')"
    result = run(["--app", "asyncapp.db", "--sandbox", "-c", code], cwd=root, env=env)
    assert result.exit_code == 1 and "executable comment" in result.stderr, result.output
    check = run(["--app", "asyncapp.db", "-c", "print(count(Book, title='X'))"], cwd=root, env=env)
    assert check.stdout.strip() == "0", check.output


# -- item 2: what changed, by the database's count -------------------------------------------------------

PG_HIDDEN_DELETES = {
    "PREPARE + EXECUTE": "sql('PREPARE d AS DELETE FROM books'); sql('EXECUTE d')",
    "DO block": "sql('DO $$ begin delete from books; end $$')",
    "MERGE": "sql('MERGE INTO books b USING (select id from books) s ON b.id = s.id WHEN MATCHED THEN DELETE')",
}


@pytest.mark.parametrize("code", PG_HIDDEN_DELETES.values(), ids=PG_HIDDEN_DELETES.keys())
def test_postgresql_summary_counts_what_the_parser_cannot_read(
    library_of: Callable[[str], tuple[Path, dict[str, str]]], code: str
) -> None:
    root, env = library_of("postgresql")
    result = run(["--sandbox", "-c", code + "\ncommit()\n" + BOOKS], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "0"
    assert "no changes seen" not in result.stderr, result.stderr  # the old summary, after every row was deleted
    assert "│ books │        0 │       0 │       2 │ pg_stat_xact_user_tables │" in result.stderr, result.stderr
    assert state(root, env, BOOKS) == "2"


def test_asyncpg_summary_counts_a_do_block(asyncpg_app: tuple[Path, dict[str, str]]) -> None:
    root, env = asyncpg_app
    result = run(
        ["--app", "asyncapp.db", "--sandbox", "-c", "sql('DO $$ begin delete from books; end $$')"], cwd=root, env=env
    )
    assert result.exit_code == 0, result.output
    assert "│ books │        0 │       0 │       2 │ pg_stat_xact_user_tables │" in result.stderr, result.stderr
    assert "never committed" in result.stderr  # the program did not commit it


CASCADE = {
    "postgresql": ["create table parent (id int primary key)"]
    + [
        f"create table child_{n} (id serial primary key, parent_id int references parent(id) on delete cascade)"
        for n in "abc"
    ],
    # SQLite: a cascade needs PRAGMA foreign_keys, a no-op inside the sandbox's transaction: a trigger does the same.
    "sqlite": ["create table parent (id integer primary key)"]
    + [f"create table child_{n} (id integer primary key, parent_id int)" for n in "abc"]
    + [
        "create trigger parent_gone after delete on parent begin "
        + " ".join(f"delete from child_{n} where parent_id = old.id;" for n in "abc")
        + " end"
    ],
}


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_cascades_are_counted(library_of: Callable[[str], tuple[Path, dict[str, str]]], kind: str) -> None:
    root, env = library_of(kind)
    setup = [*CASCADE[kind], "insert into parent values (1), (2)"] + [
        f"insert into child_{n} (parent_id) values (1), (2)" for n in "abc"
    ]
    assert run(["-c", "".join(f"sql({s!r})\n" for s in setup) + "commit()"], cwd=root, env=env).exit_code == 0
    result = run(["--sandbox", "-c", "sql('delete from parent where id = 1'); commit()"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "│ parent" in result.stderr and "│        0 │       0 │       1 │" in result.stderr, result.stderr
    if kind == "postgresql":  # per table, by the database's count
        for n in "abc":
            assert f"│ child_{n} │        0 │       0 │       1 │ pg_stat_xact_user_tables │" in result.stderr, (
                result.stderr
            )
        assert "│ parent  │        0 │       0 │       1 │ pg_stat_xact_user_tables │" in result.stderr
    else:  # SQLite counts them, but does not say in which tables: not the parent's, and not zero
        assert "│ parent         │        0 │       0 │       1 │ total_changes() │" in result.stderr, result.stderr
        assert "│ (other tables) │        0 │       0 │       3 │ total_changes() │" in result.stderr, result.stderr
    assert state(root, env, "print(sql('select count(*) from child_a')[0][0])") == "2"


def test_mariadb_summary_gives_the_databases_total(library_of: Callable[[str], tuple[Path, dict[str, str]]]) -> None:
    root, env = library_of("mariadb")
    result = run(["--sandbox", "-c", "sql('update books set year = 0 where id > 0'); commit()"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "│ books │        0 │       2 │       0 │ rowcount" in result.stderr, result.stderr
    assert (
        "mariadb: 2 row(s) modified in all, by the database's count (innodb_trx.trx_rows_modified: a total"
        in result.stderr
    )


# -- item 3: read-only, guarded and re-checked --------------------------------------------------------------

UPDATE = "sql('update books set year = 0 where id > 0'); commit()"

READ_ONLY_LIFTS = {
    "mariadb executable comment": (
        "mariadb",
        "sql('/*!40101 SET SESSION TRANSACTION READ WRITE */')\nrollback()\n" + UPDATE,
        1,
    ),
    "postgresql U& name": (
        "postgresql",
        "sql('SET U&\"default_transaction_read_onl\\\\0079\" = off')\nrollback()\n" + UPDATE,
        1,
    ),
    # The call is put together at run time: no parser sees set_config;
    # the database's setting, read back after the DO, does.
    "postgresql DO set_config": (
        "postgresql",
        "sql(\"DO $$ begin execute 'select set' || "
        "'_config(''default_transaction_read_only'', ''off'', false)'; end $$\")\n"
        "rollback()\n" + UPDATE,
        6,
    ),
    # Below every hook: the driver's own execute() and commit(); the write that follows succeeds, and is the last.
    "postgresql driver's own SET": (
        "postgresql",
        RAW + "raw.execute('SET default_transaction_read_only = off'); raw.commit()\n" + UPDATE,
        6,
    ),
    "mariadb driver's own SET": (
        "mariadb",
        RAW + "raw.cursor().execute('SET SESSION TRANSACTION READ WRITE'); raw.commit()\n" + UPDATE,
        6,
    ),
}


@pytest.mark.parametrize("kind,code,exit_code", READ_ONLY_LIFTS.values(), ids=READ_ONLY_LIFTS.keys())
def test_read_only_cannot_be_lifted_unseen(
    library_of: Callable[[str], tuple[Path, dict[str, str]]], kind: str, code: str, exit_code: int, tmp_path: Path
) -> None:
    """Refused before it runs where the parser can tell (exit 1); else found switched off by the database's own
    answer right after, and the session stops (exit 6) before the commit."""
    root, env = library_of(kind)
    log = tmp_path / "audit.jsonl"
    result = run(["--read-only", "--audit-log", str(log), "-c", code], cwd=root, env=env)
    assert result.exit_code == exit_code, result.output
    if exit_code == 1:
        assert "ReadOnlyError: this session is read-only" in result.stderr, result.stderr
    else:
        assert "READ-ONLY LIFTED" in result.stderr and "switched it off" in result.stderr, result.stderr
    assert state(root, env) == "0"


def test_a_program_that_catches_the_lift_still_ends_with_exit_6_and_the_record_says_so(
    library_of: Callable[[str], tuple[Path, dict[str, str]]], tmp_path: Path
) -> None:
    root, env = library_of("postgresql")
    log = tmp_path / "audit.jsonl"
    lift = READ_ONLY_LIFTS["postgresql DO set_config"][1].split("\n")[0]
    code = f"try:\n    {lift}\nexcept Exception:\n    print('caught, went on')"
    result = run(["--read-only", "--audit-log", str(log), "-c", code], cwd=root, env=env)
    assert result.exit_code == 6 and "caught, went on" in result.stdout, result.output
    records = audit_records(log)
    assert records[0]["read_only_level"] == "guarded"
    assert records[-1]["event"] == "session_end" and records[-1]["status"] == "read_only_lifted"


@pytest.mark.parametrize("flags,level", [([], None), (["--read-only"], "guarded")])
def test_session_start_says_which_read_only_the_session_had(
    library_of: Callable[[str], tuple[Path, dict[str, str]]], tmp_path: Path, flags: list[str], level: str | None
) -> None:
    root, env = library_of("sqlite")
    log = tmp_path / "audit.jsonl"
    assert run([*flags, "--audit-log", str(log), "-c", "print(1)"], cwd=root, env=env).exit_code == 0
    assert audit_records(log)[0]["read_only_level"] == level


# -- item 4: the guard asks about what the parser cannot read -----------------------------------------------

GUARD = {
    "PREPARE of a DELETE": ("postgresql", "sql('PREPARE d AS DELETE FROM books')", "PREPARE of a DELETE without WHERE"),
    "EXECUTE": (
        "postgresql",
        "sql('PREPARE d AS DELETE FROM books where id > 0'); sql('EXECUTE d')",
        "EXECUTE runs code appshell cannot read",
    ),
    "DO": ("postgresql", "sql('DO $$ begin delete from books; end $$')", "DO runs code appshell cannot read"),
    "executable comment": ("mariadb", "sql('/*!50000 DELETE FROM books */')", "DELETE without WHERE"),
}


@pytest.mark.parametrize("kind,code,reason", GUARD.values(), ids=GUARD.keys())
def test_guard_asks_about_what_it_cannot_read(
    library_of: Callable[[str], tuple[Path, dict[str, str]]], kind: str, code: str, reason: str
) -> None:
    root, env = library_of(kind)
    (root / "profiles").mkdir(exist_ok=True)
    (root / "profiles" / "development.toml").write_text(GUARDED)
    result = run(["-c", code + "\ncommit()"], cwd=root, env=env)  # no sandbox: the guard alone stands between
    assert result.exit_code == 1, result.output
    assert "DestructiveStatementRefused" in result.stderr and reason in result.stderr, result.stderr
    assert state(root, env, BOOKS) == "2"


def test_asyncpg_read_only_lifted_by_a_do_block_ends_the_session(asyncpg_app: tuple[Path, dict[str, str]]) -> None:
    """The async twin: the setting is read back through asyncpg's adapter, inside SQLAlchemy's greenlet."""
    root, env = asyncpg_app
    code = (
        "sql(\"DO $$ begin execute 'select set' || "
        "'_config(''default_transaction_read_only'', ''off'', false)'; end $$\")\n"
        "rollback()\nsql(\"update books set title = 'X' where id = 1\"); commit()"
    )
    result = run(["--app", "asyncapp.db", "--read-only", "-c", code], cwd=root, env=env)
    assert result.exit_code == 6, result.output
    assert "READ-ONLY LIFTED" in result.stderr, result.stderr
    check = run(["--app", "asyncapp.db", "-c", "print(count(Book, title='X'))"], cwd=root, env=env)
    assert check.stdout.strip() == "0", check.output
