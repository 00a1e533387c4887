"""The layers of docs/design.md §1 are the code's: imports only go down, and no module imports itself back.

The layer table is written once, in docs/design.md §1 (the block under ``<!-- layers -->``); this
test reads it, reads every module under src/appshell with :mod:`ast`, and fails naming the edge
when a module imports from a layer above its own (a back arrow) or when imports go round in a
circle. An import inside a function counts (a circle "closed by a lazy import" is a circle); one
under ``if TYPE_CHECKING:`` does not (it never runs).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
MARKER = "<!-- layers -->"


# --- the graph helpers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    name: str
    modules: tuple[str, ...]  # dotted prefixes: a module is in the layer of its longest matching prefix
    only: tuple[str, ...] | None = None  # the layers below it may use, where it may not use all of them


def parse_layers(text: str) -> list[Layer]:
    """The layer table under MARKER, top layer first: ``name  module…  [only: layer…]``, one per line."""
    after = text.split(MARKER, 1)[1]
    block = after.split("```", 2)[1]
    layers = []
    for line in block.splitlines()[1:]:  # the first line is the fence's info string
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        only = None
        if "only:" in words:
            at = words.index("only:")
            words, only = words[:at], tuple(words[at + 1 :])
        layers.append(Layer(words[0], tuple(words[1:]), only))
    return layers


def module_files(src: Path) -> dict[str, tuple[Path, bool]]:
    """Every module under *src* (the folder holding the top package): dotted name → (file, is a package)."""
    found = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, package)
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at module level, in functions and classes; not under TYPE_CHECKING."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)  # the else branch runs
        else:
            stack.extend(ast.iter_child_nodes(node))


def import_graph(modules: Mapping[str, tuple[Path, bool]], top: str) -> dict[str, set[str]]:
    """module → the modules of the *top* package it imports (``from p import m`` of a submodule is an edge to it)."""

    def known(name: str) -> str | None:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in modules else None

    graph: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        edges = graph.setdefault(name, set())
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                targets = [
                    f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module for alias in node.names
                ]
            for target in targets:
                if target == top or target.startswith(top + "."):
                    found = known(target)
                    if found is not None and found != name:
                        edges.add(found)
    return graph


def layer_of(module: str, layers: list[Layer]) -> Layer | None:
    best: tuple[int, Layer] | None = None
    for layer in layers:
        for prefix in layer.modules:
            if module == prefix or module.startswith(prefix + ".") and "." in prefix:
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), layer)
    return best[1] if best else None


def back_arrows(graph: Mapping[str, set[str]], layers: list[Layer]) -> list[str]:
    """Edges from a layer to one above it (or to one outside its ``only:``), as 'a → b (low → high)'."""
    rank = {layer.name: len(layers) - i for i, layer in enumerate(layers)}  # the top layer ranks highest
    wrong = []
    for source, targets in sorted(graph.items()):
        here = layer_of(source, layers)
        for target in sorted(targets):
            there = layer_of(target, layers)
            if here is None or there is None or here is there:
                continue
            if rank[there.name] > rank[here.name]:
                wrong.append(f"{source} → {target} ({here.name} imports {there.name}, a layer above it)")
            elif here.only is not None and there.name not in here.only:
                wrong.append(f"{source} → {target} ({here.name} may use only {', '.join(here.only)})")
    return wrong


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected group of modules (Tarjan), each as a path that ends where it starts."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle(group, graph) for group in groups]


def _circle(group: list[str], graph: Mapping[str, set[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph.get(node, ())):
            if target == start:
                return [*paths[node], start]
            if target in members and target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    return group  # not reached: a strongly connected group has a circle through every member


# --- the real tree ----------------------------------------------------------------------------

SRC = ROOT / "src"
LAYERS = parse_layers(DESIGN.read_text(encoding="utf-8"))
MODULES = module_files(SRC)
GRAPH = import_graph(MODULES, "appshell")


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if layer_of(m, LAYERS) is None] == [], "add it to the layer table in docs/design.md §1"


def test_no_back_arrows() -> None:
    assert back_arrows(GRAPH, LAYERS) == []


def test_no_circles() -> None:
    assert [" → ".join(c) for c in cycles(GRAPH)] == []


def test_every_folder_says_what_it_owns() -> None:
    """A package's docstring is its one line in docs/design.md §1."""
    design = DESIGN.read_text(encoding="utf-8")
    for name, (path, package) in MODULES.items():
        if package and name != "appshell":
            assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), (
                f"{path}: a docstring saying what the folder owns"
            )
            folder = name.rsplit(".", 1)[1] + "/"
            assert f"`{folder}`" in design, f"docs/design.md §1 does not list {folder}"


def test_every_module_is_listed_in_the_design() -> None:
    design = DESIGN.read_text(encoding="utf-8").split("## 2.", 1)[0]
    missing = []
    for name, (path, package) in MODULES.items():
        if package or name.startswith("appshell.recorder"):  # recorder/ is listed as a folder: its modules are its own
            continue
        if f"`{path.stem}`" not in design:
            missing.append(name)
    assert missing == [], "docs/design.md §1 lists every module with its job"


