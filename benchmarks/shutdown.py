"""How long `warmgate run` takes from SIGTERM to exit: the sidecar's 2 s budget, measured.

The tests prove that shutdown does not wait for requests (tests/test_lifecycle.py); how long it
takes depends on the machine, so it is measured here. Two situations, ``--rounds`` times each:
warming at concurrency 16 against an app that answers (and never copes), and 16 requests hung on
a target that accepts connections and never answers. Prints the median and the worst, and exits
1 when the worst passes the budget.

    .venv/bin/python benchmarks/shutdown.py [--rounds 5] [--budget 2.0]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from warmgate.simapp import Behavior, SimApp

NEVER_WARM = Behavior(start_capacity=1, full_capacity=1, base_latency=0.002)


def sigterm_seconds(url: str, request_timeout: str) -> float:
    """Start `run` against ``url``, wait until it warms, SIGTERM it: seconds to its exit."""
    status_dir = tempfile.mkdtemp(prefix="wg-shutdown-")
    config = Path(status_dir) / "warmgate.yaml"
    config.write_text(
        f"targets:\n  - http: {{url: '{url}', timeout: {request_timeout}}}\n"
        "load: {concurrency: 16}\n"
    )
    command = [sys.executable, "-m", "warmgate", "run", "--config", str(config),
               "--status-dir", status_dir, "--port", "0"]  # fmt: skip
    gate = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status = Path(status_dir) / "status.json"
        deadline = time.monotonic() + 30
        while '"warming"' not in (status.read_text() if status.exists() else ""):
            if time.monotonic() > deadline:
                raise SystemExit("run never started warming")
            time.sleep(0.05)
        time.sleep(1.0)  # let the load reach its level
        started = time.monotonic()
        gate.send_signal(signal.SIGTERM)
        gate.wait(60)
        return time.monotonic() - started
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.wait()


def main() -> int:
    """Measure both situations and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=2.0)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    with SimApp(NEVER_WARM) as app:
        url = f"http://127.0.0.1:{app.port}/items/{{{{ randint(1, 1000) }}}}"
        results["warming at 16, app answering"] = [
            sigterm_seconds(url, "10s") for _ in range(args.rounds)
        ]
    with socket.create_server(("127.0.0.1", 0), backlog=128) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        results["16 requests hung (timeout 5m)"] = [
            sigterm_seconds(url, "5m") for _ in range(args.rounds)
        ]
    print(f"SIGTERM to exit of warmgate run, {args.rounds} rounds; {os.cpu_count()} CPUs")
    print("| situation | median s | worst s |")
    print("|---|---|---|")
    worst = 0.0
    for situation, seconds in results.items():
        worst = max(worst, *seconds)
        print(f"| {situation} | {statistics.median(seconds):.2f} | {max(seconds):.2f} |")
    return 0 if worst <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
