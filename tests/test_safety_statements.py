"""The SQL classifier behind the guard, the sandbox and read-only (issue 11 item 4): table-driven, per dialect."""

from __future__ import annotations

import pytest

from appshell.safety.guard import destructive
from appshell.safety.statements import classify

DESTRUCTIVE = [
    ("postgresql", "select 1; delete from order_lines", "DELETE without WHERE"),
    ("postgresql", "with d as (delete from order_lines returning *) select count(*) from d", "DELETE without WHERE"),
    ("postgresql", "delete from order_lines returning (select 1 where true)", "DELETE without WHERE"),
    ("sqlite", "with x as (select 1) delete from order_lines", "DELETE without WHERE"),
    ("mariadb", "delete from order_lines # where id = 1", "DELETE without WHERE"),
    ("mysql", "delete from order_lines -- where id = 1", "DELETE without WHERE"),
    ("postgresql", "/* where */ update books set year = 0", "UPDATE without WHERE"),
    ("postgresql", "update books set note = 'where' ", "UPDATE without WHERE"),
    ("postgresql", "ALTER TABLE books DROP COLUMN year", "ALTER TABLE books … DROP"),
    ("mariadb", "alter table books drop column year", "ALTER TABLE books … DROP"),
    ("sqlite", "drop table books", "DROP TABLE books"),
    ("postgresql", "truncate books", "TRUNCATE books"),
    ("mariadb", "UPDATE books SET year=%s", "UPDATE without WHERE"),
    ("postgresql", "delete from books where id = 1", None),
    ("postgresql", "UPDATE books SET title=%(title)s::VARCHAR WHERE books.id = %(books_id)s::INTEGER", None),
    ("sqlite", "UPDATE books SET year=? WHERE books.id = ?", None),
    ("mariadb", "DELETE FROM books WHERE books.id = %s", None),
    ("postgresql", "select * from books where note = 'delete from books'", None),
    ("postgresql", "insert into books (title) values ('drop table x')", None),
    ("postgresql", "alter table books add column note text", None),
]


@pytest.mark.parametrize("kind,sql,reason", DESTRUCTIVE)
def test_destructive(kind: str, sql: str, reason: str | None) -> None:
    assert destructive(sql, kind) == reason


ESCAPES = [
    ("postgresql", "COMMIT", True),
    ("postgresql", "commit work", True),
    ("postgresql", "END", True),
    ("postgresql", "ABORT", True),
    ("postgresql", "ROLLBACK", True),
    ("postgresql", "ROLLBACK TO SAVEPOINT sa_savepoint_1", False),
    ("postgresql", "RELEASE SAVEPOINT appshell_sandbox", True),
    ("postgresql", 'RELEASE "appshell_sandbox"', True),
    ("postgresql", "RELEASE /* a comment */ SAVEPOINT appshell_sandbox", True),
    ("postgresql", "select 1; RELEASE SAVEPOINT appshell_sandbox", True),
    ("sqlite", "RELEASE SAVEPOINT appshell_sandbox", True),
    ("sqlite", "RELEASE appshell_sandbox", True),
    ("mariadb", "RELEASE SAVEPOINT appshell_sandbox", True),
    ("mariadb", "RELEASE SAVEPOINT sa_savepoint_2", False),
    ("postgresql", "RELEASE SAVEPOINT sa_savepoint_1", False),
    ("postgresql", "SAVEPOINT sa_savepoint_1", False),
    ("postgresql", "update books set year = 0; commit", True),
    ("postgresql", "BEGIN", True),
    ("postgresql", "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED", True),
    ("postgresql", "PREPARE TRANSACTION 'x'", True),
    ("postgresql", "select 1", False),
    ("postgresql", "insert into t values (1) returning id", False),
    ("postgresql", "create table t (x int)", False),
    ("sqlite", "END TRANSACTION", True),
    ("sqlite", "create table t (x int)", False),
    ("mariadb", "START TRANSACTION", True),
    ("mariadb", "SET autocommit = 1", True),
    ("mariadb", "SET @@autocommit = 1", True),
    ("mariadb", "LOCK TABLES books WRITE", True),
    ("mariadb", "UNLOCK TABLES", True),
    ("mariadb", "ANALYZE TABLE books", True),
    ("mariadb", "OPTIMIZE TABLE books", True),
    ("mariadb", "/* a comment */ create table t (x int)", True),
    ("mariadb", "# a comment\ncreate table t (x int)", True),
    ("mariadb", "rename table a to b", True),
    ("mariadb", "grant select on t to u", True),
    ("mariadb", "call p()", True),
    ("mariadb", "create temporary table t (x int)", False),
    ("mariadb", "SET NAMES utf8mb4", False),
    ("mariadb", "insert into t values (1)", False),
    ("mariadb", "SAVEPOINT sa_savepoint_1", False),
]


