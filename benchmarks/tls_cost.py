"""What TLS costs warmgate per request: kept-alive connections against a new one per request.

Against its own nginx (one worker, a 5-byte static file), warmgate's production HTTP path
(config -> TLS files loaded -> httpx over the aiohttp transport -> ``HttpDriver``) sends
requests in a closed loop at 1 and at 8 in flight, to six servers:

- http and https, connections kept alive;
- http and https, ``keepalive_timeout 0`` (nginx closes after every answer, as some heritage
  servers do, so each request pays a TCP connect and, over https, a full handshake: Python's
  client does not resume TLS sessions);
- https with a client certificate required (mutual TLS), kept alive and not.

It reports requests/s, p50/p95 latency, the client's CPU per request (this process only; nginx
is another) and requests per connection as nginx counted them (``$connection_requests``). The
server certificate is RSA 2048 by default, as most heritage keystores hold; ``--key-type
ecdsa`` for P-256.

Run by hand (needs ``nginx`` on PATH; Debian: ``apt-get install nginx``)::

    .venv/bin/python benchmarks/tls_cost.py [--duration 3] [--key-type rsa] [--json FILE]

It starts and stops its own nginx on free 127.0.0.1 ports. The machine's other work skews every
figure: the run reports how many cores other processes kept busy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import trustme
from http_driver import cpu_seconds, fmt, free_port, machine, running, wait_for_http

from warmgate.config.loader import load_config
from warmgate.decide.outcomes import OK
from warmgate.traffic.targets import compile_config, open_drivers

BODY = b"warm\n"
WARMUP_S = 0.5
CONCURRENCY = (1, 8)
SERVER_NAME = "app.internal"


@dataclass(frozen=True)
class Server:
    """One nginx server block: how it speaks and whether it keeps connections."""

    name: str
    tls: bool
    keepalive: bool
    mutual: bool = False


SERVERS = (
    Server("http, kept alive", tls=False, keepalive=True),
    Server("https, kept alive", tls=True, keepalive=True),
    Server("http, new connection each", tls=False, keepalive=False),
    Server("https, new connection each", tls=True, keepalive=False),
    Server("https+mTLS, kept alive", tls=True, keepalive=True, mutual=True),
    Server("https+mTLS, new connection each", tls=True, keepalive=False, mutual=True),
)

NGINX_HEAD = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    keepalive_requests 1000000;
    log_format reuse '$connection_requests';
    ssl_certificate {root}/server.pem;
    ssl_certificate_key {root}/server.key;
"""
NGINX_SERVER = """\
    server {{
        listen 127.0.0.1:{port}{ssl};
        keepalive_timeout {keepalive};
        {mutual}
        root {root}/www;
        access_log {root}/{port}.log reuse;
    }}
"""


@dataclass
class Result:
    """One server at one concurrency. Latencies in milliseconds."""

    server: str
    concurrency: int
    requests: int
    errors: int
    rate: float
    p50_ms: float
    p95_ms: float
    cpu_us_per_request: float
    requests_per_connection: float | None


