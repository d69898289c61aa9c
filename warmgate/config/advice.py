"""Advice on a valid config: settings that can work but probably do not do what was meant.

Each function returns sentences, one per finding, without the final full stop; nothing here
refuses a config (the models do that). ``warmgate validate``, ``prime`` and ``run`` print each
as a ``warmgate: warning:`` line (:func:`warmgate.config.loader.load_for_command`).
:func:`config_warnings` gathers them all: a request timeout longer than the window, too few
judged answers for the gate (:func:`evidence_warnings`), TLS that verifies nothing
(:func:`tls_warnings`).

Reads the model only: no I/O.
"""

from __future__ import annotations

import math

from warmgate.config.grpc_target import GrpcTarget
from warmgate.config.http_target import HttpTarget
from warmgate.config.model import Config
from warmgate.config.sql_target import SqlTarget
from warmgate.kernel.units import format_duration


def config_warnings(config: Config) -> list[str]:
    """Sentences about settings that can work but probably do not do what was meant."""
    found = []
    window = config.gate.span
    for index, target in enumerate(config.targets):
        kind = "http" if target.http is not None else "sql" if target.sql is not None else "grpc"
        specs: list[tuple[str, HttpTarget | SqlTarget | GrpcTarget | None]] = [
            (kind, target.http or target.sql or target.grpc)
        ]
        if target.journey is not None:
            steps = enumerate(target.journey.steps)
            specs = [(f"journey.steps[{number}].http", step.http) for number, step in steps]
        for field, spec in specs:
            if spec is not None and spec.timeout > window:
                found.append(
                    f"targets[{index}].{field}.timeout {format_duration(spec.timeout)} is longer "
                    f"than gate.window {format_duration(window)}: while requests hang that long "
                    "the window holds no answers to judge; shorten the timeout or lengthen the "
                    "window"
                )
    return found + evidence_warnings(config) + tls_warnings(config)


def evidence_warnings(config: Config) -> list[str]:
    """A sentence when unjudged steps leave ``load.rate`` too few judged answers for the gate.

    ``load.rate`` counts every request, steps with ``judged: false`` included, while the gate
    counts judged ones only: a rate that fills the window with requests may not fill it with
    evidence.
    """
    rate, window, needed = config.load.rate, config.gate.span, config.gate.min_requests
    weights = [target.weight for target in config.targets]
    judged = [
        1.0
        if target.journey is None
        else sum(step.judged for step in target.journey.steps) / len(target.journey.steps)
        for target in config.targets
    ]
    share = sum(w * j for w, j in zip(weights, judged, strict=True)) / sum(weights)
    if rate is None or share >= 1 or rate * window * share + 1e-9 >= needed:
        return []
    return [
        f"only {share:.0%} of requests are judged (journey steps with judged: false are sent "
        f"but not counted), so load.rate {rate:g} req/s brings at most "
        f"{rate * window * share:g} judged answers in a gate.window of "
        f"{format_duration(window)}, fewer than gate.min_requests {needed}, and the gate "
        f"could never pass; raise load.rate to at least "
        f"{math.ceil(needed / window / share * 100) / 100:g} or lower gate.min_requests"
    ]


def tls_warnings(config: Config) -> list[str]:
    """Sentences about TLS settings that work but weaken or waste something."""
    found = []
    places = [
        (f"targets[{i}].http.tls", t.http.tls) for i, t in enumerate(config.targets) if t.http
    ]
    places += [
        (f"targets[{i}].journey.steps[{n}].http.tls", step.http.tls)
        for i, t in enumerate(config.targets)
        if t.journey
        for n, step in enumerate(t.journey.steps)
    ]
    places += [
        (f"targets[{i}].grpc.tls", t.grpc.tls) for i, t in enumerate(config.targets) if t.grpc
    ]
    places.append(("wait.tls", config.wait.tls))
    for where, tls in places:
        if tls is None or tls.verify:
            continue
        found.append(
            f"{where}.verify is false: warmgate accepts any certificate from that server, "
            "so anyone on the path can answer in its place; trust its CA with ca_file instead"
        )
        if tls.ca_file is not None:
            found.append(f"{where}.ca_file is not used while verify is false")
    return found
