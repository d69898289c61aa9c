"""`inject` and `uninject` read YAML with the config loader's bounds: an alias bomb, nesting a
thousand deep and a 100,000-digit number are refused with one sentence, at once."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli
from warmgate.config.bounded_yaml import (
    MANIFESTS,
    MAX_MANIFEST_BYTES,
    MAX_MANIFEST_DEPTH,
    MAX_MANIFEST_INT_BITS,
    MAX_NODES,
)
from warmgate.kernel.errors import ConfigError
from warmgate.kube.yaml_stream import parse, read_source

HEAD = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
    "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
    "    spec:\n      containers: [{name: app, image: registry.example.com/web:1}]\n"
)
"""A Deployment inject changes (so every value in it is written out again)."""


def with_extra(value: str) -> str:
    """The Deployment with ``extra: VALUE`` in its pod spec."""
    return f"{HEAD}      extra: {value}\n"


def alias_bomb(levels: int = 9) -> str:
    """Nine references a level: 9**levels strings once expanded, in about 700 bytes."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, levels)]
    return HEAD + "".join(f"      {line}\n" for line in lines)  # keys of the pod spec


def nested(depth: int, *, flow: bool) -> str:
    """The Deployment with a value nested ``depth`` levels below its pod spec."""
    if flow:
        return with_extra("[" * depth + "]" * depth)
    return f"{HEAD}      extra:\n" + "".join(
        "  " * (4 + level) + "- x:\n" for level in range(depth)
    )


HOSTILE = {
    "alias bomb": (alias_bomb(), f"its aliases add more than {MAX_NODES} values once expanded"),
    "1,200 levels, block": (
        nested(1200, flow=False),
        f"nests lists and mappings more than {MAX_MANIFEST_DEPTH} deep",
    ),
    "1,200 levels, flow": (nested(1200, flow=True), "is not valid YAML"),
    "100,000 digits": (
        with_extra("1" * 100_000),
        f"number longer than {MAX_MANIFEST_INT_BITS} bits",
    ),
    "100,000 hex digits": (with_extra("0x" + "f" * 100_000), "has a number longer than 1024 bits"),
    "an explicit int": (with_extra(f'!!int "{"9" * 100_000}"'), "number longer than 1024 bits"),
    "an impossible date": (with_extra("!!timestamp 2001-02-30"), "has a value YAML cannot build"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_manifest_reader_refuses_hostile_yaml_with_one_sentence_at_once(name: str) -> None:
    """Each hostile stream is a ConfigError naming the bound, within a second of CPU time."""
    text, expected = HOSTILE[name]
    start = time.process_time()
    with pytest.raises(ConfigError) as caught:
        parse(text, "deploy.yaml")
    spent = time.process_time() - start
    message = str(caught.value)
    assert message.startswith("deploy.yaml")
    assert expected in message
    assert message.endswith(".")
    assert "\n" not in message
    assert spent < 1.0  # the product's rule; the refusal takes milliseconds


def test_nesting_at_the_bound_is_read_and_one_more_level_is_refused() -> None:
    """A stream nested exactly as deep as the bound is read; one level more is refused."""
    depth_of_extra = MAX_MANIFEST_DEPTH - 4  # the document, spec, template and its spec
    (document,) = parse(nested(depth_of_extra, flow=True))
    extra = document["spec"]["template"]["spec"]["extra"]
    for _ in range(depth_of_extra - 1):
        (extra,) = extra
    assert extra == []
    with pytest.raises(ConfigError, match=f"more than {MAX_MANIFEST_DEPTH} deep"):
        parse(nested(depth_of_extra + 1, flow=True))


def test_numbers_within_the_bound_and_a_few_aliases_are_read_as_kubectl_reads_them() -> None:
    """64-bit numbers stay integers, longer ones floats up to the bound (as Go reads them), and
    a few aliases expand as before; one bit more than the bound is refused."""
    longest = 2**MAX_MANIFEST_INT_BITS - 1
    text = f"[{2**64 - 1}, -{2**63}, 0x{'f' * 16}, {2**64}, {longest}, &n {{a: 1}}, *n]"
    (document,) = parse(with_extra(text))
    extra = document["spec"]["template"]["spec"]["extra"]
    assert extra == [2**64 - 1, -(2**63), 2**64 - 1, float(2**64), str(longest), {"a": 1}, {"a": 1}]
    with pytest.raises(ConfigError, match="longer than 1024 bits"):
        parse(with_extra(str(longest + 1)))


def test_a_stream_over_the_size_bound_is_refused_before_it_is_parsed() -> None:
    """Text longer than the byte bound is refused without a parse, saying how to fix it."""
    with pytest.raises(ConfigError) as caught:
        parse("#" * (MAX_MANIFEST_BYTES + 1), "big.yaml")
    assert str(caught.value) == f"big.yaml is larger than 16 MiB, {MANIFESTS.advice}."


@pytest.mark.slow
@pytest.mark.parametrize("command", ["inject", "uninject"])
@pytest.mark.parametrize("name", ["alias bomb", "1,200 levels, block", "100,000 digits"])
def test_inject_and_uninject_exit_2_on_hostile_yaml(
    name: str, command: str, tmp_path: Path
) -> None:
    """The real CLI exits 2 with one sentence on a hostile file and on standard input, and
    finishes (the old reader ran past a minute and 1.5 GB on the bomb)."""
    text, expected = HOSTILE[name]
    path = tmp_path / "deploy.yaml"
    path.write_text(text)
    for args, stdin in (([str(path)], None), (["-"], text)):
        result = run_cli(command, *args, stdin=stdin, timeout=30)
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        [line] = result.stderr.splitlines()
        assert line.startswith("warmgate: ")
        assert expected in line


@pytest.mark.slow
def test_inject_refuses_standard_input_over_the_size_bound() -> None:
    """More than 16 MiB on standard input is refused with the fix, not read whole."""
    result = run_cli("inject", "-", stdin="#" * (MAX_MANIFEST_BYTES + 1), timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"warmgate: standard input is larger than 16 MiB, {MANIFESTS.advice}.\n"


@pytest.mark.slow
def test_a_workload_nested_to_the_bound_is_injected_and_uninjected() -> None:
    """Nesting at the bound stays clear of Python's recursion limit: inject writes the workload
    out again, and uninject gives back the same object."""
    text = nested(MAX_MANIFEST_DEPTH - 4, flow=True)
    injected = run_cli("inject", "-", stdin=text, timeout=60)
    assert injected.returncode == 0, injected.stderr
    assert "warmgate added" in injected.stderr
    removed = run_cli("uninject", "-", stdin=injected.stdout, timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert parse(removed.stdout) == parse(text)


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    """A FIFO nobody writes to is refused at once, pointing at standard input instead."""
    fifo = tmp_path / "stream.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as caught:
        read_source(str(fifo))
    assert str(caught.value) == (
        f"{fifo} is not a regular file; pipe what it gives into 'warmgate inject -' (or "
        "uninject -) instead."
    )
