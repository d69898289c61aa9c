"""Admission latency of `warmgate webhook` at a steady rate of AdmissionReviews.

Starts `warmgate webhook` on a free 127.0.0.1 port with a trustme certificate, then sends
reviews shaped like the API server's at --rate per second for --seconds, paced: each review has
an intended send time, and its latency counts from then (no coordinated omission). The mix
cycles through what a cluster sends: a pod with inline annotations (templates validated: the
costliest), a pod naming a ConfigMap, a pod with init containers and a native sidecar, and a pod
of an opted-in namespace. Two runs: one kept-alive connection (how the API server calls
webhooks), then a new TLS connection per review. Prints p50/p99/max per run and the server's own
share within the goal, the server's CPU time per review (robust on a busy machine, unlike
latency) and the load averages around the run; exits 1 when a p99 misses --goal.

    .venv/bin/python benchmarks/webhook.py [--rate 50] [--seconds 30] [--goal 10ms]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.reviews import deployment_pod, request, with_sidecars

ENABLED = {"warmgate.io/inject": "enabled"}
MIX: list[tuple[str, dict[str, Any]]] = [
    ("/mutate", deployment_pod(ENABLED | {
        "warmgate.io/url": "http://127.0.0.1:8080/items/{{ randint(1, 100000) }}",
        "warmgate.io/concurrency": "16", "warmgate.io/p95": "200ms"})),
    ("/mutate", deployment_pod(ENABLED | {"warmgate.io/config": "heritage-warmup"})),
    ("/mutate", with_sidecars(deployment_pod(ENABLED))),
    ("/mutate/namespace", deployment_pod()),
]  # fmt: skip


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def run(
    port: int, context: ssl.SSLContext, rate: float, seconds: float, keep_alive: bool
) -> list[float]:
    """Latencies (s) from the intended send time of ``rate * seconds`` paced reviews."""
    bodies = [(path, json.dumps(request(pod)).encode()) for path, pod in MIX]
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    latencies: list[float] = []
    start = time.perf_counter() + 0.1
    for index in range(int(rate * seconds)):
        intended = start + index / rate
        delay = intended - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if not keep_alive:
            connection.close()
            connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        path, body = bodies[index % len(bodies)]
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        payload = answer.read()
        latencies.append(time.perf_counter() - intended)
        if answer.status != 200 or not json.loads(payload)["response"]["allowed"]:
            raise SystemExit(f"review {index} failed: {answer.status} {payload[:200]!r}")
    connection.close()
    return latencies


def listening_port(log_path: Path) -> int:
    """The port from the server's ``listening`` log line, waited for up to 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            event = json.loads(line)
            if event.get("event") == "listening":
                return int(event["port"])
        time.sleep(0.05)
    raise SystemExit(f"the webhook did not start: {log_path.read_text()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_share_within(port: int, context: ssl.SSLContext, goal: float) -> tuple[float, float]:
    """(reviews answered, share the server itself answered within ``goal``) from /metrics."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("warmgate_webhook_admission_duration_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[bound] = float(line.rsplit(" ", 1)[1])
    total = buckets["+Inf"]
    within = max((count for bound, count in buckets.items()
                  if bound != "+Inf" and float(bound) <= goal), default=0.0)  # fmt: skip
    return total, within / total if total else 0.0


def main() -> int:
    """Run both scenarios and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--goal", default="10ms")
    args = parser.parse_args()
    goal = float(args.goal.removesuffix("ms")) / 1000
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with tempfile.TemporaryDirectory() as directory:
        cert_path, key_path = Path(directory) / "tls.crt", Path(directory) / "tls.key"
        cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key_path))
        log_path = Path(directory) / "webhook.log"
        with log_path.open("w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "warmgate", "webhook", "--tls-cert", str(cert_path),
                 "--tls-key", str(key_path), "--port", "0", "--host", "127.0.0.1",
                 "--log-format", "json"],
                stdout=log,
            )  # fmt: skip
        try:
            port = listening_port(log_path)
            print(
                f"warmgate webhook on port {port}; {args.rate:g} reviews/s for {args.seconds:g} s"
            )
            print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            print(f"{'connection':<22} {'reviews':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
                  f"{'server CPU ms/review':>21}")  # fmt: skip
            missed = False
            for name, keep_alive in (("kept alive", True), ("new TLS per review", False)):
                cpu = cpu_seconds(server.pid)
                latencies = run(port, context, args.rate, args.seconds, keep_alive)
                cpu = (cpu_seconds(server.pid) - cpu) / len(latencies)
                p99 = percentile(latencies, 0.99)
                missed |= p99 > goal
                p50, worst = percentile(latencies, 0.5), max(latencies)
                print(f"{name:<22} {len(latencies):>8} {p50 * 1000:>8.2f} {p99 * 1000:>8.2f} "
                      f"{worst * 1000:>8.2f} {cpu * 1000:>21.2f}")  # fmt: skip
            total, share = server_share_within(port, context, goal)
            print(
                f"server side: {total:.0f} reviews, {share:.1%} decided and answered within "
                f"{goal * 1000:g} ms (its histogram)"
            )
            print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            server.terminate()
            server.wait(10)
    print(f"goal: p99 < {goal * 1000:g} ms: {'missed' if missed else 'met'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
