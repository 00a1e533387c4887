"""Issue 13 item 7: helpers at production sizes, on a real 300,000-row table (SQLite and PostgreSQL).

Assertions are on what is fetched (the SQL that ran, rows counted) and on memory
(tracemalloc's peak inside the program), never on time.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
from support.databases import pg_schema
from support.harness import run

pytestmark = pytest.mark.in_process  # run() calls main() in this process (tests/support/harness.py)

ROWS = 300_000

MODELS = textwrap.dedent("""
    from decimal import Decimal
    from sqlalchemy import Numeric, String
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

    class Base(DeclarativeBase):
        pass

    class Order(Base):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True)
        status: Mapped[str] = mapped_column(String(20), index=True)
        price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
        note: Mapped[str] = mapped_column(String(100))
""")

# Memory is measured around the one call, with the program's own SQL listener counting statements.
MEASURE = textwrap.dedent("""
    import tracemalloc
    from sqlalchemy import event
    ran = []
    event.listen(engine, 'before_cursor_execute', lambda conn, cur, stmt, *a: ran.append(stmt))
    def measure(thunk):
        ran.clear()
        tracemalloc.start()
        value = thunk()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return value, peak, list(ran)
""")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def big(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, str]]]:
    """An app with an `orders` table of 300,000 rows: every 2nd paid, price = id % 100. Made once
    per module and database: the tests only read it."""
    root = tmp_path_factory.mktemp("bigapp")
    (root / "big").mkdir(parents=True)
    (root / "big" / "__init__.py").write_text("")
    (root / "big" / "models.py").write_text(MODELS)
    (root / "pyproject.toml").write_text('[tool.appshell]\nmodels = ["big.models"]\n')
    with pg_schema() if request.param == "postgresql" else nullcontext(f"sqlite:///{root / 'big.db'}") as db_url:
        env = {"DATABASE_URL": db_url}
        # process=False: a module's fixture is made before the test's in_process mark is read.
        assert run(["-c", "metadata.create_all(engine)"], cwd=root, env=env, process=False).exit_code == 0
        if db_url.startswith("sqlite"):
            conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
            with conn:
                conn.executemany(
                    "insert into orders (id, status, price, note) values (?, ?, ?, ?)",
                    ((i, "paid" if i % 2 == 0 else "new", i % 100, f"order number {i}") for i in range(1, ROWS + 1)),
                )
            conn.close()
        else:
            fill = (
                "sql(\"insert into orders select g, case when g % 2 = 0 then 'paid' else 'new' end, g % 100, "
                f"'order number ' || g from generate_series(1, {ROWS}) g\"); commit()"
            )
            assert run(["-c", fill], cwd=root, env=env, process=False).exit_code == 0
        yield root, env


def program(root: Path, env: dict[str, str], code: str) -> str:
    result = run(["-c", MEASURE + textwrap.dedent(code)], cwd=root, env=env, timeout=300)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_where_shows_20_rows_and_counts_the_rest_in_the_database(big: tuple[Path, dict[str, str]]) -> None:
    root, env = big
    out = program(
        root,
        env,
        """
        text_, peak, sql = measure(lambda: repr(where(Order, status='paid')))
        print(text_)
        print(json.dumps([peak < 2_000_000, len(sql), ['LIMIT' in s.upper() or 'count(' in s.lower() for s in sql]]))
    """.replace("json.dumps", "__import__('json').dumps"),
    )
    lines = out.splitlines()
    assert lines[0] == "Order"
    assert "│  2 │ paid   │  2.00 │ order number 2  │" in lines
    assert lines[-2] == (
        "(20 rows shown of 150000; 149980 more: where(…, limit=N) shows N, "
        "show(…, limit=None) shows all, list(…) fetches all)"
    )
    assert json.loads(lines[-1]) == [True, 2, [True, True]]  # 21 rows fetched, then one count(*)


def test_show_of_a_model_a_select_and_raw_sql_fetch_only_what_they_show(big: tuple[Path, dict[str, str]]) -> None:
    root, env = big
    out = program(
        root,
        env,
        """
        for thunk in (lambda: show(Order, limit=3), lambda: show(select(Order.id, Order.price).where(Order.price > 90)),
                      lambda: show('select id, note from orders order by id', limit=2)):
            _, peak, sql = measure(thunk)
            print('peak ok' if peak < 3_000_000 else f'peak {peak}')
    """,
    )
    assert "(3 rows shown of 300000; 299997 more: show(…, limit=N) shows N, limit=None shows all)" in out
    assert "(20 rows shown of 27000; 26980 more: show(…, limit=N) shows N, limit=None shows all)" in out
    assert "│  2 │ order number 2 │" in out
    assert "(2 rows shown of 300000; 299998 more: show(…, limit=N) shows N, limit=None shows all)" in out
    assert out.count("peak ok") == 3, out


def test_iterating_where_streams_in_batches(big: tuple[Path, dict[str, str]]) -> None:
    root, env = big
    out = program(
        root,
        env,
        """
        def walk():
            n = total = 0
            for order in where(Order, Order.id <= 100_000, status='paid'):
                n += 1
                total += order.price
            return n, total
        (n, total), peak, sql = measure(walk)
        print(n, total, len(sql), peak < 20_000_000, peak)
    """,
    )
    # One SELECT, read in batches (~2 MB); .all() of the same 50,000 rows peaks near 60 MB.
    assert out.split()[:-1] == ["50000", "2450000.00", "1", "True"], out


def test_where_takes_expressions_keywords_order_by_and_limit(big: tuple[Path, dict[str, str]]) -> None:
    root, env = big
    out = program(
        root,
        env,
        """
        r = where(Order, Order.price > 97, Order.id < 1000, status='paid', order_by=Order.id.desc(), limit=3)
        print([o.id for o in r], len(r), count(Order, Order.price > 97, status='paid'))
        print([o.id for o in where(Order, Order.id < 6, order_by='-id')], \
first(Order, Order.price > 50, order_by='-id').id)
        print(where(Order, id=4)[0].note, [o.id for o in where(Order, Order.id < 100)[2:4]])
    """,
    )
    assert out.splitlines() == ["[998, 898, 798] 3 3000", "[5, 4, 3, 2, 1] 299999", "order number 4 [3, 4]"]


def test_where_json_gives_every_row(big: tuple[Path, dict[str, str]]) -> None:
    root, env = big
    result = run(["--json", "-c", "where(Order, Order.id <= 25)"], cwd=root, env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 25 and rows[1] == {"id": 2, "status": "paid", "price": "2.00", "note": "order number 2"}
