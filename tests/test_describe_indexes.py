"""describe() shows each index as the database defines it (issue 25 item 5): expression indexes,
partial WHERE, DESC, COLLATE, INCLUDE — on SQLite, PostgreSQL and MariaDB, with no warning leaking."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.harness import run

pytestmark = pytest.mark.in_process

INDEXES = {
    "sqlite": (
        [
            "create index ix_partial on runs (name_02) where name_03 is not null",
            "create index ix_desc on runs (name_04 desc, name_05 collate nocase)",
        ],
        [
            "│ ix_runs_lower_name │ index │ (lower(name_01))",
            "│ ix_partial │ index │ (name_02) where name_03 is not null",
            "│ ix_desc │ index │ (name_04 desc, name_05 collate nocase)",
        ],
    ),
    "postgresql": (
        [
            "create index ix_partial on runs (name_02) where name_03 is not null",
            'create index ix_desc on runs (name_04 desc, name_05 collate "C")',
            "create index ix_mixed on runs (name_06, lower(name_07)) include (name_08)",
        ],
        [
            "│ ix_runs_lower_name │ index │ (lower((name_01)::text))",
            "│ ix_partial │ index │ (name_02) WHERE (name_03 IS NOT NULL)",
            '│ ix_desc │ index │ (name_04 DESC, name_05 COLLATE "C")',
            "│ ix_mixed │ index │ (name_06, lower((name_07)::text)) INCLUDE (name_08)",
        ],
    ),
    "mariadb": (
        ["create index ix_desc on runs (name_04 desc, name_05(10))"],
        ["│ ix_desc │ index │ (`name_04` DESC, `name_05`(10))"],
    ),
}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_describe_shows_each_index_as_the_database_defines_it(
    kind: str, app_dir: Callable[[str], Path], url_of: Callable[[str], str]
) -> None:
    url = url_of(kind)
    root = app_dir("wideapp")
    statements, expected = INDEXES[kind]
    if kind == "mariadb":  # MariaDB has no expression indexes: the model's is left out of its table
        program = (
            "from sqlalchemy import Index\nfor i in list(Run.__table__.indexes): Run.__table__.indexes.discard(i)\n"
        )
    else:
        program = ""
    program += "metadata.create_all(engine)\n" + "".join(f"sql({s!r})\n" for s in statements) + "describe(Run)\n"
    result = run(["-q", "-c", program], cwd=root, env={"DATABASE_URL": url, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.stderr == "", result.stderr  # no SAWarning about skipped expression indexes
    shown = [" ".join(line.split()) for line in result.stdout.splitlines()]
    for row in expected:
        assert any(line.startswith(" ".join(row.split())) for line in shown), (row, result.stdout)
