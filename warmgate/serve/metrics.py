"""Prometheus metrics, on an injected registry (never the global one).

Metric names are a public contract; labels carry target *names*, never URLs (cardinality and
secrets), and ``outcome`` takes only the bounded values in :data:`warmgate.traffic.driver.OUTCOMES`.
:class:`Metrics` is what a primer counts while it works. :class:`StatusCollector` exports the
gauges a status answers — from a status directory for ``serve``, from the supervisor's memory
for ``run`` — with the same names and help; ``run`` adds the primer's request counters and
histograms (:meth:`Metrics.traffic_text`), which the primer hands up with every status.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from warmgate import __version__
from warmgate.decide.gate import OPENED_ON_TIMEOUT
from warmgate.decide.outcomes import OUTCOMES
from warmgate.decide.window import Sample
from warmgate.kernel.errors import StatusDirError
from warmgate.serve.status import STATES, Status, is_ready, read_status

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
PERCENTILES = ("50", "95", "99")

HELP = {
    "warmgate_ready": "1 while the gate is open, else 0.",
    "warmgate_state": "The gate's current state.",
    "warmgate_requests": "Synthetic requests completed, by target and outcome.",
    "warmgate_request_duration_seconds": (
        "Latency of synthetic requests from their intended send time."
    ),
    "warmgate_concurrency": "Requests allowed in flight now.",
    "warmgate_concurrency_target": "The concurrency the thresholds must hold at.",
    "warmgate_warmup_seconds": (
        "Seconds from the start of this warm-up (or re-arm) to the gate opening (0 until then)."
    ),
    "warmgate_window_requests": "Requests in the window issued at the target concurrency.",
    "warmgate_window_success_ratio": (
        "Share of successful requests in the window at the target concurrency."
    ),
    "warmgate_window_latency_seconds": (
        "Latency percentiles (50, 95, 99) in the window at the target concurrency."
    ),
    "warmgate_opened_on_timeout": (
        "1 when the gate opened because the deadline passed, not because the app was warm."
    ),
    "warmgate_rearms": "Times the gate closed again because the target stopped answering.",
    "warmgate_build_info": "Always 1; the labels say which warmgate is running.",
}
"""The help text of every metric, shared by ``run`` and ``serve``."""

BUILD_LABELS = {"version": __version__, "python": platform.python_version()}


class Metrics:
    """Every warmgate metric, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry, targets: tuple[str, ...] = ()) -> None:
        self.registry = registry

        def gauge(name: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, HELP[name], labels, registry=registry)

        self.ready = gauge("warmgate_ready")
        self.state = Enum(
            "warmgate_state", HELP["warmgate_state"], states=list(STATES), registry=registry
        )
        self.requests = Counter(
            "warmgate_requests",
            HELP["warmgate_requests"],
            ["target", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "warmgate_request_duration_seconds",
            HELP["warmgate_request_duration_seconds"],
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.concurrency = gauge("warmgate_concurrency")
        self.concurrency_target = gauge("warmgate_concurrency_target")
        self.warmup_seconds = gauge("warmgate_warmup_seconds")
        self.window_requests = gauge("warmgate_window_requests")
        self.window_success_ratio = gauge("warmgate_window_success_ratio")
        # Not "quantile": that label is reserved for summaries (promtool rejects it here).
        self.window_latency = gauge("warmgate_window_latency_seconds", ("percentile",))
        self.opened_on_timeout = gauge("warmgate_opened_on_timeout")
        self.rearms = Counter("warmgate_rearms", HELP["warmgate_rearms"], registry=registry)
        build = gauge("warmgate_build_info", tuple(BUILD_LABELS))
        build.labels(**BUILD_LABELS).set(1)
        self.state.state(STATES[0])
        for target in targets:
            self.duration.labels(target)
            for outcome in OUTCOMES:
                self.requests.labels(target, outcome)

    def observe(self, sample: Sample) -> None:
        """Count one completed request."""
        self.requests.labels(sample.target, sample.outcome).inc()
        self.duration.labels(sample.target).observe(sample.latency)

    def publish(self, status: Status) -> None:
        """Mirror a status snapshot into the gauges."""
        self.ready.set(1 if status.ready else 0)
        self.state.state(status.state)
        self.concurrency.set(status.level)
        self.concurrency_target.set(status.target_level)
        self.opened_on_timeout.set(1 if status.outcome == OPENED_ON_TIMEOUT else 0)
        self.warmup_seconds.set(status.warmup_seconds() or 0)
        window = status.window
        self.window_requests.set(window.get("requests") or 0)
        self.window_success_ratio.set(window.get("success_ratio") or 0)
        for percentile in PERCENTILES:
            value = window.get(f"p{percentile}_ms")
            self.window_latency.labels(percentile).set(0 if value is None else value / 1000)

    def traffic_text(self) -> bytes:
        """The request counters and latency histogram in the text format, for the supervisor."""
        return generate_latest(self.registry.restricted_registry(TRAFFIC_SAMPLES))


TRAFFIC_SAMPLES = [
    f"{family}{suffix}"
    for family, suffixes in (
        ("warmgate_requests", ("_total", "_created")),
        ("warmgate_request_duration_seconds", ("_bucket", "_count", "_sum", "_created")),
    )
    for suffix in suffixes
]
"""The samples a primer hands up to the ``run`` supervisor; the rest it derives itself."""


class StatusCollector(Collector):
    """The gauges a status answers, read from ``source`` at every scrape.

    ``source`` returns ``(ready, status JSON)``. A missing or damaged status reads as "not
    ready, nothing measured yet": a scrape never fails because of it.
    """

    def __init__(self, source: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        """The gauges of :class:`Metrics` that a status holds, the re-arms and the build info."""
        ready, status = self.source()
        yield _gauge("warmgate_ready", 1 if ready else 0)
        state = StateSetMetricFamily("warmgate_state", HELP["warmgate_state"])
        state.add_metric([], {name: name == status.get("state", STATES[0]) for name in STATES})
        yield state
        concurrency = _mapping(status.get("concurrency"))
        yield _gauge("warmgate_concurrency", _number(concurrency.get("level")))
        yield _gauge("warmgate_concurrency_target", _number(concurrency.get("target")))
        yield _gauge("warmgate_warmup_seconds", _number(status.get("warmup_seconds")))
        window = _mapping(status.get("window"))
        yield _gauge("warmgate_window_requests", _number(window.get("requests")))
        yield _gauge("warmgate_window_success_ratio", _number(window.get("success_ratio")))
        latency = GaugeMetricFamily(
            "warmgate_window_latency_seconds",
            HELP["warmgate_window_latency_seconds"],
            labels=["percentile"],
        )
        for percentile in PERCENTILES:
            latency.add_metric([percentile], _number(window.get(f"p{percentile}_ms")) / 1000)
        yield latency
        opened = status.get("outcome") == OPENED_ON_TIMEOUT
        yield _gauge("warmgate_opened_on_timeout", 1 if opened else 0)
        rearms = CounterMetricFamily("warmgate_rearms", HELP["warmgate_rearms"])
        rearms.add_metric([], _number(status.get("rearms")))
        yield rearms
        build = GaugeMetricFamily(
            "warmgate_build_info", HELP["warmgate_build_info"], labels=list(BUILD_LABELS)
        )
        build.add_metric(list(BUILD_LABELS.values()), 1)
        yield build


def directory_source(directory: Path) -> Callable[[], tuple[bool, dict[str, Any]]]:
    """A :class:`StatusCollector` source reading ``directory`` (``serve``)."""

    def source() -> tuple[bool, dict[str, Any]]:
        try:
            status = read_status(directory) or {}
        except StatusDirError:
            status = {}
        return is_ready(directory, status), status

    return source


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, HELP[name], value=value)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float:
    """A number from ``status.json``; anything else (``null``, a damaged value) reads as 0."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0


class FileStatusCollector(StatusCollector):
    """``serve`` mode: the status gauges read from a status directory at every scrape."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory_source(directory))
        self.directory = directory
