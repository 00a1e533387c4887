"""Tables that fit the terminal (issue 25 item 1): render.table's widths, wrapping and expanded display."""

from __future__ import annotations

import pytest

from appshell.console.render import _fit, table
from appshell.console.rows import tabulate

FIT = [
    # natural widths, headers, room, expected widths (None: cannot fit, shown expanded)
    ([2, 10, 30], ["id", "name", "description"], 60, [2, 10, 30]),  # fits: untouched
    ([2, 10, 60], ["id", "name", "description"], 50, [2, 10, 38]),  # the widest gives way first
    ([40, 40], ["a", "b"], 50, [25, 25]),  # two wide columns share the room
    ([2, 3, 40], ["id", "x", "y"], 20, [2, 3, 15]),  # short columns keep their width
    ([20] * 30, [f"c{i}" for i in range(30)], 150, None),  # 30 columns of ≥ 6 cannot fit 150: expanded
    ([20, 20], ["possible_keys", "select_type"], 20, None),  # a header's word is never cut: expanded
    ([20, 20], ["started (UTC)", "who"], 20, [10, 10]),  # a header may wrap at its spaces ("started" stays whole)
]


@pytest.mark.parametrize("natural,headers,room,expected", FIT)
def test_fit(natural: list[int], headers: list[str], room: int, expected: list[int] | None) -> None:
    widths = _fit(natural, headers, room)
    assert widths == expected
    if widths is not None:
        assert sum(widths) <= room


ROWS = [[1, "Ann", "likes long walks on the beach and very long descriptions of them"], [2, None, "short"]]


@pytest.mark.parametrize("width", [30, 40, 80, 160])
@pytest.mark.parametrize("wrap", [True, False])
def test_no_line_is_wider_than_the_terminal(width: int, wrap: bool) -> None:
    out = table(["id", "name", "description"], ROWS, "Customer", width=width, wrap=wrap)
    assert all(len(line) <= width for line in out.splitlines()), out
    assert out.endswith("(2 rows)")


def test_cut_cells_end_with_an_ellipsis_and_wrapped_ones_lose_nothing() -> None:
    assert table(["id", "name", "description"], ROWS, width=40, wrap=False).splitlines() == [
        "┌────┬──────┬──────────────────────────┐",
        "│ id │ name │ description              │",
        "├────┼──────┼──────────────────────────┤",
        "│  1 │ Ann  │ likes long walks on the… │",
        "│  2 │ NULL │ short                    │",
        "└────┴──────┴──────────────────────────┘",
        "(2 rows)",
    ]
    assert table(["id", "name", "description"], ROWS, width=40, max_cell=200).splitlines()[3:7] == [
        "│  1 │ Ann  │ likes long walks on the  │",
        "│    │      │ beach and very long      │",
        "│    │      │ descriptions of them     │",
        "│  2 │ NULL │ short                    │",
    ]


def test_expanded_display_one_block_per_record() -> None:
    out = table(["id", "name", "description"], ROWS, "Customer", width=80, expanded=True)
    assert out.splitlines() == [
        "Customer",
        "─[ RECORD 1 ]" + "─" * 67,
        "id          │ 1",
        "name        │ Ann",
        "description │ likes long walks on the beach and very long descriptions of them",
        "─[ RECORD 2 ]" + "─" * 67,
        "id          │ 2",
        "name        │ NULL",
        "description │ short",
        "(2 rows)",
    ]


def test_expanded_automatically_where_a_row_cannot_fit() -> None:
    headers = [f"name_{i:02d}" for i in range(29)] + ["id"]
    out = table(headers, [[f"value {i}" for i in range(29)] + [7]], "Run", width=160, wrap=False)
    assert "─[ RECORD 1 ]" in out and "id      │ 7" in out
    assert all(len(line) <= 160 for line in out.splitlines())
    never = table(headers, [[f"value {i}" for i in range(29)] + [7]], width=160, expanded=False, wrap=False)
    assert never.startswith("┌")  # expanded=False: a table, however narrow its columns


def test_width_comes_from_COLUMNS_at_print_time(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [["x" * 100]]
    monkeypatch.setenv("COLUMNS", "50")
    assert max(len(line) for line in table(["text"], rows, wrap=False).splitlines()) == 50
    monkeypatch.setenv("COLUMNS", "70")
    assert (
        max(len(line) for line in table(["text"], rows, wrap=False).splitlines()) == 64
    )  # the cell is 60 wide at most


def test_columns_are_picked_and_an_unknown_one_names_the_choices() -> None:
    items = [{"id": 1, "name": "Ann", "email": "a@x"}]
    out = tabulate(items, columns=["email", "id"])
    assert out.splitlines()[1].split() == ["│", "email", "│", "id", "│"]
    with pytest.raises(ValueError, match="no column 'mail' here — the columns are: id, name, email"):
        tabulate(items, columns=["mail"])
