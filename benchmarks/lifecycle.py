"""The cost of `warmgate run` over a pod's life: RSS of all its processes, idle CPU, /readyz.

Runs a simulated cold app and `warmgate run` against it through five phases — waiting for the
app, priming, ready (idle), re-arming after an app restart, ready again — while one thread
samples the resident memory of the supervisor and every primer it starts (from /proc) and
another probes /readyz with a new connection every 20 ms, as a kubelet does but far more often
(paused while the idle CPU is measured). Prints a
Markdown table per phase: RSS peak/last (MiB, all processes together), /readyz p50/p99/max
(ms) and failed probes, the supervisor's CPU seconds per hour while ready and idle, and how long
a `run` killed with SIGKILL takes to be ready again when started on the same status directory
while the app stays warm.

    .venv/bin/python benchmarks/lifecycle.py [--idle 30] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import free_port, items_url  # noqa: E402
from warmgate.demo.simapp import Behavior, SimApp  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def rss_mib(pids: list[int]) -> float:
    """Resident memory of ``pids`` together, in MiB."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Recorder:
    """Samples RSS and probes /readyz, filing each figure under the current phase."""

    def __init__(self, pid: int, base: str) -> None:
        self.pid = pid
        self.base = base
        self.phase = "wait"
        self.rss: dict[str, list[float]] = defaultdict(list)
        self.probes: dict[str, list[float]] = defaultdict(list)
        self.failures: dict[str, int] = defaultdict(int)
        self.stop = threading.Event()
        self.paused = threading.Event()
        """Set while the idle CPU is measured: a kubelet probes every few seconds, not 50/s."""

    def sample(self) -> None:
        """RSS every 100 ms."""
        while not self.stop.wait(0.1):
            self.rss[self.phase].append(rss_mib(family(self.pid)))

    def probe(self) -> None:
        """/readyz every 20 ms, each on a new connection with kubelet's 1 s timeout."""
        while not self.stop.wait(0.02):
            if self.paused.is_set():
                continue
            phase, started = self.phase, time.perf_counter()
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=1) as answer:  # noqa: S310
                    answer.read()
            except urllib.error.HTTPError as exc:
                exc.read()
            except OSError:
                self.failures[phase] += 1
                continue
            self.probes[phase].append((time.perf_counter() - started) * 1000)


def ready(base: str) -> bool:
    """Whether /readyz answers 200."""
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=1) as answer:  # noqa: S310
            return answer.status == 200
    except OSError:
        return False


def wait_until(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.05)


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered)) - 1))] if ordered else 0.0


def resume_seconds(concurrency: int) -> float:
    """kill -9 a ready `run`, start it again on the same status dir: seconds to /readyz 200."""
    port, serve = free_port(), free_port()
    status_dir = Path(tempfile.mkdtemp(prefix="wg-resume-"))
    command = [sys.executable, "-m", "warmgate", "run", "--url", items_url(port),
               "--concurrency", str(concurrency), "--window", "3s", "--hold", "2s",
               "--status-dir", str(status_dir), "--port", str(serve),
               "--log-format", "json"]  # fmt: skip
    base = f"http://127.0.0.1:{serve}"
    app = SimApp(Behavior(start_capacity=64, full_capacity=64))
    app.start(port=port)
    try:
        first = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_until(lambda: ready(base), 60)
        first.kill()
        first.wait()
        started = time.monotonic()
        second = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_until(lambda: ready(base), 60)
        elapsed = time.monotonic() - started
        second.terminate()
        second.wait(10)
    finally:
        app.stop()
    return elapsed


def main() -> None:
    """Run the phases and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=30.0, help="seconds ready and idle")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--resumes", type=int, default=3, help="kill -9 and restart this often")
    args = parser.parse_args()
    cold = Behavior(start_capacity=2, full_capacity=64, warm_seconds=4.0, base_latency=0.005)
    port = free_port()
    status_dir = Path(tempfile.mkdtemp(prefix="wg-bench-"))
    serve = free_port()
    command = [sys.executable, "-m", "warmgate", "run", "--url", items_url(port),
               "--concurrency", str(args.concurrency), "--window", "3s", "--hold", "2s",
               "--status-dir", str(status_dir), "--port", str(serve),
               "--log-format", "json"]  # fmt: skip
    gate = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{serve}"
    recorder = Recorder(gate.pid, base)
    wait_until((status_dir / "status.json").exists, 30)
    threads = [threading.Thread(target=t, daemon=True) for t in (recorder.sample, recorder.probe)]
    for thread in threads:
        thread.start()
    app = SimApp(cold)
    try:
        time.sleep(3)  # the app is not there yet: the wait phase
        recorder.phase = "prime"
        app.start(port=port)
        wait_until(lambda: ready(base), 120)
        recorder.phase = "ready"
        time.sleep(2)  # the primer's exit settles
        recorder.paused.set()
        cpu_before, idle_start = cpu_seconds(gate.pid), time.monotonic()
        time.sleep(args.idle)
        idle_cpu = cpu_seconds(gate.pid) - cpu_before
        idle_for = time.monotonic() - idle_start
        recorder.paused.clear()
        recorder.phase = "re-arm"
        app.stop()
        time.sleep(2)
        app = SimApp(cold)
        app.start(port=port)
        wait_until(lambda: ready(base), 120)
        recorder.phase = "ready again"
        time.sleep(10)
    finally:
        recorder.stop.set()
        gate.terminate()
        gate.wait(10)
        app.stop()
    print(f"warmgate run, concurrency {args.concurrency}; {os.cpu_count()} CPUs")
    print("| phase | RSS peak MiB | RSS last MiB | /readyz p50 ms | p99 ms | max ms | failed |")
    print("|---|---|---|---|---|---|---|")
    for phase in ("wait", "prime", "ready", "re-arm", "ready again"):
        rss, probes = recorder.rss[phase], recorder.probes[phase]
        print(f"| {phase} | {max(rss, default=0):.1f} | {rss[-1] if rss else 0:.1f} | "
              f"{quantile(probes, 0.5):.1f} | {quantile(probes, 0.99):.1f} | "
              f"{max(probes, default=0):.1f} | {recorder.failures[phase]} |")  # fmt: skip
    per_hour = idle_cpu / idle_for * 3600
    resumes = [resume_seconds(args.concurrency) for _ in range(args.resumes)]
    print("\nready again after kill -9 of run (app warm), seconds: "
          + ", ".join(f"{seconds:.2f}" for seconds in resumes))  # fmt: skip
    print(f"\nidle once ready: {per_hour:.1f} CPU seconds per hour (supervisor, {idle_for:.0f}s)")
    print(json.dumps({"idle_cpu_s_per_hour": round(per_hour, 2)}))


if __name__ == "__main__":
    main()
