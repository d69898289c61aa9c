"""Go's reading of YAML, through kubectl, without a cluster.

``kubectl annotate --local -f FILE -o json KEY=VALUE`` decodes a file the way the API server
does (sigs.k8s.io/yaml, then the typed object metadata) and prints JSON; ``--local`` needs no
cluster or API discovery. One call decodes a whole stream, so tests batch many documents into
one file. Without kubectl the tests that need it skip, unless ``REQUIRE_TOOLS=1`` (set by CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from warmgate.kube.yaml_stream import parse

MARK = "warmgate.test/decoded"
"""The annotation kubectl is asked to add; taken out again before comparing."""


def kubectl() -> str:
    """The path of kubectl; skip (or fail under REQUIRE_TOOLS=1) when it is missing."""
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("REQUIRE_TOOLS") == "1":
            pytest.fail("kubectl is not installed, and REQUIRE_TOOLS=1 makes it mandatory")
        pytest.skip("kubectl is not installed")
    return path


def go_decode(text: str) -> list[Any]:
    """The objects of a YAML stream as kubectl decodes them (``List`` items flattened)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "stream.yaml"
        path.write_text(text, encoding="utf-8")
        decoded = subprocess.run(
            [kubectl(), "annotate", "--local", "-f", str(path), "-o", "json", f"{MARK}=x"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert decoded.returncode == 0, f"kubectl cannot decode the stream: {decoded.stderr}"
    objects: list[Any] = []
    # Numbers compare as floats: Go writes a float such as 1.9e16 as 19000000000000010.
    decoder = json.JSONDecoder(parse_int=float)
    out, index = decoded.stdout, 0
    while index < len(out):
        if out[index].isspace():
            index += 1
            continue
        obj, index = decoder.raw_decode(out, index)
        objects.append(_unmark(obj))
    return objects


def python_view(text: str) -> list[Any]:
    """The same stream as warmgate reads it, in JSON terms (``List`` items flattened)."""
    return _flatten(parse(text))


def pyyaml_view(text: str) -> list[Any]:
    """The stream as plain PyYAML (YAML 1.1) reads it, for readers in Python."""
    return _flatten(list(yaml.safe_load_all(text)))


def _flatten(documents: list[Any]) -> list[Any]:
    objects: list[Any] = []
    for document in documents:
        if document is None:
            continue
        if str(document.get("kind", "")).endswith("List") and "items" in document:
            objects.extend(document["items"])
        else:
            objects.append(document)
    return [json.loads(json.dumps(obj, default=str), parse_int=float) for obj in objects]


def assert_go_reads_as_python(text: str, where: str) -> list[Any]:
    """kubectl's reading of ``text`` equals warmgate's; returns it."""
    go = go_decode(text)
    assert go == python_view(text), f"{where}: kubectl reads it differently from warmgate"
    return go


def _unmark(obj: dict[str, Any]) -> dict[str, Any]:
    annotations = obj["metadata"]["annotations"]
    del annotations[MARK]
    if not annotations:
        del obj["metadata"]["annotations"]
    if not obj["metadata"]:  # kubectl made one to hold the annotation
        del obj["metadata"]
    return obj
