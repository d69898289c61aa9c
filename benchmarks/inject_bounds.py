"""How long `warmgate inject` and `uninject` take to refuse hostile YAML, and in how much memory.

Run by hand: ``.venv/bin/python benchmarks/inject_bounds.py [--runs 5] [--json FILE]``. Each run
is a fresh ``python -m warmgate`` process (interpreter start-up included, as a user meets it)
reading the file from disk, under GNU ``/usr/bin/time`` for its peak RSS; the table shows the best
and the worst wall-clock time of the runs, the largest peak RSS and the exit codes. The
product's rule: exit 2 within 1 s. For comparison, a valid Deployment is injected too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.test_yaml_bounds import HEAD, HOSTILE  # noqa: E402 - the inputs the tests refuse


def run(command: str, path: Path) -> tuple[float, float, int]:
    """``(seconds, peak RSS in MiB, exit code)`` of one ``warmgate COMMAND PATH``."""
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "warmgate", command, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - start
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kib / 1024, done.returncode


def main() -> None:
    """Measure every hostile input of the tests, and a valid Deployment, for both commands."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    inputs = {"a valid Deployment": HEAD} | {name: text for name, (text, _) in HOSTILE.items()}
    results = []
    with tempfile.TemporaryDirectory() as directory:
        print(f"{'input':<24} {'command':<9} {'bytes':>8} {'best s':>7} {'worst s':>8} "
              f"{'RSS MiB':>8} {'exit':>5}")  # fmt: skip
        for name, text in inputs.items():
            path = Path(directory) / "input.yaml"
            path.write_text(text)
            for command in ("inject", "uninject"):
                runs = [run(command, path) for _ in range(args.runs)]
                times = [seconds for seconds, _, _ in runs]
                peak = max(rss for _, rss, _ in runs)
                codes = sorted({code for _, _, code in runs})
                results.append({"input": name, "command": command, "bytes": len(text),
                                "best_s": min(times), "worst_s": max(times), "peak_rss_mib": peak,
                                "exit": codes})  # fmt: skip
                exits = ",".join(map(str, codes))
                print(f"{name:<24} {command:<9} {len(text):>8,} {min(times):>7.2f} "
                      f"{max(times):>8.2f} {peak:>8.0f} {exits:>5}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
