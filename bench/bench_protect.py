"""What does masking protected data cost? (issue 24: the ratio to unmasked ≤ 1.2)

10,000 customers in an in-memory SQLite database, two of their columns protected. Times, unmasked
and masked, in alternating rounds: ``where(Customer)`` as it is shown (the first 20 rows, the rest
counted), and the table of all 10,000 objects (``show(…, limit=None)``'s work). Prints the best of
each and the ratio.

    .venv/bin/python bench/bench_protect.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

ROWS = 10_000


def best(run: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    os.environ["COLUMNS"] = "200"

    from sqlalchemy import Integer, String, create_engine, select
    from sqlalchemy.orm import DeclarativeBase, Session, mapped_column

    from appshell.console import protect
    from appshell.console.rows import tabulate
    from appshell.console.results import Results

    class Base(DeclarativeBase):
        pass

    class Customer(Base):
        __tablename__ = "customers"
        id = mapped_column(Integer, primary_key=True)
        email = mapped_column(String(200))
        name = mapped_column(String(200))
        country = mapped_column(String(2))

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    protection = protect.Protection(protect.Rules(True, ("customers.email", "customers.name")), lambda: [Customer.__table__])
    with Session(engine) as session:
        session.add_all([Customer(id=i, email=f"customer{i}@example.com", name=f"Customer {i}", country="SE") for i in range(ROWS)])
        session.commit()
        everything = list(session.scalars(select(Customer)))
        cases: dict[str, Callable[[], Any]] = {
            "where(Customer), 20 of 10,000 shown": lambda: Results(session, select(Customer).order_by(Customer.id), "", limited=False).render(),
            "a table of all 10,000": lambda: tabulate(everything),
        }
        for label, case in cases.items():
            plain = masked = float("inf")
            for _ in range(3):  # alternate, so that a busy moment hits both
                protect.deactivate()
                plain = min(plain, best(case, rounds))
                protect.activate(protection)
                masked = min(masked, best(case, rounds))
            protect.deactivate()
            print(f"{label}: unmasked {plain * 1000:.2f} ms, masked {masked * 1000:.2f} ms, ratio {masked / plain:.2f} (target ≤ 1.20)")


if __name__ == "__main__":
    main()
