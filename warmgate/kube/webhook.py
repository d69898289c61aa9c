"""``warmgate webhook``: the admission webhook server: it adds warmgate to Pods, and checks
warmgate's ConfigMaps.

Theory of operation: the standard library's threaded HTTP server of :mod:`warmgate.serve.server`,
over TLS, with one POST route per webhook entry of the ``MutatingWebhookConfiguration``
(k8s/webhook/): :data:`ANNOTATION_PATH` for pods that opt in with their own annotation, and
:data:`NAMESPACE_PATH` for pods of namespaces labelled ``warmgate.io/inject: enabled``. An
AdmissionReview carries no namespace labels and the webhook reads no API objects (so it needs
no RBAC): the API server matches the namespace label with the entry's ``namespaceSelector`` and
the path says which entry matched. Each review is decided by :mod:`warmgate.kube.admission` (pure);
this module only times it, counts it and answers. :data:`VALIDATE_PATH` answers the
``ValidatingWebhookConfiguration``'s reviews of ConfigMaps (:mod:`warmgate.kube.config_review`:
refused with the sentence ``warmgate validate`` prints when the config is wrong), counted in
``warmgate_webhook_config_reviews_total{result}``. Besides the routes, ``/livez``, ``/readyz``
and ``/metrics`` of the endpoint, whose limits (:mod:`warmgate.serve.server`) keep any one client
from holding its connections or the memory for bodies; what they drop is counted in
``warmgate_webhook_connections_dropped_total`` (:class:`DroppedConnections`).

Certificates: :class:`CertificateFiles` watches the files' inode, size and modification time
on every new connection and builds a new :class:`ssl.SSLContext` when they change
(cert-manager renews the Secret, the kubelet swaps the mounted files); connections already open
keep theirs. A pair that does not load (the key written before the certificate) keeps the
previous context, with one log line, until the files change again.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from warmgate.kernel.errors import ServeError
from warmgate.kube.admission import MalformedReviewError, Outcome, admit, parse_review, response
from warmgate.kube.config_review import review_config_map, validation_response
from warmgate.kube.inject import InjectOptions
from warmgate.kube.pod_config import CONFIG_MAP, INLINE, RESOURCES
from warmgate.serve.client_io import Reporter, Trouble
from warmgate.serve.server import Endpoint, listen, serve_until_signalled

ANNOTATION_PATH = "/mutate"
"""Reviews from the entry that sends pods annotated ``warmgate.io/inject: enabled``."""
NAMESPACE_PATH = "/mutate/namespace"
"""Reviews from the entry that sends every pod of a namespace labelled to opt in."""
PATHS = {ANNOTATION_PATH: False, NAMESPACE_PATH: True}
"""Route -> whether the pod's namespace is opted in."""
VALIDATE_PATH = "/validate"
"""Reviews of ConfigMaps from the ValidatingWebhookConfiguration."""
CONFIG_RESULTS = ("allowed", "denied", "warned", "ignored")
"""The values of ``warmgate_webhook_config_reviews_total``'s ``result`` label."""
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
INVALID_LABELS = frozenset({CONFIG_MAP, *INLINE, *RESOURCES})
"""The values the invalid-annotation counter's ``annotation`` label may take."""


class CertificateFiles:
    """The TLS context for the next connection, rebuilt when the certificate files change."""

    def __init__(self, cert: Path, key: Path, report: Reporter, counter: Counter) -> None:
        self.cert = cert
        self.key = key
        self.report = report
        self.counter = counter
        self._lock = threading.Lock()
        self._seen = self._stamp()
        try:
            self._context = self._load()
        except (OSError, ValueError) as exc:
            raise ServeError(
                f"--tls-cert/--tls-key: cannot load {cert} and {key} ({_reason(exc)}); give a "
                "PEM certificate chain and its private key."
            ) from None
        self.loaded_at = time.time()
        counter.labels(result="loaded").inc()

    def context(self) -> ssl.SSLContext:
        """The current context; reloads first if the files changed since the last look."""
        stamp = self._stamp()
        if stamp == self._seen:
            return self._context
        with self._lock:
            if stamp != self._seen:
                self._seen = stamp
                try:
                    self._context = self._load()
                    self.loaded_at = time.time()
                    self.counter.labels(result="loaded").inc()
                    self.report(f"loaded the new certificate from {self.cert}")
                except (OSError, ValueError) as exc:
                    self.counter.labels(result="failed").inc()
                    self.report(
                        f"cannot load the changed certificate ({_reason(exc)}); serving the "
                        "previous one until the files change again"
                    )
        return self._context

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in (self.cert, self.key):
            try:
                info = path.stat()
            except OSError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((info.st_ino, info.st_size, info.st_mtime_ns))
        return tuple(stamps)

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context


