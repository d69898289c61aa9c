"""The docs work as written: generated references are current, examples and README run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, cli_env, free_port
from warmgate.cli.main import app
from warmgate.cli.reference import json_schema_text, markdown_reference
from warmgate.config.loader import load_config
from warmgate.traffic.targets import compile_targets

README = REPO / "README.md"
SCHEMA_COMMENT = "# yaml-language-server: $schema=../docs/warmgate.schema.json"
EXAMPLE_ENV = {
    "PGPASSWORD": "example-only",
    "DB_PASSWORD": "example-only",
    "DEMO_URL": "http://127.0.0.1:9",
    "DEMO_DB": "demo.db",
    "APP_PASSWORD": "example-only",
    "CATALOG_TOKEN": "example-only",
}


def test_config_reference_is_generated_from_the_model() -> None:
    """docs/config.md is exactly what `warmgate schema --markdown` prints (regenerate if not)."""
    assert (REPO / "docs" / "config.md").read_text() == markdown_reference()


def test_json_schema_file_is_current() -> None:
    """docs/warmgate.schema.json is exactly what `warmgate schema` prints (regenerate if not)."""
    assert (REPO / "docs" / "warmgate.schema.json").read_text() == json_schema_text()


@pytest.mark.parametrize(
    "path",
    [*sorted((REPO / "examples").glob("*.yaml")), REPO / "warmgate" / "demo" / "demo.yaml"],
    ids=lambda p: p.name,
)
def test_example_configs_validate_and_carry_the_schema(path: Path) -> None:
    """Every shipped config names the schema for editors and passes validation."""
    assert path.read_text().splitlines()[0] == SCHEMA_COMMENT
    config, _ = load_config(path, environ=EXAMPLE_ENV)
    assert compile_targets(config, EXAMPLE_ENV)


def runnable_blocks() -> list[str]:
    """The README's shell blocks marked `<!-- runnable -->`."""
    text = README.read_text()
    return re.findall(r"<!-- runnable -->\n```sh\n(.*?)```", text, re.DOTALL)


def test_readme_marks_runnable_blocks() -> None:
    """The README keeps its runnable examples (the demo, a prime, a validate)."""
    blocks = runnable_blocks()
    assert len(blocks) >= 3
    assert any("warmgate demo" in block for block in blocks)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("index", range(len(runnable_blocks())))
def test_readme_block_runs_as_written(index: int, tmp_path: Path) -> None:
    """Each runnable README block exits 0 when run from the repository root, with its port and
    /tmp paths swapped for free ones (other checkouts may run this test at the same time)."""
    block = runnable_blocks()[index]
    block = block.replace("18080", str(free_port())).replace("/tmp/", f"{tmp_path}/")  # noqa: S108 - replaced, not used
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env=cli_env({"WARMGATE_LOG_FORMAT": "json"}),
        check=False,
    )
    assert result.returncode == 0, f"{block}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"


def test_ci_runs_the_readme_commands() -> None:
    """.ci/run installs and tests with the very commands the README gives a newcomer."""
    readme = README.read_text()
    ci = (REPO / ".ci" / "run").read_text()
    install = re.search(
        r"python3 -m venv \.venv && (\.venv/bin/pip install -e '\.\[dev\]')", readme
    )
    assert install is not None
    assert "python3 -m venv .venv" in ci
    assert ".venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'" in ci
    assert "\n.venv/bin/python -m pytest\n" in readme
    assert ci.rstrip().endswith(".venv/bin/python -m pytest")


def test_readme_command_table_lists_every_command() -> None:
    """Each command of the CLI has a row in the README's command table, with its exit codes."""
    table = README.read_text().split("### Commands", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `warmgate (\w+)[^|]*\|[^|]+\|([^|]+)\|$", table, re.MULTILINE)
    commands = {command.name or command.callback.__name__ for command in app.registered_commands}
    assert {name for name, _ in rows} == commands
    assert all(re.search(r"\b[0-2]\b", codes) for _, codes in rows)


def kubectl_jsonpath_commands() -> list[tuple[str, str, str]]:
    """Every documented `kubectl get TYPES ... -o jsonpath=...`: file, resource types, jsonpath."""
    found = []
    for path in sorted([README, *(REPO / "docs").glob("*.md")]):
        text = path.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            get = re.search(r"kubectl (?:-n \S+ )?get (\S+)", line)
            jsonpath = re.search(r"jsonpath=['\"]?(\{[^'\"]*)", line)
            if get and jsonpath:
                found.append((path.name, get.group(1), jsonpath.group(1)))
    return found


def test_kubectl_jsonpath_over_several_types_reads_the_list() -> None:
    """Naming several types (`get a,b NAME`) makes kubectl answer with a List, so a jsonpath
    written for one object prints nothing there: such a command must read `.items`."""
    commands = kubectl_jsonpath_commands()
    assert any("caBundle" in jsonpath for _, _, jsonpath in commands)
    for name, types, jsonpath in commands:
        if "," in types:
            assert ".items" in jsonpath, f"{name}: kubectl get {types} -o jsonpath='{jsonpath}'"