LONG = 350  # lines; a longer module says why at its top, in one "# Over 350 lines: why." line


def test_a_long_module_says_why() -> None:
    unexplained = []
    for name, (path, _) in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        top = (
            lines[: ast.parse(text).body[1].lineno] if len(lines) > LONG else []
        )  # the docstring and the line after it
        if len(lines) > LONG and not any(line.startswith(f"# Over {LONG} lines") for line in top):
            unexplained.append(f"{name} ({len(lines)} lines)")
    assert unexplained == []


def test_no_module_takes_another_ones_private_names() -> None:
    """A name another module needs is public there: ``from appshell.x import _y`` is a coupling to its insides."""
    taken = []
    for name, (path, _) in MODULES.items():
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("appshell")):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                taken.extend(f"{name}: from {node.module} import {p}" for p in private)
    assert taken == []


# --- the helpers, on a tiny tree ------------------------------------------------------------

TREE = {
    "pkg/__init__.py": "",
    "pkg/low/__init__.py": '"""low"""',
    "pkg/low/a.py": "from pkg.low import b\n",
    "pkg/low/b.py": "import os\n",
    "pkg/high/__init__.py": '"""high"""',
    "pkg/high/c.py": (
        "from ..low import a\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high import d\n"
    ),
    "pkg/high/d.py": "def f():\n    from pkg.high.c import x\n",
}
TABLE = "x\n<!-- layers -->\n```text\nhigh  pkg.high\nlow   pkg.low pkg  only: low\n```\n"


def _tree(tmp_path: Path, changes: dict[str, str]) -> dict[str, set[str]]:
    for rel, text in {**TREE, **changes}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(module_files(tmp_path), "pkg")


def test_parse_layers() -> None:
    assert parse_layers(TABLE) == [Layer("high", ("pkg.high",)), Layer("low", ("pkg.low", "pkg"), ("low",))]


@pytest.mark.parametrize(
    ("changes", "edges"),
    [
        (
            {},
            {"pkg.low.a": {"pkg.low.b"}, "pkg.high.c": {"pkg.low.a"}, "pkg.high.d": {"pkg.high.c"}},
        ),  # relative, lazy; TYPE_CHECKING left out
        ({"pkg/low/b.py": "import pkg.high.d as d\n"}, {"pkg.low.b": {"pkg.high.d"}}),  # import a.b.c as x
        ({"pkg/low/b.py": "from pkg import high\n"}, {"pkg.low.b": {"pkg.high"}}),  # a subpackage by from-import
        (
            {"pkg/low/b.py": "from pkg.low.a import nothing_here\n"},
            {"pkg.low.b": {"pkg.low.a"}},
        ),  # a name, not a module
        (
            {"pkg/low/b.py": "import sqlalchemy\nfrom pkg import low\n"},
            {"pkg.low.b": {"pkg.low"}},
        ),  # outside packages ignored
    ],
)
def test_import_graph(tmp_path: Path, changes: dict[str, str], edges: dict[str, set[str]]) -> None:
    graph = _tree(tmp_path, changes)
    assert {k: v for k, v in graph.items() if k in edges} == edges


@pytest.mark.parametrize(
    ("changes", "arrows", "circles"),
    [
        ({}, [], []),
        (
            {"pkg/low/b.py": "def f():\n    import pkg.high.d\n"},  # a lazy back arrow, which closes a circle too
            ["pkg.low.b → pkg.high.d (low imports high, a layer above it)"],
            ["pkg.high.c → pkg.low.a → pkg.low.b → pkg.high.d → pkg.high.c"],
        ),
        (
            {"pkg/low/b.py": "from pkg.low import a\n"},
            [],
            ["pkg.low.a → pkg.low.b → pkg.low.a"],
        ),  # a circle inside one layer
        (
            {
                "pkg/low/b.py": "if TYPE_CHECKING:\n    from pkg.high import c\nelse:\n    import pkg.high.d\n"
            },  # else runs
            ["pkg.low.b → pkg.high.d (low imports high, a layer above it)"],
            ["pkg.high.c → pkg.low.a → pkg.low.b → pkg.high.d → pkg.high.c"],
        ),
    ],
)
def test_back_arrows_and_circles(
    tmp_path: Path, changes: dict[str, str], arrows: list[str], circles: list[str]
) -> None:
    graph = _tree(tmp_path, changes)
    layers = parse_layers(TABLE)
    assert back_arrows(graph, layers) == arrows
    assert [" → ".join(c) for c in cycles(graph)] == circles


def test_only_limits_the_layers_below(tmp_path: Path) -> None:
    table = "<!-- layers -->\n```text\nhigh  pkg.high\nmid   pkg.low.b  only: base\nlow   pkg.low\nbase  pkg\n```\n"
    graph = _tree(tmp_path, {"pkg/low/b.py": "from pkg.low import a\n", "pkg/low/a.py": ""})
    assert back_arrows(graph, parse_layers(table)) == ["pkg.low.b → pkg.low.a (mid may use only base)"]
