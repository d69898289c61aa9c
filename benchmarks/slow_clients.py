"""/readyz and admission reviews while slow clients hold connections to `run`'s and the webhook's
ports.

Starts the simulated cold app and `warmgate run` priming it, and `warmgate webhook` over TLS.
For each server and each crowd — none; 64 and 512 slow clients of another address (127.0.0.2,
another pod) and of the probe's own address (127.0.0.1, the node's), all reconnecting as soon as
they are closed — it starts the crowd (tests/slow_clients.py, a process of its own: a header
line every --interval seconds to `run`, a 2 MiB body trickled a byte at a time to the webhook;
and for the webhook 64 clients that send 2 MiB bodies but their last byte at once, to fill the
memory kept for bodies), waits until it has started, then sends --probes probes, each on a new
connection as the kubelet does: GET /readyz, and for the webhook also an AdmissionReview. Prints
p50/p99/max and the probes that failed, and the server process's threads, open descriptors and
VmRSS before the crowd, at the end of the probes, and once the crowd has gone (VmHWM at the
end). The servers run with the environment the image gives them (``MALLOC_ARENA_MAX=2``).

    .venv/bin/python benchmarks/slow_clients.py [--probes 200] [--interval 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trustme

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import WarmgateProcess, items_url  # noqa: E402
from tests.reviews import deployment_pod, request  # noqa: E402
from tests.slow_clients import SlowClients  # noqa: E402
from warmgate.demo.simapp import Behavior, SimApp  # noqa: E402

CROWDS = [(0, "127.0.0.1"), (64, "127.0.0.2"), (512, "127.0.0.2"), (64, "127.0.0.1"),
          (512, "127.0.0.1")]  # fmt: skip
IMAGE_ENV = {"MALLOC_ARENA_MAX": "2"}
"""What the image sets for every process (Dockerfile)."""
ANNOTATIONS = {"warmgate.io/inject": "enabled", "warmgate.io/url": "http://127.0.0.1:8080/items/1"}
REVIEW = json.dumps(request(deployment_pod(ANNOTATIONS))).encode()


def stats(pid: int) -> tuple[int, int, float, float]:
    """``(threads, open descriptors, VmRSS MiB, VmHWM MiB)`` of process ``pid``."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    rss, hwm = (int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM"))
    return int(fields["Threads"]), len(os.listdir(f"/proc/{pid}/fd")), rss, hwm


def timed(call: Callable[[], int]) -> float | None:
    """Seconds ``call`` took to get a status under 500 other than 503 (None: it failed)."""
    started = time.perf_counter()
    try:
        status = call()
    except OSError:
        return None
    return time.perf_counter() - started if status in (200, 503) else None


def get(port: int, context: ssl.SSLContext | None, path: str = "/readyz") -> int:
    """The status of one GET on a new connection."""
    connection = (
        http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        if context
        else http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    )
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def review(port: int, context: ssl.SSLContext) -> int:
    """The status of one AdmissionReview on a new TLS connection (200 only if it was decided)."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("POST", "/mutate", REVIEW, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        allowed = answer.status == 200 and json.loads(answer.read())["response"]["allowed"]
        return 200 if allowed else 500
    finally:
        connection.close()


def summary(latencies: list[float | None]) -> str:
    """``p50 / p99 / max ms (failed)`` of a list of latencies, None for failures."""
    done = sorted(x * 1000 for x in latencies if x is not None)
    failed = len(latencies) - len(done)
    if not done:
        return f"all {failed} failed"
    pick = [done[min(len(done) - 1, round(share * len(done)) - 1)] for share in (0.5, 0.99)]
    failures = f" ({failed} failed)" if failed else ""
    return f"{pick[0]:.1f} / {pick[1]:.1f} / {done[-1]:.1f}{failures}"


def measure(
    name: str, pid: int, port: int, probes: dict[str, Callable[[], int]], *,
    args: argparse.Namespace, crowds: list[tuple[int, str, list[str]]],
) -> None:  # fmt: skip
    """Print one table of probe latencies and process figures per crowd."""
    print(f"\n{name}\n")
    print(f"| crowd | {' | '.join(f'{probe} p50 / p99 / max ms' for probe in probes)} | "
          "threads, fds, VmRSS: before / probing / after |")  # fmt: skip
    print("|---|" + "---|" * len(probes) + "---|")
    for clients, source, options in crowds:
        before = stats(pid)
        latencies: dict[str, list[float | None]] = {probe: [] for probe in probes}
        mode = options[options.index("--mode") + 1]
        label = f"{clients} from {source}" + (f", {mode}" if clients else "")
        everything = ["--source", source, "--reconnect", "--interval", str(args.interval),
                      *options]  # fmt: skip
        with SlowClients(port, clients, *everything) as crowd:
            crowd.wait_until_started(min(clients, 64))  # TLS crowds close their own mid-handshake
            for _ in range(args.probes):
                for probe, call in probes.items():
                    latencies[probe].append(timed(call))
                time.sleep(0.01)  # a probe every 10 ms or so, as many kubelets would
            during = stats(pid)
        deadline = time.monotonic() + 15
        while stats(pid)[0] > before[0] and time.monotonic() < deadline:
            time.sleep(0.1)
        after = stats(pid)
        figures = " / ".join(f"{t}, {f}, {r:.1f} MiB" for t, f, r, _ in (before, during, after))
        print(f"| {label} | {' | '.join(summary(x) for x in latencies.values())} | {figures} |")
    print(f"\nVmHWM at the end: {stats(pid)[3]:.1f} MiB")


def main() -> None:
    """Both servers, every crowd."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--interval", type=float, default=3.0)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    app = SimApp(Behavior(start_capacity=64, full_capacity=64))
    app.start()
    try:
        with WarmgateProcess("run", "--url", items_url(app.port), "--concurrency", "8",
                             "--port", "0", env=IMAGE_ENV) as gate:  # fmt: skip
            port = gate.port()
            crowds = [(clients, source, ["--mode", "head"]) for clients, source in CROWDS]
            measure("`warmgate run` (header lines every --interval s)", gate.process.pid, port,
                    {"/readyz": lambda: get(port, None)}, args=args, crowds=crowds)  # fmt: skip
            gate.stop()
    finally:
        app.stop()
    ca = trustme.CA()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with tempfile.TemporaryDirectory() as directory:
        cert = ca.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(f"{directory}/tls.crt")
        cert.private_key_pem.write_to_path(f"{directory}/tls.key")
        files = ["--tls-cert", f"{directory}/tls.crt", "--tls-key", f"{directory}/tls.key"]
        with WarmgateProcess(
            "webhook", *files, "--port", "0", "--host", "127.0.0.1", env=IMAGE_ENV
        ) as hook:
            port = hook.port()
            crowds = [(clients, source, ["--mode", "body", "--tls"]) for clients, source in CROWDS]
            crowds.append((64, "127.0.0.2", ["--mode", "stall", "--tls"]))
            probes: dict[str, Callable[[], int]] = {
                "/readyz": lambda: get(port, context), "review": lambda: review(port, context)
            }  # fmt: skip
            measure("`warmgate webhook` (2 MiB bodies over TLS: a byte every --interval s; or "
                    "all but the last byte at once, `stall`)", hook.process.pid, port, probes,
                    args=args, crowds=crowds)  # fmt: skip
            hook.stop()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
