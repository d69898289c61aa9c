"""`warmgate webhook` as the API server meets it: a real subprocess over TLS on port 0.

Certificates come from trustme. The patched pods are checked the way the cluster would: strict
Kubernetes schemas (1.29, 1.33 and the newest the validator knows: tests/test_k8s_manifests.py's
``VERSIONS``) and Go's decoding through kubectl.
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import os
import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import WarmgateProcess, poll, run_cli
from tests.kubectl import assert_go_reads_as_python
from tests.pss import violations
from tests.reviews import deployment_pod, patched, request, with_sidecars
from tests.slow_clients import SlowClients
from tests.test_k8s_manifests import validate
from tests.test_prometheus import promtool_check
from warmgate.kube.inject import INLINE_CONFIG
from warmgate.kube.yaml_stream import dump

ENABLED = {"warmgate.io/inject": "enabled"}
INLINE = ENABLED | {
    "warmgate.io/url": "http://127.0.0.1:8080/items/{{ randint(1, 100000) }}",
    "warmgate.io/concurrency": "16",
    "warmgate.io/p95": "200ms",
}


def write_pair(cert: trustme.LeafCert, directory: Path, cert_name: str = "tls.crt") -> None:
    """Write a certificate chain and its key as cert-manager's Secret mount does: whole files."""
    for name, data in (
        (cert_name, b"".join(blob.bytes() for blob in cert.cert_chain_pems)),
        ("tls.key", cert.private_key_pem.bytes()),
    ):
        temporary = directory / f".{name}.new"
        temporary.write_bytes(data)
        os.replace(temporary, directory / name)


class Client:
    """Posts reviews to the webhook over TLS, trusting the given CAs."""

    def __init__(self, port: int, *cas: trustme.CA) -> None:
        self.port = port
        self.context = ssl.create_default_context()
        for ca in cas:
            ca.configure_trust(self.context)

    def connection(self) -> http.client.HTTPSConnection:
        """A new connection (its own TLS handshake)."""
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=10)

    def post(
        self, path: str, body: bytes, connection: http.client.HTTPSConnection | None = None
    ) -> tuple[int, bytes]:
        """``(status, body)`` of one POST."""
        own = connection is None
        connection = connection or self.connection()
        try:
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            if own:
                connection.close()

    def review(self, review: dict[str, Any], path: str = "/mutate") -> dict[str, Any]:
        """The AdmissionReview answered for ``review``."""
        status, body = self.post(path, json.dumps(review).encode())
        assert status == 200, body
        answer: dict[str, Any] = json.loads(body)
        assert answer["response"]["uid"] == review["request"]["uid"]
        assert answer["response"]["allowed"] is True
        return answer

    def get(self, path: str) -> tuple[int, str]:
        """``(status, text)`` of a GET."""
        connection = self.connection()
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            return answer.status, answer.read().decode()
        finally:
            connection.close()

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on /metrics (0 when absent)."""
        _, text = self.get("/metrics")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0


@contextlib.contextmanager
def webhook(
    directory: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[WarmgateProcess]:
    """A running `warmgate webhook` with the certificate files in ``directory``."""
    process = WarmgateProcess(
        "webhook", "--tls-cert", str(directory / "tls.crt"), "--tls-key",
        str(directory / "tls.key"), "--port", "0", "--host", "127.0.0.1", *args, env=env,
    )  # fmt: skip
    with process:
        yield process
        assert process.stop() == 0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The CA the tests trust."""
    return trustme.CA()


