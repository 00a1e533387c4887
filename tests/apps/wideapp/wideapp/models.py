"""A real app's wide model: 30 columns, the primary key last (issue 25: tables that fit the terminal)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Index, Integer, String, Table, Text, func
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


runs = Table(
    "runs",
    Base.metadata,
    *(Column(f"name_{i:02d}", Text if i % 3 == 0 else String(80), nullable=True) for i in range(29)),
    Column("id", Integer, primary_key=True),
)
Index("ix_runs_lower_name", func.lower(runs.c.name_01))


class Run(Base):
    __table__ = runs


def seed(session: Any) -> None:
    """Two runs whose every column holds a long value."""
    for n in (1, 2):
        session.add(Run(id=n, **{f"name_{i:02d}": f"run {n} column {i} " + "x" * 40 for i in range(29)}))
    session.commit()
