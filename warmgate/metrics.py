"""Prometheus metrics, on an injected registry (never the global one).

Metric names are a public contract; labels carry target *names*, never URLs (cardinality and
secrets), and ``outcome`` takes only the bounded values in :data:`warmgate.drivers.OUTCOMES`.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram

from warmgate import __version__
from warmgate.drivers import OUTCOMES
from warmgate.status import STATES, Status
from warmgate.window import Sample

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class Metrics:
    """Every warmgate metric, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry, targets: tuple[str, ...] = ()) -> None:
        self.registry = registry
        self.ready = Gauge("warmgate_ready", "1 while the gate is open, else 0.", registry=registry)
        self.state = Enum(
            "warmgate_state", "The gate's current state.", states=list(STATES), registry=registry
        )
        self.requests = Counter(
            "warmgate_requests",
            "Synthetic requests completed, by target and outcome.",
            ["target", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "warmgate_request_duration_seconds",
            "Latency of synthetic requests from their intended send time.",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.concurrency = Gauge(
            "warmgate_concurrency", "Requests allowed in flight now.", registry=registry
        )
        self.concurrency_target = Gauge(
            "warmgate_concurrency_target",
            "The concurrency the thresholds must hold at.",
            registry=registry,
        )
        self.warmup_seconds = Gauge(
            "warmgate_warmup_seconds",
            "Seconds from start to the gate opening (0 until it opens).",
            registry=registry,
        )
        self.window_requests = Gauge(
            "warmgate_window_requests",
            "Requests in the window issued at the target concurrency.",
            registry=registry,
        )
        self.window_success_ratio = Gauge(
            "warmgate_window_success_ratio",
            "Share of successful requests in the window at the target concurrency.",
            registry=registry,
        )
        self.window_latency = Gauge(
            "warmgate_window_latency_seconds",
            "Latency percentiles (50, 95, 99) in the window at the target concurrency.",
            # Not "quantile": that label is reserved for summaries (promtool rejects it here).
            ["percentile"],
            registry=registry,
        )
        self.opened_on_timeout = Gauge(
            "warmgate_opened_on_timeout",
            "1 when the gate opened because the deadline passed, not because the app was warm.",
            registry=registry,
        )
        self.rearms = Counter(
            "warmgate_rearms",
            "Times the gate closed again because the target stopped answering.",
            registry=registry,
        )
        build = Gauge(
            "warmgate_build_info",
            "Always 1; the labels say which warmgate is running.",
            ["version", "python"],
            registry=registry,
        )
        build.labels(__version__, platform.python_version()).set(1)
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
        self.opened_on_timeout.set(1 if status.outcome == "opened_on_timeout" else 0)
        self.warmup_seconds.set(
            0 if status.ready_at is None else status.ready_at - status.started_at
        )
        window = status.window
        self.window_requests.set(window.get("requests") or 0)
        self.window_success_ratio.set(window.get("success_ratio") or 0)
        for percentile in ("50", "95", "99"):
            value = window.get(f"p{percentile}_ms")
            self.window_latency.labels(percentile).set(0 if value is None else value / 1000)
