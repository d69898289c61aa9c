"""The effective plan in words, for ``warmgate validate``: targets, load, gate, wait, serving.

:func:`describe` is what ``validate`` prints once the config has loaded and its targets have
compiled; :func:`describe_journey` and :func:`describe_tls` put a journey's steps and a TLS
setting into words for it. Secrets are redacted from the whole text.

Reads the model only: no I/O.
"""

from __future__ import annotations

from warmgate.config.grpc_target import GrpcTarget
from warmgate.config.journey import Journey
from warmgate.config.model import AUTO_WINDOW, Config, GateConfig, LoadConfig
from warmgate.config.target import Target
from warmgate.config.tls import TlsConfig
from warmgate.decide.evidence import CONFIDENCE, quantile_needed, success_needed
from warmgate.decide.plateau import SPAN_REQUESTS, group_size, plateau_window
from warmgate.decide.ramp import SIGNIFICANCE
from warmgate.kernel.redaction import Secrets, mask_url
from warmgate.kernel.units import format_duration


def describe(config: Config, secrets: Secrets) -> str:
    """The effective plan in words, for ``warmgate validate``. Secrets are redacted."""
    gate, load = config.gate, config.load
    lines = ["targets:"]
    total_weight = sum(target.weight for target in config.targets)
    for target in config.targets:
        share = target.weight / total_weight
        what = _what(target)
        cap = f", at most {target.rate:g} req/s" if target.rate else ""
        lines.append(f"  - {target.name}: {share:.0%} of requests, {what}{cap}")
        if target.journey is not None:
            lines.extend(f"      {line}" for line in describe_journey(target.journey))
    lines.extend(describe_ramp(load, gate))
    lines.extend(describe_gate(gate, load.concurrency))
    action = "open anyway" if gate.on_timeout == "ready" else "fail closed (exit 1)"
    lines.append(f"deadline: {format_duration(gate.timeout)}, then {action}")
    wait_what = f"GET {config.wait.url} answers 2xx" if config.wait.url else "targets accept TCP"
    if any(target.grpc is not None for target in config.targets):
        wait_what += " (gRPC targets: and their health service says SERVING, if they offer one)"
    if config.wait.tls is not None:
        wait_what += f" ({describe_tls(config.wait.tls)})"
    lines.append(f"wait: until {wait_what}, at most {format_duration(config.wait.timeout)}")
    after = config.after_ready
    keep = f"keep warm at {after.keep_warm_rate:g} req/s" if after.keep_warm_rate else "no trickle"
    rearm = (
        f"re-arm after {format_duration(after.rearm_after)} without answers"
        if after.rearm_after
        else "never re-arm"
    )
    lines.append(f"after ready (run): {keep}, {rearm}")
    lines.append(f"serve: http://{config.server.host}:{config.server.port}")
    lines.append(f"status dir: {config.status_dir or '(none)'}")
    if config.kubernetes.events:
        lines.append(
            "kubernetes events (run): about the pod POD_NAME in POD_NAMESPACE, posted with the "
            "service account or KUBECONFIG"
        )
    return secrets.redact("\n".join(lines))


def describe_ramp(load: LoadConfig, gate: GateConfig) -> list[str]:
    """How the load climbs, in words."""
    pacing = f"paced at {load.rate:g} req/s in total" if load.rate else "closed loop"
    step = format_duration(load.ramp_step)
    return [
        f"load: ramp from 1 to {load.concurrency} in flight, {pacing}, judged every {step}",
        f"  a level is judged once it has answered min(5, 2 x level) requests, or once "
        f"min(level / 2, 2) have answered when its answers take longer than {step}; it doubles "
        f"while success "
        f">= {gate.success_rate:.1%}, and halves only when the failures are too many to be "
        f"within the budget by chance (tail bound < {SIGNIFICANCE:g}), else waits",
    ]


def describe_gate(gate: GateConfig, concurrency: int) -> list[str]:
    """What warm means, in words: the limits, the window, the plateau, the hold."""
    limits = [f"success >= {gate.success_rate:.1%}"]
    auto = []
    needs = [
        f"success >= {gate.success_rate:.1%} needs {success_needed(gate.success_rate)} "
        f"without a failure, more with each"
    ]
    for name in ("p50", "p95", "p99"):
        value = getattr(gate, name)
        if value == "auto":
            limits.append(f"{name} plateau")
            auto.append(name)
        elif value is not None:
            limits.append(f"{name} <= {format_duration(value)}")
            needed = quantile_needed(int(name[1:]) / 100)
            needs.append(f"{name} <= {format_duration(value)} needs {needed}")
    where = f"issued at concurrency {concurrency}"
    if gate.window == "auto":
        counts = [success_needed(gate.success_rate)]
        counts += [quantile_needed(int(n[1:]) / 100) for n in ("p50", "p95", "p99")
                   if getattr(gate, n) not in (None, "auto")]  # fmt: skip
        least = max(gate.min_requests, *counts)
        window = (
            f"over just enough of the most recent requests {where} to judge each threshold "
            f"with {CONFIDENCE:.0%} confidence: at least {least} ({'; '.join(needs)}; "
            f"min_requests {gate.min_requests}), each target as many, never older than "
            f"{format_duration(AUTO_WINDOW)}"
        )
    else:
        window = (
            f"over the last {format_duration(gate.span)} of at least {gate.min_requests} "
            f"requests {where}"
        )
    lines = [f"gate: {', '.join(limits)} {window}, held for {format_duration(gate.hold)}"]
    if auto:
        span = plateau_window(gate.span, gate.hold, gate.window == "auto") / 4
        group = group_size(span, gate.hold)
        tolerance = f"{gate.plateau_tolerance:.0%}"
        lines.append(
            f"  {'/'.join(auto)} plateau: the quantile of spans of {format_duration(span)} "
            f"(at least {SPAN_REQUESTS} requests each), in three groups of {group} spans "
            f"({format_duration(span * group)} each); passes once the latest group is within "
            f"±{tolerance} of the floor a fitted decay heads for and has not moved by more than "
            f"{tolerance} since the group before, nor trends by more over all the spans kept"
        )
    return lines


