"""What do the database's checks cost per statement (issue 21)? Round trips and time, on PostgreSQL.

Sets up the same per-connection safety a session does (appshell.safety.database.Coverage, with a Sandbox and/or
read-only by a session setting: "guarded"), on a table of its own in a schema of its own, and runs four
kinds of statement through SQLAlchemy: a read by primary key (what the ORM sends most), an UPDATE, a
``DO`` block (what the parser cannot read: the sandbox asks the database whether its transaction survived)
and a statement followed by a commit (the sandbox re-reads its identity and the database's counters at a
commit; under read-only the statement is the read, else the UPDATE). For each it counts the
statements that reached the server (psycopg's ``Cursor.execute`` and ``Connection.commit``, SQLAlchemy's own
included; a sandbox's commit is RELEASE + SAVEPOINT, as before issue 21, and now the identity read) and the
median time, beside the same with no appshell at all. The target (issue 21): at most one extra round trip
per statement, and the audit's 2 ms per-statement budget still held.

    .venv/bin/python bench/bench_sandbox.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--n 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import create_engine, text

KINDS = {
    "select by pk": "select id, v from bench_rows where id = 7",
    "update": "update bench_rows set v = v + 1 where id = 7",
    "DO block": "DO $$ begin perform 1; end $$",
}

_executes = 0
_real_execute = psycopg.Cursor.execute
_real_commit = psycopg.Connection.commit


def _counting_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
    global _executes
    _executes += 1
    return _real_execute(self, *args, **kwargs)


def _counting_commit(self: Any) -> Any:
    global _executes
    _executes += 1  # a COMMIT is a round trip too
    return _real_commit(self)


def _mode(name: str, url: str) -> tuple[Any, Callable[[], None]]:
    """An engine with the safety of *name* on it, and what undoes it."""
    from appshell.safety.database import ConnectionPlan, Coverage
    from appshell.safety.engines import session_over, take_over
    from appshell.safety.sandbox import Sandbox

    engine = create_engine(url)
    if name == "no appshell":
        return engine, engine.dispose
    take_over()
    sandbox = Sandbox() if "sandbox" in name else None
    coverage = Coverage(ConnectionPlan(read_only="read-only" in name, application_name="appshell:bench"), sandbox, "bench")
    coverage.install()

    def undo() -> None:
        if sandbox is not None:
            sandbox.freeze()
        engine.dispose()
        coverage.close_all()
        session_over()

    return engine, undo


def measure(name: str, url: str, n: int) -> dict[str, tuple[float, float]]:
    """kind -> (server statements per statement, median ms)."""
    global _executes
    engine, undo = _mode(name, url)
    out: dict[str, tuple[float, float]] = {}
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))  # the connection's setup is not the statements' cost
            kinds = dict(KINDS)
            if "read-only" in name:
                kinds.pop("update")  # refused by the database: not a statement's cost
            commit = kinds["select by pk"] if "read-only" in name else KINDS["update"]
            for kind, sql in [*kinds.items(), ("… + commit", commit)]:
                times: list[float] = []
                _executes = 0
                for _ in range(n):
                    started = time.perf_counter()
                    conn.execute(text(sql))
                    if kind == "… + commit":
                        conn.commit()
                    times.append((time.perf_counter() - started) * 1000)
                out[kind] = (_executes / n, statistics.median(times))
    finally:
        undo()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.url)
    with admin.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
        conn.execute(text(f"create table {schema}.bench_rows (id int primary key, v int)"))
        conn.execute(text(f"insert into {schema}.bench_rows select g, 0 from generate_series(1, 100) g"))
    url = f"{args.url}?options=-csearch_path%3D{schema}"
    psycopg.Cursor.execute = _counting_execute  # type: ignore[method-assign]
    psycopg.Connection.commit = _counting_commit  # type: ignore[method-assign]
    try:
        results = {mode: measure(mode, url, args.n) for mode in ("no appshell", "sandbox", "read-only (guarded)", "sandbox + read-only")}
    finally:
        psycopg.Cursor.execute = _real_execute  # type: ignore[method-assign]
        psycopg.Connection.commit = _real_commit  # type: ignore[method-assign]
        with admin.begin() as conn:
            conn.execute(text(f"drop schema {schema} cascade"))
        admin.dispose()
    base = results["no appshell"]
    print(f"{'mode':<22} {'statement':<14} {'server stmts':>12} {'extra':>6} {'median ms':>10} {'+ms':>7}")
    for mode, kinds in results.items():
        for kind, (per, ms) in kinds.items():
            extra = per - base[kind][0]
            print(f"{mode:<22} {kind:<14} {per:>12.2f} {extra:>6.2f} {ms:>10.3f} {ms - base[kind][1]:>7.3f}")


if __name__ == "__main__":
    main()