@pytest.fixture(scope="module")
def client(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A client of one webhook shared by the module's tests."""
    directory = tmp_path_factory.mktemp("tls")
    write_pair(ca.issue_cert("127.0.0.1"), directory)
    with webhook(directory, "--image", "ghcr.io/warmgate/warmgate:9.9.9") as process:
        yield Client(process.port(), ca)


def check_like_the_cluster(pod: dict[str, Any], where: str) -> None:
    """``pod`` is valid Kubernetes for every version checked, and kubectl reads it as we do."""
    validate(pod, where)
    assert_go_reads_as_python(dump(pod), where)


@pytest.mark.parametrize(
    ("pod", "dry_run"),
    [
        (deployment_pod(ENABLED | {"warmgate.io/config": "heritage-warmup"}), False),
        (with_sidecars(deployment_pod(INLINE)), False),
        (deployment_pod(INLINE), True),
    ],
    ids=["config-map", "inline-with-sidecars", "dry-run"],
)
def test_the_patched_pod_is_valid_kubernetes_and_reads_alike_in_go(
    client: Client, pod: dict[str, Any], dry_run: bool
) -> None:
    """A Deployment's pod (generateName, no name) patched by the webhook validates and decodes alike."""
    answer = client.review(request(pod, dry_run=dry_run))
    after = patched(copy.deepcopy(pod), answer)
    assert after != pod
    check_like_the_cluster(after, f"patched {pod['metadata']['generateName']}")
    assert violations(after) == violations(pod)  # warmgate adds no Pod Security breach
    names = [c["name"] for c in after["spec"]["initContainers"]]
    assert names[-1] == "warmgate"
    assert names[:-1] == [c["name"] for c in pod["spec"].get("initContainers", [])]
    [sidecar] = [c for c in after["spec"]["initContainers"] if c["name"] == "warmgate"]
    assert sidecar["image"] == "ghcr.io/warmgate/warmgate:9.9.9"
    assert "name" not in after["metadata"]
    again = client.review(request(after, dry_run=dry_run))
    assert "patch" not in again["response"]


def test_a_cpu_limit_can_be_set_for_namespaces_whose_quota_demands_one(
    ca: trustme.CA, tmp_path: Path
) -> None:
    """--cpu-limit (as inject's): a ResourceQuota on limits.cpu refuses pods with no CPU limit."""
    write_pair(ca.issue_cert("127.0.0.1"), tmp_path)
    with webhook(tmp_path, "--cpu-limit", "1") as process:
        answer = Client(process.port(), ca).review(request(deployment_pod()), "/mutate/namespace")
    after = patched(deployment_pod(), answer)
    [sidecar] = [c for c in after["spec"]["initContainers"] if c["name"] == "warmgate"]
    assert sidecar["resources"]["limits"] == {"cpu": "1", "memory": "128Mi"}


def test_the_namespace_route_opts_in_and_the_annotation_route_does_not(client: Client) -> None:
    """The same unannotated pod: patched via /mutate/namespace, untouched via /mutate."""
    pod = deployment_pod()
    by_annotation = client.review(request(pod), "/mutate")
    assert set(by_annotation["response"]) == {"uid", "allowed"}
    by_namespace = client.review(request(pod), "/mutate/namespace")
    after = patched(copy.deepcopy(pod), by_namespace)
    [volume] = [v for v in after["spec"]["volumes"] if v["name"] == "warmgate-config"]
    assert volume["configMap"] == {"name": "warmgate", "optional": True}
    [sidecar] = [c for c in after["spec"]["initContainers"] if c["name"] == "warmgate"]
    assert sidecar["args"][-2:] == ["--optional-config-map", "warmgate"]
    check_like_the_cluster(after, "a namespace-opted-in pod")


def test_opt_out_job_and_host_network_pods_are_allowed_with_the_reason(client: Client) -> None:
    """disabled beats the namespace label; Job pods and hostNetwork pods: no patch, a warning."""
    disabled = deployment_pod({"warmgate.io/inject": "disabled"})
    job = deployment_pod()
    job["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": "nightly-28911",
            "uid": "u",
            "controller": True,
        }
    ]
    host = deployment_pod()
    host["spec"]["hostNetwork"] = True
    for pod, reason in ((disabled, "disabled"), (job, "Job nightly-28911"), (host, "hostNetwork")):
        answer = client.review(request(pod), "/mutate/namespace")["response"]
        assert "patch" not in answer
        assert reason in answer["warnings"][0]


def test_an_invalid_annotation_is_admitted_unmutated_and_counted(client: Client) -> None:
    """A template that reads a file: allowed, no patch, a warning, the invalid counter grows."""
    before = client.metric(
        "warmgate_webhook_invalid_annotations_total", annotation="warmgate.io/url"
    )
    pod = deployment_pod(
        ENABLED | {"warmgate.io/url": "http://127.0.0.1/{{ line('/etc/passwd') }}"}
    )
    answer = client.review(request(pod))["response"]
    assert "patch" not in answer
    assert "cannot read files" in answer["warnings"][0]
    after = client.metric(
        "warmgate_webhook_invalid_annotations_total", annotation="warmgate.io/url"
    )
    assert after == before + 1
    assert INLINE_CONFIG not in json.dumps(answer)


