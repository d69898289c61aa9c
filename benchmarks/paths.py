"""Benchmark ``warmgate paths``: how fast it mines a large access log, and in how much memory.

Run by hand (about 2-3 minutes; needs ~1.3 GB of free disk in the temporary directory)::

    .venv/bin/python benchmarks/paths.py [--gigabytes 1] [--json FILE]

It writes a synthetic NCSA combined log of the given size (a heritage shop: half the lines are
fixed pages and assets, the other half carry order, customer and invoice ids, mostly distinct;
one line in ten is a POST, one in twelve is not a 200; Tomcat-style ``;jsessionid`` and query
strings included), then runs the real CLI on it, one process per run, and reports the rate in
MB of log per second of wall time and of CPU time, and the peak RSS:

1. ``warmgate paths LOG --top 100`` (ids sampled, the default), ``--repeat`` times — the figure
   the bar is about (the best of them: other work on the machine only ever slows a run);
2. the same with ``--ids range`` and with ``--ids keep`` (every distinct path is a key, so the
   template table fills and is pruned: the hostile case for memory);
3. a gzip'd slice (``--gzip-megabytes``) and the same requests as JSON lines
   (``--json-megabytes``), each compared with the plain NCSA rate on the same requests.

Every file it writes is deleted before it exits. Exits 1 when the best default run is below
``--bar`` MB/s (default 100).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAGES = ["/", "/index.jsp", "/dashboard", "/search", "/static/app.css",
         "/static/app.3f2a9c1b.js", "/img/logo.png", "/api/v1/items", "/help/faq.html"]  # fmt: skip
AGENTS = [
    '"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 '
    'Safari/537.36"',
    '"curl/7.88.1"',
]


def requests(rng: random.Random, count: int) -> list[tuple[str, str, int]]:
    """``count`` synthetic ``(method, target, status)`` requests."""
    out = []
    for _ in range(count):
        x = rng.random()
        if x < 0.5:
            target = rng.choice(PAGES)
        elif x < 0.8:
            target = f"/order/{rng.randint(1, 200_000)}"
        elif x < 0.95:
            target = f"/customer/{rng.randint(1, 5000)}/invoice/{rng.randint(1, 100_000)}?print=1"
        else:
            target = f"/item/{rng.randint(1, 9999)};jsessionid=A1B2C3D4E5F6{rng.randint(1, 10**9)}"
        method = "GET" if rng.random() < 0.9 else "POST"
        status = 200 if rng.random() < 0.92 else rng.choice([304, 404, 500, 302])
        out.append((method, target, status))
    return out


def ncsa(rng: random.Random, batch: list[tuple[str, str, int]]) -> bytes:
    """The requests as NCSA combined lines."""
    return "".join(
        f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)} - - "
        f"[29/Nov/2026:12:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} +0000] "
        f'"{method} {target} HTTP/1.1" {status} {rng.randint(100, 90000)} '
        f'"https://shop.example/ref" {rng.choice(AGENTS)}\n'
        for method, target, status in batch
    ).encode()


def jsonl(batch: list[tuple[str, str, int]]) -> bytes:
    """The requests as JSON lines, as nginx's ``escape=json`` log_format writes them."""
    return "".join(
        json.dumps({"time": "2026-11-29T12:00:00+00:00", "request_uri": target,
                    "method": method, "status": status, "bytes": 1234}) + "\n"
        for method, target, status in batch
    ).encode()  # fmt: skip


def write_logs(directory: Path, gigabytes: float, json_mb: float) -> tuple[Path, Path, Path]:
    """The big NCSA log, and a slice of the same requests as NCSA and as JSON lines."""
    rng = random.Random(14)
    big, small, small_json = (
        directory / "big.log",
        directory / "slice.log",
        directory / "slice.jsonl",
    )
    target = int(gigabytes * 1e9)
    with big.open("wb") as out, small.open("wb") as s_out, small_json.open("wb") as j_out:
        while out.tell() < target:
            batch = requests(rng, 20_000)
            out.write(ncsa(rng, batch))
            if j_out.tell() < json_mb * 1e6:
                s_out.write(ncsa(rng, batch))
                j_out.write(jsonl(batch))
    return big, small, small_json