def _what(target: Target) -> str:
    """What one target sends, in words."""
    what = ""
    if target.http is not None:
        http = target.http
        statuses = ", ".join(map(str, http.expect_status))
        url = http.url if http.url is not None else f"a URL from {http.urls_file}"
        what = f"HTTP {http.method} {url} (expect {statuses}"
        what += f", timeout {format_duration(http.timeout)})"
        if (http.url or "").lower().startswith("https://") or http.tls is not None:
            what += f", {describe_tls(http.tls)}"
    elif target.sql is not None:
        sql = target.sql
        query = " ".join(sql.query.split())
        what = f"SQL {mask_url(sql.url)} read-only: {query}"
        if sql.params:
            what += f" with {', '.join(f'{k}={v}' for k, v in sql.params.items())}"
        expect = f"expect {sql.rows.describe()}, " if sql.rows is not None else ""
        what += f" ({expect}timeout {format_duration(sql.timeout)})"
    elif target.grpc is not None:
        what = describe_grpc(target.grpc)
    elif target.journey is not None:
        what = f"a journey of {len(target.journey.steps)} steps"
    return what


def describe_journey(journey: Journey) -> list[str]:
    """The journey's plan in words, one line each, for ``warmgate validate``."""
    steps = journey.steps
    lines = [
        f"journey of {len(steps)} step{'s' if len(steps) != 1 else ''}: each virtual user runs "
        "them in order, then starts again with an empty cookie jar and no captured values"
    ]
    for number, step in enumerate(steps, start=1):
        http = step.http
        statuses = ", ".join(map(str, http.expect_status))
        text = f"{number}. {step.name}: {http.method} {http.url} (expect {statuses}"
        text += f", timeout {format_duration(http.timeout)})"
        if step.capture:
            text += "; captures " + ", ".join(
                f"{name} from {capture.describe()}" for name, capture in step.capture.items()
            )
        if not step.judged:
            text += "; not judged"
        lines.append(text)
    if journey.secrets:
        sources = [
            f"{name} from {'$' + secret.env if secret.env else secret.file}"
            for name, secret in journey.secrets.items()
        ]
        lines.append(f"secrets (redacted everywhere): {', '.join(sources)}")
    changing = journey.changing_steps()
    if changing:
        listed = ", ".join(f"'{step.name}' ({step.http.method})" for step in changing)
        lines.append(f"CAN CHANGE STATE: {listed}, allowed by allow_methods")
    else:
        lines.append("read-only: every step is GET or HEAD")
    lines.append(
        "a failed step (or capture) fails the rest of its iteration; each judged step left "
        "counts as a failure with its reason"
    )
    return lines


def describe_grpc(grpc: GrpcTarget) -> str:
    """A gRPC target in words, for ``validate``: the call, what succeeds, how it connects."""
    what = f"gRPC {grpc.method} at {grpc.address} (expect {', '.join(map(str, grpc.expect))}"
    what += f", timeout {format_duration(grpc.timeout)})"
    what += ", plaintext" if grpc.plaintext else f", {describe_tls(grpc.tls)}"
    if grpc.confirm_read_only:
        what += ", confirmed read-only"
    source = f"descriptor set {grpc.descriptor_set}" if grpc.descriptor_set else "server reflection"
    return f"{what}; types from {source}"


def describe_tls(settings: TlsConfig | None) -> str:
    """The TLS settings in words, for ``validate``."""
    settings = settings or TlsConfig()
    if not settings.verify:
        parts = ["certificate NOT verified (verify: false)"]
    elif settings.ca_file is not None:
        parts = [f"trusting {settings.ca_file}"]
    else:
        parts = ["trusting the public CAs"]
    if settings.server_name:
        parts.append(f"as {settings.server_name}")
    if settings.client_cert is not None:
        parts.append(f"client certificate {settings.client_cert}")
    return "TLS " + ", ".join(parts)
