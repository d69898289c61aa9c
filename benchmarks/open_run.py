"""The cost of `warmgate run` open for want of its ConfigMap (`--optional-config-map`).

Starts `run` with a --config file that does not exist, then reports: seconds from the start of
the command to the first /readyz 200, VmRSS and VmHWM of its one process (from /proc) after
start-up and after an idle period, its CPU seconds per hour while idle, and /readyz p50/p99 over
a few hundred probes, each on a new connection (as a kubelet probes).

    .venv/bin/python benchmarks/open_run.py [--idle 30] [--probes 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, field: str) -> int:
    """A ``Vm*`` field of ``/proc/PID/status`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def readyz(port: int) -> int:
    """The status code of one GET /readyz on a new connection (0 if it did not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def main() -> None:
    """Measure one open `run` and print a Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--probes", type=int, default=500)
    options = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        command = [sys.executable, "-m", "warmgate", "run", "--config",
                   f"{directory}/config/warmgate.yaml", "--optional-config-map", "warmgate",
                   "--status-dir", f"{directory}/status", "--port", str(port),
                   "--log-format", "json"]  # fmt: skip
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            while readyz(port) != 200:
                if process.poll() is not None or time.monotonic() - started > 30:
                    raise SystemExit("run did not become ready")
                time.sleep(0.01)
            to_ready = time.monotonic() - started
            time.sleep(1)
            rss_start = status_kib(process.pid, "VmRSS") / 1024
            cpu_before, idle_start = cpu_seconds(process.pid), time.monotonic()
            time.sleep(options.idle)
            idle_cpu = cpu_seconds(process.pid) - cpu_before
            idle_hours = (time.monotonic() - idle_start) / 3600
            latencies = []
            for _ in range(options.probes):
                sent = time.perf_counter()
                assert readyz(port) == 200
                latencies.append((time.perf_counter() - sent) * 1000)
            rss_end = status_kib(process.pid, "VmRSS") / 1024
            hwm = status_kib(process.pid, "VmHWM") / 1024
        finally:
            process.terminate()
            code = process.wait(10)
    cuts = statistics.quantiles(latencies, n=100)
    print("| measure | value |\n|---|---|")
    print(f"| start of the command to the first /readyz 200 | {to_ready:.2f} s |")
    print(f"| VmRSS 1 s after ready | {rss_start:.1f} MiB |")
    after = f"{options.idle:g} s idle and {options.probes} probes"
    print(f"| VmRSS after {after} | {rss_end:.1f} MiB |")
    print(f"| VmHWM | {hwm:.1f} MiB |")
    tick = 1 / TICKS / idle_hours  # the resolution: one clock tick in the idle period
    cpu = f"{idle_cpu / idle_hours:.1f}" if idle_cpu else f"< {tick:.1f} (no tick counted)"
    print(f"| CPU while idle | {cpu} s per hour |")
    print(f"| /readyz p50 / p99 (new connection each) | {cuts[49]:.2f} / {cuts[98]:.2f} ms |")
    print(f"| exit code after SIGTERM | {code} |")


if __name__ == "__main__":
    main()