def test_a_body_that_is_not_a_review_gets_400_and_a_broken_review_is_allowed(
    client: Client,
) -> None:
    """Not a review: 400. A review it cannot process: 200, allowed, no patch, a warning."""
    for body in (b"{not json", b'{"kind": "Pod"}', b"[]"):
        status, _ = client.post("/mutate", body)
        assert status == 400
    status, _ = client.post("/elsewhere", json.dumps(request(deployment_pod())).encode())
    assert status == 404
    broken = deployment_pod(ENABLED)
    broken["spec"]["initContainers"] = "not-a-list"
    errors = client.metric("warmgate_webhook_admissions_total", outcome="error")
    answer = client.review(request(broken))["response"]
    assert "patch" not in answer
    assert "internal error" in answer["warnings"][0]
    assert client.metric("warmgate_webhook_admissions_total", outcome="error") == errors + 1
    assert client.metric("warmgate_webhook_malformed_reviews_total") >= 3


def test_probes_and_metrics_are_served_over_tls(client: Client) -> None:
    """/livez and /readyz answer 200; /metrics counts admissions and times them."""
    assert client.get("/livez")[0] == 200
    status, reason = client.get("/readyz")
    assert status == 200
    assert "certificate loaded" in reason
    client.review(request(deployment_pod(INLINE)))
    assert client.metric("warmgate_webhook_admissions_total", outcome="mutated") >= 1
    assert client.metric("warmgate_webhook_admission_duration_seconds_count") >= 1


def test_a_client_that_does_not_speak_tls_costs_one_log_line(client: Client) -> None:
    """Plain HTTP on the TLS port is refused; the next review is answered as usual."""
    with socket.create_connection(("127.0.0.1", client.port), timeout=10) as plain:
        plain.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            plain.recv(100)
    assert client.get("/livez")[0] == 200


@pytest.mark.slow
def test_certificate_rotation_while_serving_fails_no_admission(tmp_path: Path) -> None:
    """Reviews keep coming while the files change (key first: a mismatch) and all are answered."""
    old_ca, new_ca = trustme.CA(), trustme.CA()
    write_pair(old_ca.issue_cert("127.0.0.1"), tmp_path)
    with webhook(tmp_path) as process:
        client = Client(process.port(), old_ca, new_ca)
        new_cert = new_ca.issue_cert("127.0.0.1")
        new_der = ssl.PEM_cert_to_DER_cert(new_cert.cert_chain_pems[0].bytes().decode())
        answers: list[int] = []
        peers: list[bytes] = []
        stop = threading.Event()
        failures: list[str] = []

        def keep_sending() -> None:
            kept_alive = client.connection()
            try:
                while not stop.is_set() or len(answers) < 200:
                    review = json.dumps(request(deployment_pod(INLINE))).encode()
                    fresh = client.connection()
                    try:
                        status, body = client.post("/mutate", review, fresh)
                        assert fresh.sock is not None
                        peers.append(fresh.sock.getpeercert(binary_form=True) or b"")
                    finally:
                        fresh.close()
                    status_kept, body_kept = client.post("/mutate", review, kept_alive)
                    for code, text in ((status, body), (status_kept, body_kept)):
                        if code != 200 or not json.loads(text)["response"]["allowed"]:
                            failures.append(f"{code} {text[:200]!r}")
                        answers.append(code)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                failures.append(repr(exc))
            finally:
                kept_alive.close()

        sender = threading.Thread(target=keep_sending)
        sender.start()
        poll(lambda: len(answers) >= 20 or failures, what="reviews before the rotation")
        # The key lands first: for a moment the pair does not match.
        (tmp_path / ".tls.key.new").write_bytes(new_cert.private_key_pem.bytes())
        os.replace(tmp_path / ".tls.key.new", tmp_path / "tls.key")
        poll(lambda: len(answers) >= 60 or failures, what="reviews across the mismatch")
        write_pair(new_cert, tmp_path)
        poll(lambda: new_der in peers[-5:] or failures, what="connections on the new certificate")
        stop.set()
        sender.join(60)
        assert failures == []
        assert len(answers) >= 200
        assert set(answers) == {200}
        assert client.metric("warmgate_webhook_certificate_loads_total", result="loaded") >= 2
        assert client.metric("warmgate_webhook_certificate_loads_total", result="failed") >= 1
        process.wait_for(lambda e: "loaded the new certificate" in e.get("message", ""))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--tls-cert", "/nonexistent/tls.crt", "--tls-key", "/nonexistent/tls.key"],
         "--tls-cert/--tls-key: cannot load"),
        (["--tls-cert", "x", "--tls-key", "y", "--sidecar-port", "70000"], "--sidecar-port"),
        (["--tls-cert", "x", "--tls-key", "y", "--memory-limit", "lots"], "--memory-limit"),
        (["--tls-cert", "x", "--tls-key", "y", "--drain", "soon"], "--drain: 'soon' is not a duration"),
        (["--tls-cert", "x", "--tls-key", "y", "--config-map", "Warm_Gate"],
         "--config-map: 'Warm_Gate' is not a ConfigMap name"),
        (["--tls-cert", "x", "--tls-key", "y", "--config-map", "{name}-warmgate"],
         "--config-map: '{name}-warmgate' is not a ConfigMap name"),
    ],
    ids=["no-certificate", "sidecar-port", "memory-limit", "drain", "config-map", "config-map-name"],
)  # fmt: skip
def test_a_webhook_that_cannot_start_says_why_and_exits_2(args: list[str], words: str) -> None:
    """Unreadable certificates and bad sidecar options: exit 2, one sentence, no traceback."""
    result = run_cli("webhook", *args, "--port", "0")
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_the_webhook_metrics_pass_promtool(client: Client) -> None:
    """/metrics of the webhook, after reviews of every outcome, is lint-clean for promtool."""
    client.review(request(deployment_pod(INLINE)))
    client.review(request(deployment_pod(ENABLED | {"warmgate.io/p95": "1s"})))
    client.post("/mutate", b"not a review")
    _, text = client.get("/metrics")
    assert "warmgate_webhook_invalid_annotations_total" in text
    promtool_check(text)


