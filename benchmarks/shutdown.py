"""How long `warmgate run` and `prime` take from SIGTERM to exit: 2 s and 1 s, measured.

The tests prove that shutdown does not wait for requests (tests/test_lifecycle.py) or for a
capture's match (tests/test_journey_e2e.py); how long it takes depends on the machine, so it is
measured here. For `run` (budget 2 s): warming at concurrency 16 against an app that answers
(and never copes), and 16 requests hung on a target that accepts connections and never answers.
For `prime` (budget 1 s): warming at 16 against the same app, and a journey whose regex capture
takes RE2 about 20 s a match on its 1 MiB answer (16 virtual users waiting on it). ``--rounds``
times each; prints the median and the worst, and exits 1 when a worst passes its budget.

    .venv/bin/python benchmarks/shutdown.py [--rounds 5] [--budget 2.0] [--prime-budget 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from warmgate.demo.simapp import Behavior, SimApp

NEVER_WARM = Behavior(start_capacity=1, full_capacity=1, base_latency=0.002)


SLOW_REGEX = "(?:a|b)*a" + "[ab]{1000}" * 4 + "(c)"


def sigterm_seconds(url: str, request_timeout: str, command_name: str = "run") -> float:
    """Start `run` (or `prime`) against ``url``, wait until it warms, SIGTERM it: seconds to
    its exit."""
    target = {"http": {"url": url, "timeout": request_timeout}}
    return sigterm_after_warming([target], command_name)


def sigterm_after_warming(targets: list[dict[str, object]], command_name: str) -> float:
    """Start the command on ``targets``, wait until it warms, SIGTERM it: seconds to exit."""
    status_dir = tempfile.mkdtemp(prefix="wg-shutdown-")
    config = Path(status_dir) / "warmgate.yaml"
    config.write_text(json.dumps({"targets": targets, "load": {"concurrency": 16},
                                  "gate": {"timeout": "10m"}}))  # fmt: skip
    command = [sys.executable, "-m", "warmgate", command_name, "--config", str(config),
               "--status-dir", status_dir]  # fmt: skip
    if command_name == "run":
        command += ["--port", "0"]
    gate = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status = Path(status_dir) / "status.json"
        deadline = time.monotonic() + 30
        while '"warming"' not in (status.read_text() if status.exists() else ""):
            if time.monotonic() > deadline:
                raise SystemExit("run never started warming")
            time.sleep(0.05)
        time.sleep(2.0)  # let the load reach its level (and a capture's match start)
        started = time.monotonic()
        gate.send_signal(signal.SIGTERM)
        gate.wait(60)
        return time.monotonic() - started
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.wait()


def slow_capture_server() -> ThreadingHTTPServer:
    """A server answering every GET with 1 MiB of random a and b (RE2's slowest for SLOW_REGEX)."""
    table = bytes(ord("a") + (byte & 1) for byte in range(256))
    body = random.Random(7).randbytes(1024 * 1024).translate(table)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    """Measure every situation and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=2.0)
    parser.add_argument("--prime-budget", type=float, default=1.0)
    args = parser.parse_args()
    results: dict[str, tuple[float, list[float]]] = {}
    with SimApp(NEVER_WARM) as app:
        url = f"http://127.0.0.1:{app.port}/items/{{{{ randint(1, 1000) }}}}"
        results["run: warming at 16, app answering"] = (
            args.budget,
            [sigterm_seconds(url, "10s") for _ in range(args.rounds)],
        )
        results["prime: warming at 16, app answering"] = (
            args.prime_budget,
            [sigterm_seconds(url, "10s", "prime") for _ in range(args.rounds)],
        )
    with socket.create_server(("127.0.0.1", 0), backlog=128) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        results["run: 16 requests hung (timeout 5m)"] = (
            args.budget,
            [sigterm_seconds(url, "5m") for _ in range(args.rounds)],
        )
    server = slow_capture_server()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        step = {"name": "page", "http": {"url": url, "timeout": "10s"},
                "capture": {"t": {"regex": SLOW_REGEX}}}  # fmt: skip
        journey = [{"name": "form", "journey": {"steps": [step]}}]
        results["prime: a capture matching for ~20 s"] = (
            args.prime_budget,
            [sigterm_after_warming(journey, "prime") for _ in range(args.rounds)],
        )
    finally:
        server.shutdown()
        server.server_close()
    print(f"SIGTERM to exit, {args.rounds} rounds; {os.cpu_count()} CPUs")
    print("| situation | budget s | median s | worst s |")
    print("|---|---|---|---|")
    over = False
    for situation, (budget, seconds) in results.items():
        over = over or max(seconds) > budget
        print(f"| {situation} | {budget:g} | {statistics.median(seconds):.2f} "
              f"| {max(seconds):.2f} |")  # fmt: skip
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
