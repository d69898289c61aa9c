"""The house in rooms: the layout docs/architecture.md draws, kept true by tests.

The layers themselves are import-linter's contracts (pyproject.toml, run by ``lint-imports`` in
.ci/run); these tests check what import-linter does not: no import cycle anywhere, function-level
and type-only imports included (grimp), the size of the rooms, and the map itself.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp
import pytest

from tests import import_cycles

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "warmgate"
SUBPACKAGES = sorted(
    path.parent.relative_to(PACKAGE).as_posix() for path in PACKAGE.glob("**/__init__.py")
)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """The import graph of the package, every import counted."""
    return grimp.build_graph("warmgate", cache_dir=None)


def test_no_module_imports_itself_through_others(graph: grimp.ImportGraph) -> None:
    """No cycle among modules, counting imports inside functions and behind TYPE_CHECKING."""
    assert import_cycles.module_cycles(graph) == []


def test_no_subpackage_imports_itself_through_others(graph: grimp.ImportGraph) -> None:
    """No cycle among subpackages, type-only imports included."""
    assert import_cycles.subpackage_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The finder sees a cycle when there is one, and names each member's shortest one."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles.cycles(edges) == [["a", "b", "c", "a"]]


def test_ls_shows_the_layers() -> None:
    """At most 10 modules directly in warmgate/, at most 20 in any subpackage."""
    assert len(list(PACKAGE.glob("*.py"))) <= 10
    for name in SUBPACKAGES:
        modules = list((PACKAGE / name).glob("*.py"))
        assert len(modules) <= 20, name


def test_no_module_is_over_600_lines() -> None:
    """A module past a few hundred lines is asking to be split; none may pass 600."""
    long = {
        str(path.relative_to(REPO)): length
        for path in PACKAGE.glob("**/*.py")
        if (length := len(path.read_text().splitlines())) > 600
    }
    assert long == {}


def test_no_module_is_named_like_the_standard_library() -> None:
    """A module named like a standard library module reads as that module."""
    clashes = sorted(
        str(path.relative_to(REPO))
        for path in PACKAGE.glob("**/*.py")
        if path.stem in sys.stdlib_module_names
    )
    assert clashes == []


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_room_states_its_rule(name: str) -> None:
    """Every subpackage's docstring says what it holds and what it may import ("Rule:")."""
    if name == ".":
        return
    docstring = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
    assert docstring is not None, name
    if "/" not in name:
        assert "Rule:" in docstring, name


def test_the_map_names_every_room() -> None:
    """docs/architecture.md names every subpackage, and README and CONTRIBUTING link to it."""
    text = (REPO / "docs" / "architecture.md").read_text()
    for name in SUBPACKAGES:
        if name != ".":
            assert f"{name}/" in text, name
    for doc in ("README.md", "CONTRIBUTING.md"):
        assert "docs/architecture.md" in (REPO / doc).read_text(), doc
