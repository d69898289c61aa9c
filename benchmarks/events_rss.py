"""What `run --events` costs in memory: the supervisor and the Event poster, on and off.

Starts a simulated app that is warm at once, the TLS test API server (tests/kubeapi.py) and
`warmgate run` against them, with and without `--events`, alternately; once ready (and, with
events, once the Warm Event has reached the API server) it waits `--idle` seconds and reads the
VmRSS and VmHWM of the supervisor and of the poster from /proc, then again 35 s after the Warm
Event (the poster ends 30 s after its last one). Prints one Markdown row a run.

    .venv/bin/python benchmarks/events_rss.py [--rounds 2] [--idle 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import free_port, items_url  # noqa: E402
from tests.kubeapi import kube_api, kubeconfig  # noqa: E402
from warmgate.demo.simapp import Behavior, SimApp  # noqa: E402
from warmgate.runtime.events import IDLE_CLOSE  # noqa: E402


def status_mib(pid: int, key: str) -> float:
    """One ``/proc/PID/status`` figure (VmRSS, VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.05)


def one_run(events: bool, idle: float, app: SimApp, directory: Path) -> str:
    with kube_api() as api:
        env = dict(os.environ, POD_NAME="bench", POD_NAMESPACE="bench", POD_UID="u")
        env["KUBECONFIG"] = str(kubeconfig(api, directory))
        port = free_port()
        argv = [sys.executable, "-m", "warmgate", "run", "--url", items_url(app.port),
                "--concurrency", "16", "--window", "2s", "--hold", "1s", "--port", str(port),
                "--log-format", "json", *(["--events"] if events else [])]  # fmt: skip
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
        try:
            wait_until(lambda: ready(port))
            if events:
                wait_until(lambda: any(e["reason"] == "Warm" for e in api.created()))
            time.sleep(idle)
            pid = process.pid
            posters = [c for c in children(pid) if "event_poster" in command(c)]
            row = [
                "on" if events else "off",
                f"{status_mib(pid, 'VmRSS'):.1f} / {status_mib(pid, 'VmHWM'):.1f}",
            ]
            if posters:
                poster = posters[0]
                row.append(f"{status_mib(poster, 'VmRSS'):.1f} / {status_mib(poster, 'VmHWM'):.1f}")
            else:
                row.append("(none)")
            time.sleep(IDLE_CLOSE + 5 - idle)
            left = [c for c in children(pid) if "event_poster" in command(c)]
            row.append(f"{status_mib(pid, 'VmRSS'):.1f}; poster {'running' if left else 'gone'}")
            return "| " + " | ".join(row) + " |"
        finally:
            process.terminate()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle", type=float, default=5.0)
    args = parser.parse_args()
    app = SimApp(Behavior(start_capacity=64, full_capacity=64))
    app.start()
    print("| events | supervisor VmRSS / VmHWM MiB | poster VmRSS / VmHWM MiB | 35 s later |")
    print("|---|---|---|---|")
    try:
        with tempfile.TemporaryDirectory() as directory:
            for _ in range(args.rounds):
                for events in (False, True):
                    print(one_run(events, args.idle, app, Path(directory)), flush=True)
    finally:
        app.stop()


if __name__ == "__main__":
    main()
