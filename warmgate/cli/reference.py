"""The config reference and JSON Schema, generated from the model so they cannot drift.

``warmgate schema`` prints the JSON Schema; ``warmgate schema --markdown`` prints the reference
that lives in ``docs/config.md``. A test keeps both files in the repository equal to what these
functions produce.
"""

from __future__ import annotations

import json
from typing import Any

from warmgate.config.bounded_yaml import MAX_CONFIG_BYTES, MAX_DEPTH, MAX_INT_BITS, MAX_NODES
from warmgate.config.fields import DURATION_PATTERN
from warmgate.config.loader import MAX_EXPANSION_CHARS
from warmgate.config.model import Config
from warmgate.kernel.units import format_duration
from warmgate.traffic.template_bounds import (
    FIRST_RENDER_SECONDS,
    MAX_RENDERED_CHARS,
    RENDER_SECONDS,
)
from warmgate.traffic.templating import MAX_LINE_FILE_BYTES
from warmgate.traffic.tls import MAX_PEM_BYTES

SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file."""
    document = Config.model_json_schema()
    document["$schema"] = SCHEMA_URL
    document["title"] = "warmgate configuration"
    return document


def json_schema_text() -> str:
    """The JSON Schema as the text of ``docs/warmgate.schema.json``."""
    return json.dumps(json_schema(), indent=2) + "\n"


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(prop: dict[str, Any]) -> str:  # noqa: PLR0911 - one return per schema shape
    """A short human type for a JSON Schema property."""
    if "$ref" in prop:
        return _ref_name(prop["$ref"])
    if "anyOf" in prop:
        kinds = [_type(option) for option in prop["anyOf"] if option.get("type") != "null"]
        return " or ".join(dict.fromkeys(kinds))
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " \\| ".join(f"`{value}`" for value in prop["enum"])
    kind = prop.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(_type({**prop, "type": k}) for k in kind if k != "null")
    if kind == "string" and prop.get("pattern") == DURATION_PATTERN:
        return "duration"
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object":
        return f"map of {_type(prop.get('additionalProperties', {}))}"
    return {"integer": "int", "number": "float", "boolean": "bool"}.get(str(kind), str(kind))


def _default(prop: dict[str, Any], kind: str, required: bool) -> str:
    if required:
        return "required"
    if "default" not in prop:
        return "empty" if kind.startswith(("map", "list")) else "-"
    value = prop["default"]
    if isinstance(value, dict) and "$ref" in prop:
        return "(section)"
    if value is None:
        return "none"
    if kind.startswith("duration") and isinstance(value, int | float):
        return format_duration(float(value))
    return f"`{json.dumps(value)}`"


def _limits() -> list[str]:
    """The bounds on what a config may hold, as a paragraph (from the constants that set them)."""
    return [
        f"Limits, each refused with one sentence (exit 2): a config file is a regular file of at "
        f"most {MAX_CONFIG_BYTES // 1024} KiB, nested at most {MAX_DEPTH} deep, at most "
        f"{MAX_NODES:,} values once its YAML aliases are expanded, with whole numbers of at most "
        f"{MAX_INT_BITS} bits and each key written once per mapping; `${{VAR}}` values add at "
        f"most {MAX_EXPANSION_CHARS // 1024} KiB in all.",
        "Infinity and NaN are refused everywhere; durations are at most a year. A template "
        f"renders at most {MAX_RENDERED_CHARS:,} characters, its first render (at start-up) "
        f"must finish within {FIRST_RENDER_SECONDS:g}s and every later one (per request) within "
        f"{RENDER_SECONDS:g}s (a slower one fails that request with a sentence), and `line()` "
        "reads regular files of at "
        f"most {MAX_LINE_FILE_BYTES // 1024**2} MiB. Header values and the user agent hold no "
        "line breaks. HTTP URLs carry no user or password (send an `Authorization` header "
        "instead); a database URL's password percent-encodes `@` as `%40`. A plan that could "
        "never pass is refused: `gate.hold` not shorter than `gate.timeout`, or rate caps "
        "(`load.rate`, or every target's `rate`) too low to send `gate.min_requests` in a "
        "`gate.window`. A target timeout longer than `gate.window` is a warning.",
        f"TLS files (`ca_file`, `client_cert`, `client_key`) are PEM files of at most "
        f"{MAX_PEM_BYTES // 1024**2} MiB, read once at start-up (paths relative to the working "
        "directory); a key must be unencrypted and belong to its certificate. A certificate "
        "outside its validity, and `verify: false`, are warnings.",
    ]


def markdown_reference() -> str:
    """The config reference in Markdown, one table per section."""
    schema = json_schema()
    definitions = schema.get("$defs", {})
    out = [
        "# Configuration reference",
        "",
        "Generated from the config model by `warmgate schema --markdown`; do not edit by hand.",
        "Durations are strings with a unit: `500ms`, `10s`, `5m`, `1h`. Unknown keys are",
        "rejected. `${VAR}` and `${VAR:-default}` expand from the environment.",
        "",
        *_limits(),
        "",
    ]
    queue: list[tuple[str, str, dict[str, Any]]] = [("", "", schema)]
    # A model used in several places is described once, under each of their names.
    places: dict[str, list[str]] = {"": ["Top level"]}
    sections: list[tuple[str, str, list[str]]] = []
    while queue:
        prefix, section, model = queue.pop(0)
        lines: list[str] = []
        sections.append((prefix, section, lines))
        if prefix and model.get("description"):
            lines += [model["description"].strip().splitlines()[0], ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        required = set(model.get("required", []))
        for name, prop in model.get("properties", {}).items():
            path = f"{prefix}{name}"
            kind = _type(prop)
            values = prop.get("additionalProperties")
            values = values if isinstance(values, dict) else {}
            options = [prop, prop.get("items", {}), values, *prop.get("anyOf", [])]
            refs = [option["$ref"] for option in options if "$ref" in option]
            description = prop.get("description", "")
            if refs:
                child = _ref_name(refs[0])
                inner = f"{path}[]" if prop.get("type") == "array" else path
                inner = f"{inner}.NAME" if "$ref" in values else inner
                if child not in places:
                    places[child] = []
                    queue.append((f"{inner}.", child, definitions[child]))
                places[child].append(f"`{inner}`")
                description = description or definitions[child].get("description", "").strip()
            cell = description.replace("|", "\\|").replace("\n", " ")
            default = _default(prop, kind, name in required)
            lines.append(f"| `{path}` | {kind} | {default} | {cell} |")
        lines.append("")
    for prefix, section, lines in sections:
        shared = len(places[section]) > 1
        # Keys of a shared model are written from its own name: `tls.verify`.
        short = prefix.rstrip(".").rsplit(".", 1)[-1] + "."
        rows = (
            [line.replace(f"| `{prefix}", f"| `{short}", 1) for line in lines] if shared else lines
        )
        out += [f"## {' and '.join(places[section])}", "", *rows]
    return "\n".join(out)