@pytest.mark.parametrize("kind,sql,escapes", ESCAPES)
def test_sandbox_escapes(kind: str, sql: str, escapes: bool) -> None:
    assert any(s.escapes for s in classify(sql, kind)) is escapes


READ_WRITE = [
    ("postgresql", "SET transaction_read_only = off", True),
    ("postgresql", "set default_transaction_read_only to off", True),
    ("postgresql", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", True),
    ("postgresql", "BEGIN READ WRITE", True),
    ("postgresql", "START TRANSACTION READ WRITE", True),
    ("postgresql", "select set_config('default_transaction_read_only', 'off', false)", True),
    ("postgresql", "select set_config('transaction' || '_read_only', 'off', false)", True),
    ("postgresql", "RESET ALL", True),
    ("postgresql", "DISCARD ALL", True),
    ("postgresql", "select set_config('search_path', 'x', false)", False),
    ("postgresql", "SET search_path = x", False),
    ("postgresql", "select 1", False),
    ("sqlite", "PRAGMA query_only = OFF", True),
    ("sqlite", "pragma query_only=0", True),
    ("sqlite", "PRAGMA query_only", False),
    ("sqlite", "PRAGMA table_info(books)", False),
    ("mariadb", "SET SESSION TRANSACTION READ WRITE", True),
    ("mariadb", "SET SESSION transaction_read_only = 0", True),
    ("mariadb", "SET SESSION tx_read_only = 0", True),
    ("mariadb", "SET NAMES utf8mb4", False),
]


@pytest.mark.parametrize("kind,sql,read_write", READ_WRITE)
def test_read_only_switches(kind: str, sql: str, read_write: bool) -> None:
    assert any(s.read_write for s in classify(sql, kind)) is read_write


ACCOUNTING = [
    ("postgresql", "insert into books (title) values ('x')", [("books", "inserted", True)], None),
    (
        "postgresql",
        "INSERT INTO books (title) VALUES (%(title)s) RETURNING books.id",
        [("books", "inserted", True)],
        None,
    ),
    (
        "postgresql",
        "with d as (delete from books returning *) insert into archive select * from d",
        [("archive", "inserted", True), ("books", "deleted", False)],
        None,
    ),
    ("sqlite", "INSERT OR REPLACE INTO t VALUES (1)", [("t", "inserted", True)], None),
    ("mariadb", "UPDATE books SET year=%s WHERE id = %s", [("books", "updated", True)], None),
    ("postgresql", "create table scratch (x integer)", [], "CREATE TABLE scratch"),
    ("postgresql", "alter table books add column note text", [], "ALTER TABLE books"),
    ("postgresql", "drop index ix", [], "DROP INDEX ix"),
    ("postgresql", "select count(*) from books", [], None),
]


@pytest.mark.parametrize("kind,sql,writes,ddl", ACCOUNTING)
def test_accounting(kind: str, sql: str, writes: list[tuple[str, str, bool]], ddl: str | None) -> None:
    (one,) = classify(sql, kind)
    assert sorted(one.writes) == sorted(writes)
    assert one.ddl == ddl


@pytest.mark.parametrize(
    "kind,sql,count",
    [
        ("postgresql", "delete from a where x = 1; delete from b where y = 2", 2),
        ("postgresql", "select ';' ; delete from b where y = 1;", 2),
        ("postgresql", "delete from b where y = 1 -- ; delete from c", 1),
        ("mariadb", "delete from b where y = 1 # ; delete from c", 1),
        ("postgresql", "delete from b where y = 1 /* ; delete from c */", 1),
    ],
)
def test_split(kind: str, sql: str, count: int) -> None:
    assert len(classify(sql, kind)) == count


@pytest.mark.parametrize("dialect", ["postgres", "sqlite", "mysql"])
def test_command_keywords_are_read_word_by_word(dialect: str) -> None:
    """sqlglot reads a "command" keyword and then the rest of its statement as one string; which keywords
    those are moves between releases (30.31 added RELEASE, and a sandbox refusal was lost). appshell
    reads that string again: every statement's words are tokens whatever the release."""
    from sqlglot.dialects.dialect import Dialect

    from appshell.safety.statements import _tokens

    tokenizer = Dialect.get_or_raise(dialect)
    texts = [str(t.text).upper() for t in _tokens(tokenizer, "EXPLAIN ANALYZE DELETE FROM books")]
    assert texts == ["EXPLAIN", "ANALYZE", "DELETE", "FROM", "BOOKS"], (
        dialect,
        texts,
    )  # a command in a command's string
    for keyword in ("RELEASE", "DO", "SHOW", "EXECUTE", "CALL", "COPY", "MERGE", "PREPARE", "LOCK"):
        texts = [str(t.text).upper() for t in _tokens(tokenizer, f"{keyword} SAVEPOINT appshell_sandbox; select 1")]
        assert texts == [keyword, "SAVEPOINT", "APPSHELL_SANDBOX", ";", "SELECT", "1"], (dialect, keyword, texts)


# -- what the parser cannot read (issue 21 item 4): opaque, the worst case --------------------------------------

OPAQUE = [
    ("postgresql", "DO $$ begin delete from books; end $$", True),
    ("postgresql", "EXECUTE d", True),
    ("postgresql", "PREPARE d AS DELETE FROM books", True),
    ("postgresql", "CALL purge()", True),
    ("postgresql", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", True),
    ("postgresql", "COPY books FROM STDIN", True),
    ("postgresql", 'SET U&"default_transaction_read_onl\\0079" = off', True),
    ("postgresql", "EXPLAIN ANALYZE DELETE FROM books", True),
    ("postgresql", "EXPLAIN DELETE FROM books", False),
    ("postgresql", "PREPARE TRANSACTION 'x'", False),
    ("postgresql", "select count(*) from books", False),
    ("postgresql", "delete from books where id = 1", False),
    ("mariadb", "/*!50000 COMMIT AND CHAIN */", True),
    ("mariadb", "/*M!100000 DELETE FROM books */", True),
    ("mysql", "select 1 /*!50000 , sleep(1) */", True),
    ("mariadb", "select '/*!50000 COMMIT */'", False),
    ("mariadb", "select 1 /* COMMIT */", False),
    ("sqlite", "delete from books where id = 1", False),
]


@pytest.mark.parametrize("kind,sql,opaque", OPAQUE)
def test_opaque(kind: str, sql: str, opaque: bool) -> None:
    assert any(one.opaque for one in classify(sql, kind)) is opaque


WORST_CASE = [  # (kind, sql, what the guard asks about it)
    ("postgresql", "PREPARE d AS DELETE FROM order_lines", "PREPARE of a DELETE without WHERE"),
    ("postgresql", "PREPARE d AS DELETE FROM order_lines WHERE id = $1", None),
    ("postgresql", "EXECUTE d", "EXECUTE runs code appshell cannot read (it may change or remove every row)"),
    (
        "postgresql",
        "DO $$ begin perform 1; end $$",
        "DO runs code appshell cannot read (it may change or remove every row)",
    ),
    ("postgresql", "CALL purge()", "CALL runs code appshell cannot read (it may change or remove every row)"),
    (
        "postgresql",
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "MERGE that updates or deletes rows (appshell cannot tell which)",
    ),
    ("postgresql", "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)", None),
    ("postgresql", "COPY books FROM STDIN", "COPY … FROM loads rows appshell cannot see"),
    ("postgresql", "COPY books TO STDOUT", None),
    ("postgresql", "EXPLAIN ANALYZE DELETE FROM books", "EXPLAIN ANALYZE runs the DELETE/UPDATE it explains"),
    ("mariadb", "/*!50000 DELETE FROM order_lines */", "DELETE without WHERE"),
    ("mariadb", "/*M!100000 TRUNCATE order_lines */", "TRUNCATE order_lines"),
    ("mariadb", "/*!50000 DELETE FROM order_lines WHERE id = 1 */", None),
]


@pytest.mark.parametrize("kind,sql,reason", WORST_CASE)
def test_the_guard_asks_about_the_worst_case(kind: str, sql: str, reason: str | None) -> None:
    assert destructive(sql, kind) == reason


EXECUTABLE_COMMENTS = [  # refused in the sandbox and under read-only, whatever they hold
    ("mariadb", "/*!50000 COMMIT AND CHAIN */", "COMMIT ends the transaction, in an executable comment"),
    (
        "mariadb",
        "/*!40101 SET SESSION TRANSACTION READ WRITE */",
        "it changes the transaction mode, in an executable comment",
    ),
    ("mysql", "select 1 /*!50000 , 2 */", "an executable comment"),
]


@pytest.mark.parametrize("kind,sql,why", EXECUTABLE_COMMENTS)
def test_executable_comments_are_refused(kind: str, sql: str, why: str) -> None:
    found = classify(sql, kind)
    assert any(one.escapes and one.escapes.startswith(why) for one in found), found
    assert all(one.read_write for one in found), found


SERVER_TEXT = [
    ("/*!50000 COMMIT AND CHAIN */", "  COMMIT AND CHAIN  "),
    ("/*M!100000 DELETE FROM x */", "  DELETE FROM x  "),
    ("select '/*!1 x*/'", "select '/*!1 x*/'"),
    ("select 1 /* plain */", "select 1 /* plain */"),
    ("select 1 -- /*!50000 commit */\n", "select 1 -- /*!50000 commit */\n"),
    ("select 1 # /*!50000 commit */", "select 1 # /*!50000 commit */"),
    ("select 'it''s' /*!commit*/", "select 'it''s'  commit "),
    ('select "a\\"b" /*!commit*/', 'select "a\\"b"  commit '),
]


@pytest.mark.parametrize("sql,served", SERVER_TEXT)
def test_server_text(sql: str, served: str) -> None:
    from appshell.safety.statements import server_text

    assert server_text(sql) == served


HARMLESS = [  # after which guarded read-only need not ask the database whether it is still read-only
    ("postgresql", "SELECT books.id, books.title FROM books WHERE books.id = %(pk_1)s::INTEGER", True),
    ("postgresql", "select count(*) from books where id in (1, 2)", True),
    ("postgresql", "select coalesce(max(year), 0) from books", True),
    ("postgresql", "select 'set_config(x)' as s", True),
    ("postgresql", "select my_function(1)", False),  # a user function may call set_config()
    ("postgresql", "select set_config('default_transaction_read_only', 'off', false)", False),
    ("postgresql", "update books set year = 0 where id = 1", False),  # under read-only, a write that succeeds is news
    ("postgresql", "DO $$ begin perform 1; end $$", False),
    ("postgresql", "SET application_name = 'x'", False),
    ("postgresql", "SAVEPOINT sa_savepoint_1", True),
    ("mariadb", "/*!40101 select 1 */", False),
    ("sqlite", "PRAGMA table_info(books)", False),
]


@pytest.mark.parametrize("kind,sql,harmless", HARMLESS)
def test_proven_harmless(kind: str, sql: str, harmless: bool) -> None:
    from appshell.safety.statements import proven_harmless

    assert proven_harmless(sql, classify(sql, kind)) is harmless


@pytest.mark.parametrize(
    "sql,refused",
    [
        ('SET U&"default_transaction_read_onl\\0079" = off', True),
        ('RESET U&"default_transaction_read_onl\\0079"', True),
        ('select U&"title" from books', False),  # opaque (re-checked after), not refused
    ],
)
def test_unicode_names_in_settings_are_refused(sql: str, refused: bool) -> None:
    found = classify(sql, "postgresql")
    assert any(one.read_write for one in found) is refused
    assert any(one.escapes for one in found) is refused
    assert all(one.opaque for one in found)
