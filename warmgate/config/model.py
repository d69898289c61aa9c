"""The configuration model: one frozen pydantic model, built once from YAML, env and flags.

:class:`Config` holds the targets (:mod:`warmgate.config.target`) and one section per concern:
how hard to push (``load``), what warm means (``gate``), how to wait for the app (``wait``),
what ``run`` does once warm (``after_ready``), the endpoint (``server``) and how synthetic
requests are marked (``traffic``). Every section is a frozen model that rejects unknown keys;
validators say how to fix the input, and the checks across sections (a rate that could never
fill the window) are :class:`Config`'s own. Loading (YAML, ``${VAR}``, flags, error messages) is
:mod:`warmgate.config.loader`; the settings that work but probably do not do what was meant are
:mod:`warmgate.config.advice`.

Config models import pydantic, ``kernel/`` and the pure ``decide/`` only: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from warmgate import __version__
from warmgate.config.fields import (
    CONTROL_CHARACTERS,
    MAX_RATE,
    Duration,
    LatencyOrAuto,
    StrictModel,
    checked_http_url,
    header_values,
    positive,
)
from warmgate.config.target import Target
from warmgate.config.tls import TlsConfig, needs_https
from warmgate.kernel.units import format_duration

AUTO_WINDOW = 60.0
"""Seconds ``gate.window: auto`` may grow to at most."""
MIN_REARM_AFTER = 0.1
"""Seconds: anything shorter would re-arm on one slow answer."""


class LoadConfig(StrictModel):
    """How hard to push."""

    concurrency: int = Field(8, ge=1, le=4096, description="Target (and maximum) in flight.")
    rate: float | None = Field(
        None,
        gt=0,
        le=MAX_RATE,
        description="Total requests per second (open model); unset: closed loop.",
    )
    ramp_step: Duration = Field(1.0, description="How often the ramp judges and moves the level.")
    jitter: Duration = Field(
        0.0, description="Random delay before priming, so replicas do not stampede together."
    )

    @field_validator("ramp_step")
    @classmethod
    def _ramp_step(cls, ramp_step: float) -> float:
        return positive(ramp_step, "1s")


class GateConfig(StrictModel):
    """What warm means."""

    success_rate: float = Field(0.99, gt=0, le=1, description="Minimum share of successes.")
    p50: LatencyOrAuto | None = Field(
        None, description="Maximum median latency, or 'auto': warm when it reaches its floor."
    )
    p95: LatencyOrAuto | None = Field(
        None, description="Maximum p95 latency, or 'auto': warm when it reaches its floor."
    )
    p99: LatencyOrAuto | None = Field(
        None, description="Maximum p99 latency, or 'auto': warm when it reaches its floor."
    )
    plateau_tolerance: float = Field(
        0.10,
        gt=0,
        lt=1,
        description="For 'auto' quantiles: how near their floor, and how still, is flat.",
    )
    min_requests: int = Field(
        20, ge=1, le=1_000_000_000, description="Minimum requests at target concurrency."
    )
    window: LatencyOrAuto = Field(
        10.0,
        description=(
            "Sliding window the thresholds apply to, or 'auto': just enough of the most recent "
            "requests to judge each threshold with 95% confidence (more requests for the "
            "success rate with each failure among them; at most 60s)."
        ),
    )
    hold: Duration = Field(5.0, ge=0, description="How long thresholds must keep passing.")
    timeout: Duration = Field(300.0, gt=0, description="Deadline for warming.")
    on_timeout: Literal["ready", "fail"] = Field(
        "ready", description="At the deadline: open anyway (ready) or fail closed (fail)."
    )

    @field_validator("window")
    @classmethod
    def _window(cls, window: float | str) -> float | str:
        return window if window == "auto" else positive(float(window), "10s")

    @property
    def span(self) -> float:
        """Seconds the window covers at most: the window, or with ``auto`` :data:`AUTO_WINDOW`."""
        return AUTO_WINDOW if self.window == "auto" else float(self.window)


class WaitConfig(StrictModel):
    """How to wait for the target to come up before priming."""

    url: str | None = Field(
        None, description="A URL that answers 2xx when the app is up; default: TCP connect."
    )
    timeout: Duration = Field(300.0, gt=0, description="Deadline for the app to come up.")
    initial_backoff: Duration = Field(0.1, gt=0, description="First retry delay.")
    max_backoff: Duration = Field(2.0, gt=0, description="Cap of the exponential backoff.")
    tls: TlsConfig | None = Field(
        None,
        description=(
            "TLS settings of an https wait.url; unset: those of the HTTP target with the same "
            "host and port."
        ),
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else checked_http_url(url)

    @field_validator("max_backoff")
    @classmethod
    def _backoff_order(cls, max_backoff: float, info: ValidationInfo) -> float:
        initial = info.data.get("initial_backoff")  # absent when it failed validation itself
        if initial is not None and max_backoff < initial:
            raise ValueError(
                f"{format_duration(max_backoff)} is shorter than wait.initial_backoff "
                f"{format_duration(initial)}; raise max_backoff or lower initial_backoff"
            )
        return max_backoff

    @model_validator(mode="after")
    def _tls_for_https(self) -> WaitConfig:
        needs_https(self.url, self.tls)
        return self


class AfterReadyConfig(StrictModel):
    """What ``run`` does once warm."""

    keep_warm_rate: float = Field(
        0.0,
        ge=0,
        le=MAX_RATE,
        description="Requests per second to keep sending once ready; 0: none.",
    )
    rearm_after: Duration = Field(
        5.0,
        ge=0,
        description=(
            "Once ready, a refused connection re-arms at once (the app restarted); a target "
            "unreachable (no route, unknown host) this long re-arms too (at least 100ms). "
            "Slow answers, errors and connect timeouts never re-arm. 0: never re-arm."
        ),
    )
    retry_after: Duration = Field(
        60.0, ge=0, description="After failing closed, prime again after this long; 0: never."
    )

    @field_validator("rearm_after")
    @classmethod
    def _rearm_after(cls, rearm_after: float) -> float:
        if 0 < rearm_after < MIN_REARM_AFTER:
            raise ValueError(
                f"{format_duration(rearm_after)} is too short to tell a restart from one slow "
                "answer; write 0s (never re-arm) or at least 100ms"
            )
        return rearm_after


class ServerConfig(StrictModel):
    """The readiness and metrics endpoint."""

    host: str = Field("0.0.0.0", description="Address to listen on.")  # noqa: S104 - a sidecar serves the kubelet
    port: int = Field(8099, ge=0, le=65535, description="Port; 0 picks a free one.")


class TrafficConfig(StrictModel):
    """How synthetic requests are marked, so the app can keep them out of business metrics."""

    user_agent: str = Field(f"warmgate/{__version__}", description="User-Agent header.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Headers added to every request. X-Warmgate: 1 is always sent as well; set "
            "X-Warmgate here to give it another value."
        ),
    )

    @field_validator("user_agent")
    @classmethod
    def _user_agent(cls, user_agent: str) -> str:
        if CONTROL_CHARACTERS.search(user_agent):
            raise ValueError(
                "contains a line break or control character, which would end the header; remove it"
            )
        return user_agent

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return header_values(headers, "header")


class KubernetesConfig(StrictModel):
    """What warmgate tells Kubernetes itself."""

    events: bool = Field(
        False,
        description=(
            "Post Kubernetes Events (events.k8s.io/v1) about this pod: warming, warm, opened on "
            "timeout, failed closed, re-armed, resumed. Needs POD_NAME and POD_NAMESPACE (and "
            "POD_UID) from the downward API and a Role allowing create and patch on "
            "events.k8s.io events; without them warmgate says so once and works as without."
        ),
    )


class Config(StrictModel):
    """The whole warm-up plan."""

    targets: list[Target] = Field(description="What to warm.", min_length=1)
    load: LoadConfig = LoadConfig()
    gate: GateConfig = GateConfig()
    wait: WaitConfig = WaitConfig()
    after_ready: AfterReadyConfig = AfterReadyConfig()
    server: ServerConfig = ServerConfig()
    traffic: TrafficConfig = TrafficConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    status_dir: Path | None = Field(
        None, description="Directory for status.json and the ready marker (an emptyDir)."
    )
    log_format: Literal["auto", "json", "human"] = Field(
        "auto", description="auto: human on a terminal, JSON lines otherwise."
    )
    template_files: bool = Field(
        True,
        description="Whether templates may read files with line(); the admission webhook "
        "writes false into configs it builds from pod annotations.",
    )

    @model_validator(mode="before")
    @classmethod
    def _name_targets(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("targets"), list):
            targets = []
            for index, target in enumerate(data["targets"], start=1):
                unnamed = isinstance(target, Mapping) and target.get("name") is None
                targets.append({"name": f"target-{index}", **target} if unnamed else target)
            data = {**data, "targets": targets}
        return data

    @field_validator("status_dir", mode="before")
    @classmethod
    def _status_dir(cls, status_dir: object) -> object:
        if isinstance(status_dir, str) and not status_dir.strip():
            raise ValueError("is empty; write a directory such as /warmgate, or leave it out")
        return status_dir

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[Target]) -> list[Target]:
        seen: set[str] = set()
        for target in targets:
            if target.name in seen:
                raise ValueError(f"two targets are named '{target.name}'; give each its own name")
            seen.add(target.name)
        return targets

    @model_validator(mode="after")
    def _rate_fills_the_window(self) -> Config:
        rate, window, needed = self.load.rate, self.gate.span, self.gate.min_requests
        # A tiny tolerance, so that 0.1 req/s over 200s counts as the 20 requests it is.
        if rate is None or rate * window + 1e-9 >= needed:
            return self
        most = math.floor(rate * window + 1e-9)
        fixes = [
            f"raise load.rate to at least {math.ceil(needed / window * 100) / 100:g}",
            f"lengthen gate.window to at least {format_duration(math.ceil(needed / rate))}",
        ]
        if most >= 1:
            fixes.append(f"lower gate.min_requests to {most}")
        raise ValueError(
            f"load.rate {rate:g} req/s sends at most {rate * window:g} requests in a "
            f"gate.window of {format_duration(window)}, fewer than gate.min_requests "
            f"{needed}, so the gate could never pass; {', '.join(fixes[:-1])} or {fixes[-1]}"
        )

    @model_validator(mode="after")
    def _hold_before_the_deadline(self) -> Config:
        gate = self.gate
        if gate.hold >= gate.timeout:
            raise ValueError(
                f"gate.hold {format_duration(gate.hold)} is not shorter than gate.timeout "
                f"{format_duration(gate.timeout)}, so the gate could never pass before the "
                "deadline; shorten gate.hold or lengthen gate.timeout"
            )
        return self

    @model_validator(mode="after")
    def _caps_fill_the_window(self) -> Config:
        from warmgate.decide.gate import target_minimums

        window, needed = self.gate.span, self.gate.min_requests
        caps = [target.rate for target in self.targets]
        total = sum(cap for cap in caps if cap is not None)
        if all(cap is not None for cap in caps) and total * window + 1e-9 < needed:
            raise ValueError(
                f"the targets' rate caps add up to {total:g} req/s, at most {total * window:g} "
                f"requests in a gate.window of {format_duration(window)}, fewer than "
                f"gate.min_requests {needed}, so the gate could never pass; raise the caps, "
                f"lengthen gate.window to at least {format_duration(math.ceil(needed / total))} "
                f"or lower gate.min_requests to {max(1, math.floor(total * window + 1e-9))}"
            )
        # Each target must also bring its weight's share of the evidence (as the gate asks).
        shares = target_minimums(needed, [target.weight for target in self.targets])
        for target, share in zip(self.targets, shares, strict=True):
            if target.rate is not None and target.rate * window + 1e-9 < share:
                raise ValueError(
                    f"targets '{target.name}' rate {target.rate:g} req/s sends at most "
                    f"{target.rate * window:g} requests in a gate.window of "
                    f"{format_duration(window)}, fewer than the {share} its weight's share of "
                    f"gate.min_requests asks for, so its check could never pass; raise its rate "
                    f"to at least {math.ceil(share / window * 100) / 100:g} or lengthen "
                    f"gate.window to at least {format_duration(math.ceil(share / target.rate))}"
                )
        return self