@contextlib.contextmanager
def nginx(root: Path, key_type: trustme.KeyType) -> Iterator[tuple[dict[Server, int], Path]]:
    """nginx with one server block per :data:`SERVERS`; yields their ports and the dir of the
    client's PEM files."""
    ca, client_ca = trustme.CA(key_type=key_type), trustme.CA()
    server = ca.issue_cert(SERVER_NAME, key_type=key_type)
    server.private_key_pem.write_to_path(str(root / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(root / "server.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    client_ca.cert_pem.write_to_path(str(root / "client-ca.pem"))
    client_ca.issue_cert("warmgate").private_key_and_cert_chain_pem.write_to_path(
        str(root / "client.pem")
    )
    (root / "www").mkdir()
    (root / "tmp").mkdir()
    (root / "www" / "small.txt").write_bytes(BODY)
    for path in (
        root,
        root / "www",
        *root.glob("*.pem"),
        root / "server.key",
        root / "www" / "small.txt",
    ):
        path.chmod(0o755)  # nginx's worker runs as "nobody" when started as root
    ports = {server_: free_port() for server_ in SERVERS}
    text = NGINX_HEAD.format(root=root)
    for block, port in ports.items():
        mutual = (
            f"ssl_verify_client on; ssl_client_certificate {root}/client-ca.pem;"
            if block.mutual
            else ""
        )
        text += NGINX_SERVER.format(
            port=port,
            ssl=" ssl" if block.tls else "",
            keepalive="75s" if block.keepalive else "0",
            mutual=mutual,
            root=root,
        )
    (root / "nginx.conf").write_text(text + "}\n")
    command = [
        "nginx",
        "-p",
        str(root),
        "-e",
        str(root / "error.log"),
        "-c",
        str(root / "nginx.conf"),
    ]
    with running(command, root / "nginx.out"):
        wait_for_http(ports[SERVERS[0]], "/small.txt")
        yield ports, root


async def measure(
    block: Server, port: int, files: Path, concurrency: int, duration: float
) -> tuple[int, int, list[float], float, float]:
    """Closed loop through warmgate's driver; requests, errors, latencies, seconds, CPU."""
    http: dict[str, Any] = {
        "url": f"{'https' if block.tls else 'http'}://127.0.0.1:{port}/small.txt"
    }
    if block.tls:
        http["tls"] = {"ca_file": str(files / "ca.pem"), "server_name": SERVER_NAME}
        if block.mutual:
            http["tls"]["client_cert"] = str(files / "client.pem")
    config, _ = load_config(
        None, {"targets": [{"name": "nginx", "http": http}], "load": {"concurrency": concurrency}}
    )
    compiled = compile_config(config)
    latencies: list[float] = []
    errors = [0]
    measuring = [False]

    async def worker(driver: Any, stop: float) -> None:
        while time.monotonic() < stop:
            began = time.perf_counter()
            outcome = await driver.execute()
            if measuring[0]:
                latencies.append(time.perf_counter() - began)
                errors[0] += outcome.outcome != OK

    async with AsyncExitStack() as stack:
        [driver] = await open_drivers(config, compiled.targets, stack)
        await asyncio.gather(
            *(worker(driver, time.monotonic() + WARMUP_S) for _ in range(concurrency))
        )
        measuring[0] = True
        start, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(worker(driver, start + duration) for _ in range(concurrency)))
        seconds, cpu_used = time.monotonic() - start, time.process_time() - cpu
    return len(latencies), errors[0], latencies, seconds, cpu_used


def reuse(log: Path) -> tuple[int, int]:
    """Lines (requests) and connections (first requests) in a ``$connection_requests`` log."""
    counts = log.read_text().split() if log.exists() else []
    return len(counts), sum(1 for count in counts if count == "1")


def run(duration: float, key_type: trustme.KeyType) -> list[Result]:
    """Every server at every concurrency."""
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="warmgate-tls-") as tmp,
        nginx(Path(tmp), key_type) as (
            ports,
            root,
        ),
    ):
        for concurrency in CONCURRENCY:
            for block in SERVERS:
                log = root / f"{ports[block]}.log"
                log.write_text("")
                requests, errors, latencies, seconds, cpu = asyncio.run(
                    measure(block, ports[block], root, concurrency, duration)
                )
                logged, connections = reuse(log)
                latencies.sort()
                results.append(
                    Result(
                        server=block.name,
                        concurrency=concurrency,
                        requests=requests,
                        errors=errors,
                        rate=requests / seconds,
                        p50_ms=statistics.median(latencies) * 1000,
                        p95_ms=latencies[int(0.95 * (len(latencies) - 1))] * 1000,
                        cpu_us_per_request=cpu / requests * 1e6,
                        requests_per_connection=logged / connections if connections else None,
                    )
                )
    return results


def print_report(info: dict[str, Any], results: Sequence[Result]) -> None:
    """The table, with the TLS cost against plain http at the same concurrency and keep-alive."""
    print(f"# {info['date']}  {info['cpu']} x{info['nproc']}  Python {info['python']}  "
          f"nginx {info['nginx']}  aiohttp {info['aiohttp']}  key {info['key_type']}")  # fmt: skip
    print(f"# other processes kept {info['other_cores']:.2f} cores busy on average")
    header = ("server", "c", "req/s", "p50 ms", "p95 ms", "CPU us/req", "req/conn", "errors")
    print(" | ".join(header))
    for result in results:
        print(" | ".join([
            result.server, str(result.concurrency), fmt(result.rate, digits=0),
            fmt(result.p50_ms, digits=3), fmt(result.p95_ms, digits=3),
            fmt(result.cpu_us_per_request, digits=0), fmt(result.requests_per_connection, digits=0),
            str(result.errors),
        ]))  # fmt: skip
    by = {(r.server, r.concurrency): r for r in results}
    print("# TLS cost per request (https minus http, same concurrency and connection policy):")
    for concurrency in CONCURRENCY:
        for label in ("kept alive", "new connection each"):
            plain = by[(f"http, {label}", concurrency)]
            tls = by[(f"https, {label}", concurrency)]
            print(f"#   c={concurrency} {label}: "
                  f"+{tls.cpu_us_per_request - plain.cpu_us_per_request:.0f} us client CPU, "
                  f"p50 +{tls.p50_ms - plain.p50_ms:.3f} ms")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print; ``--json`` also writes the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--key-type", choices=("rsa", "ecdsa"), default="rsa")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    key_type = trustme.KeyType.RSA if args.key_type == "rsa" else trustme.KeyType.ECDSA
    info = machine()
    info["key_type"] = "RSA 2048" if args.key_type == "rsa" else "ECDSA P-256"
    busy_start, own_start = cpu_seconds()
    wall = time.monotonic()
    results = run(args.duration, key_type)
    busy_end, own_end = cpu_seconds()
    info["other_cores"] = ((busy_end - busy_start) - (own_end - own_start)) / (
        time.monotonic() - wall
    )
    print_report(info, results)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "results": [asdict(r) for r in results]}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
