"""Issue 13 items 7, 10 and 11: explain, describe, find, tables, --json hygiene, doctor's migrations."""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from support.environment import clean_environ
from support.harness import Result, run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)


def setup_types(root: Path, env: dict[str, str]) -> None:
    code = textwrap.dedent("""
        from typesapp.models import Status
        metadata.create_all(engine)
        c = Customer(email='a@x', name='Ann')
        session.add(Purchase(placed_at=datetime(2024, 5, 1, 12, tzinfo=timezone.utc), status=Status.paid, \
price=Decimal('10.50'), customer=c))
        session.add(Membership(group_id=1, user_id=2, role='admin'))
        commit()
    """)
    result = run(["-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output


# --- explain -----------------------------------------------------------------------------------


def test_explain_never_cuts_plan_lines(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    long_filter = " or ".join(
        f"Book.title == 'a title long enough to push the plan line past sixty characters {i}'" for i in range(3)
    )
    result = run(["-c", f"print(explain(select(Book).where({long_filter})))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert (
        "sixty characters 2" in result.stdout or "SCAN books" in result.stdout
    )  # PostgreSQL prints the filter; SQLite the scan
    assert max(len(line) for line in result.stdout.splitlines()) > 60 or "SCAN books" in result.stdout


def test_explain_takes_named_parameters_for_sql_strings(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(["-c", "print(explain('select * from books where year > :y', y=1970))"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "SCAN books" in result.stdout or "Filter: (year > 1970)" in result.stdout


def test_explain_analyze_on_postgresql_runs_in_a_rolled_back_transaction(
    app_dir: Callable[[str], Path], pg_url: str
) -> None:
    root = app_dir("plainapp")
    env = {"DATABASE_URL": pg_url}
    code = textwrap.dedent("""
        metadata.create_all(engine); session.add(Author(name='Herbert')); commit()
        plan = explain(update(Author).values(name='changed'), analyze=True)
        print(plan)
        print(first(Author).name, count(Author, name='changed'))
    """)
    result = run(["-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "actual time=" in result.stdout and "Execution Time" in result.stdout
    assert "(analyze: the statement ran inside a transaction that was rolled back)" in result.stdout
    assert result.stdout.splitlines()[-1] == "Herbert 0"


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_explain_analyze_elsewhere_says_where_it_works(
    app_dir: Callable[[str], Path], request: pytest.FixtureRequest, backend: str
) -> None:
    root = app_dir("plainapp")
    env = {"DATABASE_URL": request.getfixturevalue(f"{backend}_url")}
    result = run(["-c", "metadata.create_all(engine)\nexplain(select(Book), analyze=True)"], cwd=root, env=env)
    assert result.exit_code == 1
    assert (
        f"ValueError: explain(…, analyze=True) runs EXPLAIN ANALYZE on PostgreSQL only (this database is {backend})"
        in result.stderr
    )


# --- describe ----------------------------------------------------------------------------------


def test_describe_shows_the_databases_own_types_and_constraints_on_postgresql(
    app_dir: Callable[[str], Path], pg_url: str
) -> None:
    root = app_dir("typesapp")
    env = {"DATABASE_URL": pg_url}
    setup_types(root, env)
    result = run(["-c", "describe(Purchase)"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    out = result.stdout
    rows = [" ".join(line.split()) for line in out.splitlines()]  # cells compared without their padding
    assert "│ token       │ UUID                     │ no       │ unique          │" in out
    assert "│ placed_at   │ TIMESTAMP WITH TIME ZONE │ no       │                 │" in out
    assert "│ status      │ purchase_status          │ no       │                 │" in out  # the enum's own name
    assert (
        "│ ix_purchases_status_placed │ index │ (status, placed_at) │" in rows
    )  # from __table_args__, as pg_indexes has it
    assert "│ uq_purchases_token │ unique │ token │" in rows
    assert "│ ck_purchases_price │ check │ price >= 0::numeric │" in rows
    assert "│ customer     │ many-to-one │ Customer │" in out


def test_describe_on_sqlite_and_drift_between_model_and_database(
    app_dir: Callable[[str], Path], sqlite_url: str
) -> None:
    root = app_dir("typesapp")
    env = {"DATABASE_URL": sqlite_url}
    setup_types(root, env)
    run(["-c", "sql('alter table customers add column legacy_flag integer'); commit()"], cwd=root, env=env)
    result = run(
        [
            "-c",
            "describe(Purchase); describe(Customer); describe(Labelled); "
            "sql('drop table labelled'); describe(Labelled)",
        ],
        cwd=root,
        env=env,
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    rows = [" ".join(line.split()) for line in out.splitlines()]  # cells compared without their padding
    assert "│ ck_purchases_price │ check │ price >= 0 │" in rows
    assert "│ ix_purchases_status_placed │ index │ (status, placed_at) │" in rows
    assert "│ legacy_flag │ INTEGER      │ yes      │ not mapped │" in out
    assert "Labelled (table labelled, not in the database: as the model declares it)" in out


# --- find ----------------------------------------------------------------------------------------


def test_find_on_a_composite_key(app_dir: Callable[[str], Path], db_url: str) -> None:
    root = app_dir("typesapp")
    env = {"DATABASE_URL": db_url}
    setup_types(root, env)
    ok = run(
        [
            "-c",
            "print(find(Membership, (1, 2)).role, "
            "find(Membership, group_id=1, user_id=2).role, find(Membership, (9, 9)))",
        ],
        cwd=root,
        env=env,
    )
    assert ok.stdout.split() == ["admin", "admin", "None"], ok.output
    bad = run(["-c", "find(Membership, 1)"], cwd=root, env=env)
    assert bad.exit_code == 1
    assert bad.stderr.splitlines()[-1] == (
        "TypeError: Membership's primary key has 2 columns (group_id, user_id): "
        "find(Membership, (group_id, user_id)) or find(Membership, group_id=…, user_id=…)"
    )


def test_helpers_name_a_non_model_argument(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    result = run(["-c", "where('Book')"], cwd=root, env=env)
    assert result.exit_code == 1
    assert "TypeError: where() takes a mapped class first, such as where(Order, …); got 'Book'" in result.stderr


# --- render.table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [list, tuple, iter, lambda rows: (r for r in rows)], ids=["list", "tuple", "iterator", "generator"]
)
def test_table_right_aligns_numbers_whatever_the_rows_are(make: Callable[[list[list[object]]], object]) -> None:
    from appshell.console.render import table

    rows = [["a", 1, decimal.Decimal("2.50")], ["bb", 10, None]]
    assert table(["name", "n", "price"], make(rows)).splitlines()[3:5] == [
        "│ a    │  1 │  2.50 │",
        "│ bb   │ 10 │  NULL │",
    ]


@pytest.mark.parametrize(
    ("shown", "more", "hint", "expected"),
    [
        (4, None, "", "(4 rows)"),
        (1, 0, "x", "(1 row)"),
        (20, 5, "", "(20 rows shown of 25; 5 more)"),
        (20, 980, "pass limit=N", "(20 rows shown of 1000; 980 more: pass limit=N)"),
    ],
)
def test_footer(shown: int, more: int | None, hint: str, expected: str) -> None:
    from appshell.console.render import footer

    assert footer(shown, more, hint) == expected


# --- --json ------------------------------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"
    TWO = 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Colour.RED, "red"),
        (Colour.TWO, 2),
        (datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC), "2024-05-01T12:30:00+00:00"),
        (datetime.datetime(2024, 5, 1, 12, 30), "2024-05-01T12:30:00"),
        (datetime.date(2024, 5, 1), "2024-05-01"),
        (datetime.time(9, 5), "09:05:00"),
        (decimal.Decimal("10.50"), "10.50"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (b"\x00\xff", "AP8="),
        ({"k": (1, {2})}, {"k": [1, [2]]}),
        ((x for x in range(2)), [0, 1]),
        (None, None),
    ],
    ids=lambda v: type(v).__name__,
)
def test_to_jsonable(value: object, expected: object) -> None:
    from appshell.runtime.program import to_jsonable

    assert to_jsonable(value) == expected


def test_json_stdout_holds_only_the_json_when_the_app_logs_and_prints(
    app_dir: Callable[[str], Path], sqlite_url: str
) -> None:
    root = app_dir("discovery")  # echoing.py: create_engine(..., echo=True), whose log handler writes to stdout
    code = (
        "metadata.create_all(engine); session.add(Probe(label='x')); commit(); print('chatty'); "
        "sys.stdout.write('more\\n'); where(Probe)"
    )
    result = run(
        ["--app", "echoing", "--json", "-c", "import sys\n" + code], cwd=root, env={"DATABASE_URL": sqlite_url}
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"id": 1, "label": "x"}]
    assert "chatty" in result.stderr and "more" in result.stderr and "INSERT INTO probes" in result.stderr


def test_json_of_typed_columns(app_dir: Callable[[str], Path], db_url: str) -> None:
    root = app_dir("typesapp")
    env = {"DATABASE_URL": db_url}
    setup_types(root, env)
    result = run(
        ["--json", "-c", "r = first(Purchase); {c: getattr(r, c) for c in ('placed_at', 'status', 'price')}"],
        cwd=root,
        env=env,
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["status"] == "paid" and found["price"] == "10.50"
    assert found["placed_at"] in ("2024-05-01T12:00:00+00:00", "2024-05-01T12:00:00")  # SQLite keeps no zone


# --- doctor: migrations -------------------------------------------------------------------


def doctor_rows(root: Path, env: dict[str, str]) -> tuple[int, dict[str, tuple[str, str]]]:
    result = run(["doctor", "--json"], cwd=root, env=env)
    checks = json.loads(result.stdout)["checks"]
    return result.exit_code, {c["check"]: (c["status"], c["detail"]) for c in checks}


def alembic(root: Path, env: dict[str, str], *args: str) -> None:
    exe = Path(sys.executable).with_name("alembic")
    proc = subprocess.run([str(exe), *args], cwd=root, env=clean_environ(env), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_doctor_reports_missing_tables_and_the_alembic_revision(app_dir: Callable[[str], Path], db_url: str) -> None:
    pytest.importorskip("alembic")
    root = app_dir("alembicapp")  # src/ layout, alembic.ini, one revision creating `accounts` only
    env = {"DATABASE_URL": db_url}
    code, rows = doctor_rows(root, env)
    assert code == 5
    assert rows["mapped tables"] == (
        "FAIL",
        "2 of 2 missing from the database: accounts, invoices — "
        "run the migrations (alembic upgrade head) or create them",
    )
    assert rows["migrations"] == (
        "FAIL",
        "the database has no Alembic revision; the head is 0001 — run alembic upgrade "
        "head (or alembic stamp head if the schema is already there)",
    )

    alembic(root, env, "upgrade", "head")
    code, rows = doctor_rows(root, env)
    assert rows["mapped tables"][0] == "FAIL" and rows["mapped tables"][1].startswith(
        "1 of 2 missing from the database: invoices"
    )
    assert rows["migrations"] == ("ok", f"at head 0001 ({root / 'alembic.ini'})")

    (root / "migrations" / "versions" / "0002_invoices.py").write_text(
        textwrap.dedent("""
        import sqlalchemy as sa
        from alembic import op

        revision = "0002"
        down_revision = "0001"

        def upgrade():
            op.create_table("invoices", sa.Column("id", sa.Integer, primary_key=True), \
sa.Column("number", sa.String(20)))
    """)
    )
    code, rows = doctor_rows(root, env)
    assert rows["migrations"] == ("FAIL", "the database is at 0001, the head is 0002 — run alembic upgrade head")

    alembic(root, env, "upgrade", "head")
    code, rows = doctor_rows(root, env)
    assert rows["mapped tables"] == ("ok", "all 2 exist in the database")
    assert rows["migrations"][0] == "ok"


def test_doctor_without_alembic_environment_says_so(library: tuple[Path, dict[str, str]]) -> None:
    root, env = library
    _, rows = doctor_rows(root, env)
    assert rows["mapped tables"] == ("ok", "all 2 exist in the database")
    assert rows["migrations"] == (
        "info",
        "no Alembic environment (alembic.ini) in the working directory or project root",
    )


def test_describe_on_mariadb_shows_each_unique_constraint_once(
    app_dir: Callable[[str], Path], mariadb_url: str
) -> None:
    root = app_dir("typesapp")
    env = {"DATABASE_URL": mariadb_url}
    setup_types(root, env)
    result = run(
        ["-c", "describe(Purchase); print(explain(select(Purchase).where(Purchase.price > 1)))"], cwd=root, env=env
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "│ status      │ ENUM('new','paid') │ no       │" in out  # the database's own type
    rows = [" ".join(line.split()) for line in out.splitlines()]  # cells compared without their padding
    assert out.count("uq_purchases_token") == 1 and "│ uq_purchases_token │ unique │ token │" in rows
    assert "│ ck_purchases_price │ check │ `price` >= 0 │" in rows
    # MySQL's EXPLAIN is a table wider than 80 columns: shown whole, one block a row (psql's expanded display)
    assert "─[ RECORD 1 ]" in out and "select_type   │ SIMPLE" in out and "table         │ purchases" in out


def test_json_in_process_keeps_prints_off_stdout(invoke: Callable[..., Result], shop: Path) -> None:
    result = invoke(["--json", "-c", "print('chatty'); [count(Product), first(Product).price]"], cwd=shop)
    assert (result.exit_code, result.stdout) == (0, '[8, "5.99"]\n')
    assert "chatty" in result.stderr


def test_show_leaves_out_deferred_columns_it_would_load_row_by_row(
    app_dir: Callable[[str], Path], sqlite_url: str
) -> None:
    root = app_dir("typesapp")  # Customer.notes is deferred
    env = {"DATABASE_URL": sqlite_url}
    setup_types(root, env)
    code = textwrap.dedent("""
        from sqlalchemy import event
        session.add_all([Customer(email=f'c{i}@x', notes='long text') for i in range(5)]); commit()
        ran = []
        event.listen(engine, 'before_cursor_execute', lambda *a: ran.append(a[2]))
        show(where(Customer))
        print(len(ran))
    """)
    result = run(["-c", code], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    assert "│ id │ email │ name │" in result.stdout and "notes" not in result.stdout
    assert result.stdout.split()[-1] == "1"  # one SELECT of 21 rows at most; no per-row loads
