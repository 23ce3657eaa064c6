"""No circle in leaddb's imports (issue #22): no module reaches itself again through the modules it
imports, counting imports inside functions and typing-only ones, as grimp (lint-imports' reader)
does. The layers contract in pyproject lets siblings joined by ":" import each other; this holds
them to one direction too."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

import grimp

import leaddb

PACKAGE = Path(leaddb.__file__).parent


def strongly_connected(edges: Mapping[str, Collection[str]]) -> list[list[str]]:
    """The circles of a directed graph (node -> the nodes it points to): its strongly connected
    components of more than one node, each sorted (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def enter(node: str) -> tuple[str, Iterator[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return node, iter(sorted(edges.get(node, ())))

    for root in sorted(edges):
        if root in index:
            continue
        path = [enter(root)]
        while path:
            node, successors = path[-1]
            for successor in successors:
                if successor not in index:
                    path.append(enter(successor))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                path.pop()
                if path:
                    parent = path[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        circles.append(sorted(component))
    return circles


def _package_modules() -> set[str]:
    """leaddb's modules as its files name them (``leaddb.uow.orm``; a package by its folder)."""
    modules = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def _describe(graph: grimp.ImportGraph, circle: list[str], edges: Mapping[str, set[str]]) -> str:
    members = set(circle)
    lines = [" <-> ".join(circle)]
    for importer in circle:
        for imported in sorted(edges[importer] & members):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(
                    f"  {importer} -> {imported}, line {detail['line_number']}: "
                    f"{detail['line_contents']}"
                )
    return "\n".join(lines)


def test_the_circle_finder_finds_circles_and_only_them() -> None:
    edges = {
        "a": {"b"},
        "b": {"c", "d"},
        "c": {"a"},  # a -> b -> c -> a
        "d": {"e"},
        "e": {"f"},
        "f": {"e"},  # e <-> f, reached from the other circle
        "g": {"g", "a"},  # a module importing itself is no circle of modules
    }
    assert strongly_connected(edges) == [["e", "f"], ["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    # A long chain, deeper than Python's recursion limit.
    chain = {f"m{i}": {f"m{i + 1}"} for i in range(5_000)}
    assert strongly_connected(chain) == []
    chain["m5000"] = {"m0"}
    assert len(strongly_connected(chain)[0]) == 5_001


def test_leaddb_imports_no_module_in_a_circle() -> None:
    # No cache: nothing is written into the checkout, and the graph is this code's (~0.1 s).
    graph = grimp.build_graph("leaddb", exclude_type_checking_imports=False, cache_dir=None)
    # grimp reads the leaddb these tests import, all of it.
    assert _package_modules() <= graph.modules
    edges = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    circles = strongly_connected(edges)
    assert not circles, "modules that import each other in a circle:\n" + "\n".join(
        _describe(graph, circle, edges) for circle in circles
    )
