"""How long a 100,000-line URL set takes to load, and how much memory it holds.

Run by hand: ``.venv/bin/python benchmarks/url_set.py [LINES]``. Each measurement runs in a
fresh interpreter (so imports and earlier runs do not blur the memory figures) and prints:
the load time (best and median of 5), the Python heap the set holds (tracemalloc, after
loading, with the file's text released) and the rise of VmRSS from before to after the load.
Two files: plain URLs only, and one in which every tenth line is a template (as `warmgate
paths` writes for ids it normalises), with 100 distinct templates.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import gc, json, sys, time, tracemalloc
from pathlib import Path
from warmgate.traffic.templating import Templates
from warmgate.traffic.url_set import load_url_set
import jinja2.sandbox  # imported up front, so their cost is not counted as the set's
import warmgate.config.model

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

path = Path(sys.argv[1])
times = []
for _ in range(5):
    start = time.perf_counter()
    urls = load_url_set(path, Templates(), "urls_file")
    times.append(time.perf_counter() - start)
    del urls
    gc.collect()
before = rss()
tracemalloc.start()
urls = load_url_set(path, Templates(), "urls_file")
gc.collect()
held = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
start = time.perf_counter()
for _ in range(100_000):
    urls.render()
pick = (time.perf_counter() - start) / 100_000
print(json.dumps({"times": times, "held": held, "rss": rss() - before, "pick": pick,
                  "lines": len(urls)}))
"""


def write(path: Path, lines: int, templated: bool) -> None:
    with path.open("w") as file:
        file.write("# benchmark URL set\n")
        for number in range(lines):
            if templated and number % 10 == 0:
                url = f"http://app:8080/order/{number % 1000}/{{{{ randint(1, 99999) }}}}"
            else:
                url = f"http://app:8080/catalog/{number}/item-{number * 7919 % 100003}"
            file.write(f"{url} {1 + number % 50}\n")


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as directory:
        for templated in (False, True):
            path = Path(directory) / f"urls-{templated}.txt"
            write(path, lines, templated)
            result = subprocess.run(
                [sys.executable, "-c", CHILD, str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            data = json.loads(result.stdout)
            times = data["times"]
            kind = "every 10th line a template" if templated else "plain URLs"
            print(
                f"{data['lines']:,} lines ({kind}, {path.stat().st_size / 1e6:.1f} MB): "
                f"load best {min(times) * 1000:.0f} ms, median "
                f"{statistics.median(times) * 1000:.0f} ms; heap held "
                f"{data['held'] / 2**20:.1f} MiB; RSS +{data['rss']:.1f} MiB; "
                f"pick+render {data['pick'] * 1e6:.2f} µs"
            )


if __name__ == "__main__":
    main()