class DroppedConnections(Collector):
    """``warmgate_webhook_connections_dropped_total{reason}``, from the endpoint's counts."""

    def __init__(self, counts: Callable[[], dict[Trouble, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        """One sample per kind of :class:`~warmgate.serve.client_io.Trouble`, zeros included."""
        family = CounterMetricFamily(
            "warmgate_webhook_connections_dropped",
            "Connections ended before their request was served, by reason: deadline (too "
            "slow), evicted (made room for another), refused (no room), busy (503), malformed "
            "(not HTTP or TLS), failed (an error of the webhook).",
            labels=["reason"],
        )
        for trouble, count in self.counts().items():
            family.add_metric([trouble.value], count)
        yield family


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class Webhook:
    """Answers AdmissionReviews on the POST routes and counts them."""

    def __init__(
        self, options: InjectOptions, registry: CollectorRegistry, report: Reporter
    ) -> None:
        self.options = options
        self.report = report
        self.admissions = Counter(
            "warmgate_webhook_admissions", "AdmissionReviews answered, by outcome.",
            ["outcome"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "warmgate_webhook_admission_duration_seconds",
            "Time from a review's body read to its answer.",
            buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.invalid = Counter(
            "warmgate_webhook_invalid_annotations",
            "Pods admitted without warmgate because an annotation was invalid, by annotation.",
            ["annotation"], registry=registry,
        )  # fmt: skip
        self.malformed = Counter(
            "warmgate_webhook_malformed_reviews",
            "Bodies that were not an AdmissionReview (answered 400).", registry=registry,
        )  # fmt: skip
        self.config_reviews = Counter(
            "warmgate_webhook_config_reviews",
            "ConfigMap reviews answered, by result: allowed, denied (the config is wrong), "
            "warned (admitted; its ${VAR} could not be checked here), ignored (not warmgate's).",
            ["result"], registry=registry,
        )  # fmt: skip
        for outcome in Outcome:
            self.admissions.labels(outcome=outcome.value)
        for result in CONFIG_RESULTS:
            self.config_reviews.labels(result=result)

    def post(self, path: str, body: bytes) -> tuple[int, bytes, str]:
        """The answer to one POST: an AdmissionReview, or 404/400."""
        started = time.perf_counter()
        if path not in PATHS and path != VALIDATE_PATH:
            routes = ", ".join([*PATHS, VALIDATE_PATH])
            return 404, f"not found: POST reviews to {routes}\n".encode(), "text/plain"
        try:
            review = parse_review(body)
        except MalformedReviewError as exc:
            self.malformed.inc()
            return 400, f"{exc}\n".encode(), "text/plain"
        if path == VALIDATE_PATH:
            return self._validate(review.uid, review.request)
        decision = admit(review, self.options, namespace_opted_in=PATHS[path])
        answer = json.dumps(response(review.uid, decision)).encode()
        self.admissions.labels(outcome=decision.outcome.value).inc()
        if decision.invalid_annotation:
            label = decision.invalid_annotation
            self.invalid.labels(annotation=label if label in INVALID_LABELS else "other").inc()
        self.latency.observe(time.perf_counter() - started)
        if decision.outcome is not Outcome.SKIPPED or decision.warnings:
            detail = "; ".join(decision.warnings) or f"{decision.pod}: warmgate added"
            self.report(f"{decision.outcome.value} {review.uid}: {detail}")
        return 200, answer, "application/json"

    def _validate(self, uid: str, request: Any) -> tuple[int, bytes, str]:
        verdict = review_config_map(request, self.options.config_map)
        result = (
            "denied" if not verdict.allowed
            else "ignored" if not verdict.config_map
            else "warned" if verdict.warnings
            else "allowed"
        )  # fmt: skip
        self.config_reviews.labels(result=result).inc()
        if result in ("denied", "warned"):
            said = verdict.message or "; ".join(verdict.warnings)
            self.report(f"config {result} {uid}: {verdict.config_map}: {' '.join(said.split())}")
        return 200, json.dumps(validation_response(uid, verdict)).encode(), "application/json"


def serve_webhook(
    options: InjectOptions,
    *,
    tls_cert: Path,
    tls_key: Path,
    host: str,
    port: int,
    log_format: str = "auto",
    drain: float = 0.0,
) -> None:
    """``webhook``: answer admission reviews until SIGTERM/SIGINT, then for ``drain`` seconds."""
    from warmgate.kernel.redaction import Secrets
    from warmgate.serve.logs import Log

    log = Log.for_format(log_format, Secrets())
    _prepare()
    registry = CollectorRegistry()
    loads = Counter(
        "warmgate_webhook_certificate_loads", "Certificate loads, by result (loaded or failed).",
        ["result"], registry=registry,
    )  # fmt: skip
    certificates = CertificateFiles(
        tls_cert, tls_key, lambda line: log.event("certificate", line), loads
    )
    webhook = Webhook(options, registry, lambda line: log.event("admission", line))
    listener = listen(host, port)
    endpoint = Endpoint(
        lambda: _readiness(certificates, endpoint.draining),
        lambda: generate_latest(registry),
        report=lambda line: log.event("endpoint", line),
        post=webhook.post,
        tls=certificates.context,
    )
    registry.register(DroppedConnections(endpoint.troubles))
    bound = endpoint.start(listener)
    log.event("listening", f"answering admission reviews on port {bound}", host=host, port=bound)
    serve_until_signalled(endpoint, log, drain)


def _prepare() -> None:
    """Import what deciding a review needs now, so the first review is as quick as the rest."""
    import jinja2.sandbox
    import jsonpatch

    from warmgate.config import flags, loader

    del jsonpatch, jinja2, flags, loader


def _readiness(
    certificates: CertificateFiles, draining: threading.Event
) -> tuple[bool, str, dict[str, Any]]:
    loaded = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(certificates.loaded_at))
    status = {"certificate": str(certificates.cert), "loaded_at": loaded, "pid": os.getpid()}
    if draining.is_set():
        return False, "stopping: still answering reviews until the drain ends", status
    return True, f"ready: answering admission reviews; certificate loaded at {loaded}", status
