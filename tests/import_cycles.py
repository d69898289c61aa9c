"""List the import cycles in the warmgate package, among modules and among subpackages.

Every import counts: those at the top of a module, those inside functions and those behind
``if TYPE_CHECKING:`` (grimp reads them all from the source). A cycle is a strongly connected
group of the import graph; for each group this prints one shortest cycle through it, with the
line of every import on the way, so the place to cut is in front of you.

    .venv/bin/python tests/import_cycles.py            # modules and subpackages
    .venv/bin/python tests/import_cycles.py --level packages

Subpackages are the first level below ``warmgate`` (``warmgate.config``, ``warmgate.cli`` ...);
a module directly in ``warmgate`` is its own group. Exits 1 when there is any cycle.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping

import grimp

PACKAGE = "warmgate"

Edges = Mapping[str, set[str]]


def module_edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports."""
    return {
        module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules
    }


def subpackage_of(module: str) -> str:
    """``warmgate.config.model`` -> ``warmgate.config``; ``warmgate.__main__`` stays itself."""
    return ".".join(module.split(".")[:2])


def subpackage_edges(modules: Edges) -> dict[str, set[str]]:
    """The module graph folded onto subpackages, without the imports inside one subpackage."""
    folded: dict[str, set[str]] = defaultdict(set)
    for importer, imported in modules.items():
        folded[subpackage_of(importer)]
        for target in imported:
            if subpackage_of(target) != subpackage_of(importer):
                folded[subpackage_of(importer)].add(subpackage_of(target))
    return dict(folded)


def strongly_connected(edges: Edges) -> list[list[str]]:
    """The groups of more than one node that reach each other (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
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
    return sorted(groups)


def shortest_cycle(edges: Edges, group: Iterable[str], start: str | None = None) -> list[str]:
    """A shortest cycle inside a group (through ``start`` if given), its first node repeated."""
    members = set(group)
    best: list[str] = []
    for origin in [start] if start else sorted(members):
        previous: dict[str, str] = {}
        queue = deque([origin])
        found = False
        while queue and not found:
            node = queue.popleft()
            for child in sorted(edges.get(node, ())):
                if child not in members:
                    continue
                if child == origin:
                    path = [node]
                    while path[-1] != origin:
                        path.append(previous[path[-1]])
                    cycle = [*reversed(path), origin]
                    if not best or len(cycle) < len(best):
                        best = cycle
                    found = True
                    break
                if child not in previous:
                    previous[child] = node
                    queue.append(child)
    return best


def cycles(edges: Edges) -> list[list[str]]:
    """For each group that imports itself, a shortest cycle through each member (no repeats).

    A group of three modules may hold several cycles; one through each member shows them all
    in the cases met so far, and each one listed is a real cycle to break.
    """
    found: list[list[str]] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    for group in strongly_connected(edges):
        for member in group:
            others = set(group)
            cycle = shortest_cycle(edges, others, start=member)
            key = frozenset(itertools.pairwise(cycle))
            if key not in seen:
                seen.add(key)
                found.append(cycle)
    return found


def module_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The cycles among modules."""
    return cycles(module_edges(graph))


def subpackage_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The cycles among subpackages."""
    return cycles(subpackage_edges(module_edges(graph)))


def module_step(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    """Where ``importer`` imports ``imported``: ``line 12: from x import y``."""
    details = graph.get_import_details(importer=importer, imported=imported)
    return "; ".join(
        f"line {detail['line_number']}: {detail['line_contents']}" for detail in details
    )


def subpackage_step(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    """The module imports that make subpackage ``importer`` depend on ``imported``."""
    lines = [
        f"{module} -> {target} ({module_step(graph, module, target)})"
        for module in sorted(graph.modules)
        if subpackage_of(module) == importer
        for target in sorted(graph.find_modules_directly_imported_by(module))
        if subpackage_of(target) == imported
    ]
    return "\n        ".join(lines)


def describe(
    graph: grimp.ImportGraph, cycle: list[str], step: Callable[[grimp.ImportGraph, str, str], str]
) -> str:
    """A cycle in words, one import a line."""
    lines = [" -> ".join(cycle)]
    for importer, imported in itertools.pairwise(cycle):
        lines.append(f"    {importer} -> {imported}\n        {step(graph, importer, imported)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the cycles at the levels asked for; 1 if there is any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", choices=("modules", "packages", "both"), default="both")
    args = parser.parse_args(argv)
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    found = 0
    if args.level in ("modules", "both"):
        cycles = module_cycles(graph)
        found += len(cycles)
        print(f"module cycles: {len(cycles)}")
        for cycle in cycles:
            print(describe(graph, cycle, module_step))
    if args.level in ("packages", "both"):
        cycles = subpackage_cycles(graph)
        found += len(cycles)
        print(f"subpackage cycles: {len(cycles)}")
        for cycle in cycles:
            print(describe(graph, cycle, subpackage_step))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
