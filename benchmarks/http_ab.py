"""Compare the HTTP driver of two source trees, interleaved, on a machine others share.

The full benchmark (``http_driver.py``) runs each measurement once; on a busy machine the load
of other work moves between its runs by more than the differences that matter. This script
runs only the driver's two figures that a change to the driver can move, the client CPU per
request (unpaced, 32 workers) and the paced p95 (32 workers at 800 req/s), for two source trees
in alternating ABBA rounds against one nginx, so that a drift in the machine's load weighs on
both alike. Each run is a fresh interpreter with ``PYTHONPATH`` set to its tree::

    git archive BASE | tar -x -C /tmp/before
    git archive HEAD | tar -x -C /tmp/after
    .venv/bin/python benchmarks/http_ab.py /tmp/before /tmp/after [--rounds 4] [--duration 5]

It prints every run and the medians, with after / before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import http_driver

RUN = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1] + "/benchmarks")
import http_driver as bench
url, duration = sys.argv[2], float(sys.argv[3])
unpaced = asyncio.run(bench.drive(url, bench.WORKERS, None, duration))
paced = asyncio.run(bench.drive(url, bench.WORKERS, bench.PACED_RATE, duration))
print(json.dumps({
    "cpu_us_per_request": unpaced.cpu_us_per_request,
    "unpaced_rate": unpaced.requests / unpaced.seconds,
    "paced_rate": paced.requests / paced.seconds,
    "paced_p95_ms": paced.p95_ms,
}))
"""
FIGURES = ("cpu_us_per_request", "unpaced_rate", "paced_rate", "paced_p95_ms")


def measure(tree: Path, url: str, duration: float) -> dict[str, float]:
    """One unpaced and one paced run of ``tree``'s driver in a fresh interpreter."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WARMGATE_")}
    env["PYTHONPATH"] = str(tree)
    completed = subprocess.run(
        [sys.executable, "-c", RUN, str(tree), url, f"{duration:g}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
        timeout=duration * 2 + 120,
        check=True,
    )
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rounds and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="source tree of the code before the change")
    parser.add_argument("after", type=Path, help="source tree of the code after the change")
    parser.add_argument("--rounds", type=int, default=4, help="ABBA rounds (default 4)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with (
        tempfile.TemporaryDirectory(prefix="warmgate-ab-") as tmp,
        http_driver.nginx(Path(tmp)) as port,
    ):
        url = f"http://127.0.0.1:{port}/small.txt"
        for round_ in range(args.rounds):
            order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
            for name in order:
                result = measure(trees[name], url, args.duration)
                runs[name].append(result)
                shown = ", ".join(f"{key} {result[key]:.2f}" for key in FIGURES)
                print(f"round {round_ + 1} {name:6}: {shown}", flush=True)
    print(f"\nmedians of {args.rounds} runs each, load average now {os.getloadavg()[0]:.2f}:")
    for key in FIGURES:
        before = statistics.median(run[key] for run in runs["before"])
        after = statistics.median(run[key] for run in runs["after"])
        ratio = after / before
        print(f"  {key:20} before {before:10.2f}  after {after:10.2f}  after/before {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