def run(log: Path, *args: str) -> dict[str, float]:
    """Run ``warmgate paths LOG ARGS`` once; its wall and CPU rates and its peak RSS."""
    size = log.stat().st_size
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "warmgate", "paths", str(log), "-o", os.devnull, *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        _, status, usage = os.wait4(process.pid, 0)  # this child's own CPU time and peak RSS
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        summary = stderr.read().decode()
    if process.returncode != 0:
        sys.exit(f"warmgate paths failed: {summary}")
    cpu = usage.ru_utime + usage.ru_stime
    print(f"    {summary.splitlines()[0]}")
    return {
        "megabytes": size / 1e6,
        "wall_s": wall,
        "cpu_s": cpu,
        "mb_per_s_wall": size / 1e6 / wall,
        "mb_per_s_cpu": size / 1e6 / cpu,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }


def main() -> int:
    """Generate, measure, report, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--json-megabytes", type=float, default=200.0)
    parser.add_argument("--gzip-megabytes", type=float, default=200.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the default mode")
    parser.add_argument("--bar", type=float, default=100.0, help="MB/s the first run must reach")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--dir", type=Path, default=None, help="where the logs go (default: tmp)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="warmgate-paths-bench-", dir=args.dir))
    results: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "loadavg_before": os.getloadavg(),
    }
    try:
        print(f"writing {args.gigabytes:g} GB of log to {directory} ...")
        big, small, small_json = write_logs(directory, args.gigabytes, args.json_megabytes)
        packed = directory / "slice.log.gz"
        with small.open("rb") as source, gzip.open(packed, "wb", compresslevel=6) as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        runs = {
            **{f"ncsa_sample_{n + 1}": (big, ["--top", "100"]) for n in range(args.repeat)},
            "ncsa_range": (big, ["--top", "100", "--ids", "range"]),
            "ncsa_keep": (big, ["--top", "100", "--ids", "keep"]),
            "slice_ncsa": (small, ["--top", "100"]),
            "slice_gzip": (packed, ["--top", "100"]),
            "slice_json": (small_json, ["--top", "100"]),
        }
        for name, (log, extra) in runs.items():
            print(f"  {name}: warmgate paths {log.name} {' '.join(extra)}")
            results[name] = run(log, *extra)
            if name == "slice_gzip":  # rate in MB of log, not of gzip
                result = results[name]
                assert isinstance(result, dict)
                result["mb_per_s_wall"] = small.stat().st_size / 1e6 / result["wall_s"]
                result["mb_per_s_cpu"] = small.stat().st_size / 1e6 / result["cpu_s"]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    results["loadavg_after"] = os.getloadavg()
    print(f"\n{'run':<16}{'MB':>9}{'wall s':>9}{'MB/s wall':>11}{'MB/s CPU':>10}{'RSS MiB':>9}")
    for name in runs:
        r = results[name]
        assert isinstance(r, dict)
        print(f"{name:<16}{r['megabytes']:>9.0f}{r['wall_s']:>9.1f}{r['mb_per_s_wall']:>11.0f}"
              f"{r['mb_per_s_cpu']:>10.0f}{r['peak_rss_mib']:>9.0f}")  # fmt: skip
    print(f"{results['machine']}; load average before {results['loadavg_before']}, "
          f"after {results['loadavg_after']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    best = max(
        float(r["mb_per_s_wall"])
        for name, r in results.items()
        if name.startswith("ncsa_sample_") and isinstance(r, dict)
    )
    return 0 if best >= args.bar else 1


if __name__ == "__main__":
    sys.exit(main())