def test_the_inline_config_is_one_the_sidecar_accepts(client: Client, tmp_path: Path) -> None:
    """The annotation the downwardAPI volume mounts passes `warmgate validate`, as the sidecar reads it."""
    pod = deployment_pod(INLINE | {"warmgate.io/on-timeout": "fail", "warmgate.io/p99": "1s"})
    after = patched(copy.deepcopy(pod), client.review(request(pod)))
    config = tmp_path / "warmgate.yaml"
    config.write_text(after["metadata"]["annotations"][INLINE_CONFIG])
    result = run_cli("validate", "--config", str(config))
    assert result.returncode == 0, result.stderr
    for words in ("ramp from 1 to 16 in flight", "p95 <= 200ms, p99 <= 1s", "fail closed"):
        assert words in result.stdout


def test_after_sigterm_the_webhook_drains_then_stops(ca: trustme.CA, tmp_path: Path) -> None:
    """First SIGTERM: still answering (closing each connection), /readyz 503; a second signal ends it."""
    write_pair(ca.issue_cert("127.0.0.1"), tmp_path)
    with webhook(tmp_path, "--drain", "5m") as process:
        client = Client(process.port(), ca)
        process.process.send_signal(signal.SIGTERM)
        process.wait_for(lambda e: e.get("event") == "draining")
        status, reason = client.get("/readyz")
        assert status == 503
        assert "stopping" in reason
        kept_alive = client.connection()
        review = request(deployment_pod(INLINE))
        kept_alive.request("POST", "/mutate", json.dumps(review).encode())
        answer = kept_alive.getresponse()
        assert answer.getheader("Connection") == "close"
        assert "patch" in json.loads(answer.read())["response"]
        kept_alive.close()


@pytest.mark.slow
def test_reviews_and_probes_are_answered_while_slow_clients_hold_every_connection(
    ca: trustme.CA, tmp_path: Path
) -> None:
    """512 TLS clients of another pod trickling 2 MiB bodies a byte at a time and 64 trickling
    header lines, reconnecting whenever closed: every review is answered and mutated (never
    503), /readyz answers 200, and the connections dropped are counted."""
    write_pair(ca.issue_cert("127.0.0.1"), tmp_path)
    with webhook(tmp_path) as process:
        client = Client(process.port(), ca)
        crowd = ("--tls", "--reconnect", "--interval", "0.5")
        with (
            SlowClients(client.port, 512, "--source", "127.0.0.2", "--mode", "body", *crowd)
            as bodies,
            SlowClients(client.port, 64, "--source", "127.0.0.3", "--mode", "head", *crowd)
            as heads,
        ):  # fmt: skip
            bodies.wait_until_started(64)
            heads.wait_until_started()
            poll(lambda: client.metric("warmgate_webhook_connections_dropped_total",
                                       reason="evicted") > 0, what="every connection taken")  # fmt: skip
            for _ in range(10):
                status, reason = client.get("/readyz")
                assert status == 200, reason
                pod = deployment_pod(INLINE)
                after = patched(copy.deepcopy(pod), client.review(request(pod)))
                assert [c["name"] for c in after["spec"]["initContainers"]] == ["warmgate"]
            assert client.metric("warmgate_webhook_connections_dropped_total", reason="busy") == 0
            assert heads.counts["closed"] + bodies.counts["closed"] > 0
