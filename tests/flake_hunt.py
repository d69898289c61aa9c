"""Run test files again and again on a busy machine, and count which tests ever fail.

A test that passes on an idle laptop may still depend on scheduling; CI runs on two shared
cores that are often busy. This script makes them busy on purpose (``--busy`` processes
spinning at full speed, two by default, one per core of the CI machine) and runs the given
test files ``--runs`` times, each run in a fresh pytest process, optionally in a random order
(pytest-randomly, when installed). It prints every test that failed at least once with its
failure rate, and exits 1 if there was any.

    .venv/bin/python tests/flake_hunt.py                      # the timing-sensitive files, 10 runs
    .venv/bin/python tests/flake_hunt.py --runs 3 tests/      # the whole suite (about 15 min a run)
    .venv/bin/python tests/flake_hunt.py --busy 0 --random-order tests/test_cli.py

Nothing here retries a test: a failure in any run is a defect to fix (CONTRIBUTING.md).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import random
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TIMING_SENSITIVE = (
    "tests/test_http_driver.py",
    "tests/test_load.py",
    "tests/test_sql_driver.py",
    "tests/test_cli.py",
    "tests/test_lifecycle.py",
    "tests/test_deciding_e2e.py",
    "tests/test_surfaces.py",
    "tests/test_sql_e2e.py",
    "tests/test_demo.py",
    "tests/test_tls.py",
    "tests/test_webhook.py",
    "tests/test_journey.py",
    "tests/test_journey_e2e.py",
    "tests/test_open_run.py",
    "tests/test_sql_mysql_e2e.py",
    "tests/test_paths_servers.py",
    "tests/test_slow_clients.py",
)
"""Files whose tests run real servers, subprocesses and clocks: where scheduling could leak in."""

SPIN = "while True: pass"


def failures(report: Path) -> tuple[int, list[str]]:
    """``(tests run, ids of the failed or errored ones)`` from a JUnit XML report."""
    if not report.exists():
        return 0, ["<pytest wrote no report>"]
    root = ET.parse(report).getroot()
    run, failed = 0, []
    for case in root.iter("testcase"):
        run += 1
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        broken = case.find("failure") is not None or case.find("error") is not None
        if broken and name not in failed:  # a failure and its teardown error count once
            failed.append(name)
    return run, failed


def main() -> int:
    """Spin, run, tally, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=list(TIMING_SENSITIVE))
    parser.add_argument("--runs", type=int, default=10, help="pytest runs (default 10)")
    parser.add_argument("--busy", type=int, default=2, help="spinning processes (default 2)")
    parser.add_argument("--random-order", action="store_true", help="shuffle with pytest-randomly")
    parser.add_argument("-m", dest="markers", default=None, help="pytest -m expression")
    args = parser.parse_args()
    if args.random_order and importlib.util.find_spec("pytest_randomly") is None:
        parser.error("--random-order needs pytest-randomly: .venv/bin/pip install pytest-randomly")

    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
    tally: collections.Counter[str] = collections.Counter()
    seconds: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="flake-hunt-") as scratch:
            for run in range(1, args.runs + 1):
                report = Path(scratch) / f"run-{run}.xml"
                command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={report}", *args.paths]  # fmt: skip
                if args.markers:
                    command += ["-m", args.markers]
                order = "file order"
                if args.random_order:
                    seed = random.randrange(2**32)
                    command += ["-p", "randomly", "--randomly-seed", str(seed)]
                    order = f"--randomly-seed {seed}"
                elif importlib.util.find_spec("pytest_randomly") is not None:
                    command += ["-p", "no:randomly"]
                started = time.monotonic()
                output = subprocess.run(
                    command, cwd=REPO, check=False, capture_output=True, text=True
                ).stdout
                seconds.append(time.monotonic() - started)
                count, failed = failures(report)
                tally.update(failed)
                print(f"run {run}/{args.runs} ({order}): {count} tests, {len(failed)} failed, "
                      f"{seconds[-1]:.0f}s", flush=True)  # fmt: skip
                for line in output.splitlines():  # pytest's short summary: test and reason
                    if line.startswith(("FAILED ", "ERROR ")):
                        print(f"    {line}", flush=True)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()

    print(f"\n{args.runs} runs of {' '.join(args.paths)} with {args.busy} busy processes, "
          f"{min(seconds):.0f}-{max(seconds):.0f}s a run")  # fmt: skip
    if not tally:
        print("no test failed")
        return 0
    for test, count in tally.most_common():
        print(f"{count}/{args.runs}  {test}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
