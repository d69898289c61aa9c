"""The gRPC driver's throughput beside a bare grpcio aio client loop, at the same concurrency.

Starts its own fast gRPC service in a subprocess (grpcio aio, one unary method that answers a
small message at once, from a descriptor built here: no protoc), then, in turns, for
``--rounds`` rounds of ``--duration`` seconds each (after a second of warm-up), in ABBA order:

- **bare**: the floor for a Python client: one grpcio aio channel, ``--concurrency`` tasks each
  awaiting the raw-bytes method in a loop (request serialized once, answer left as bytes);
- **warmgate**: ``Load`` + ``GrpcDriver`` (compiled from a config, the method resolved through
  the server's reflection), closed loop at the same concurrency, with a templated request
  (``{"id": {{ randint(1, 1000) }}}``) rendered, parsed and serialized per call, as a real
  config does; and ``--constant`` adds a run with a constant request (serialized once).

Prints calls per second and the client's CPU per call of each, per round and as medians, and
the ratio warmgate / bare of the medians (the bar: at least 0.5; exit 1 below it). Run it on a
quiet machine; both clients share the machine's cores with the server.

    .venv/bin/python benchmarks/grpc_driver.py [--concurrency 32] [--duration 3] [--rounds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack

import grpc

from warmgate.config.model import Config
from warmgate.decide.window import Sample
from warmgate.traffic.loadgen import Load
from warmgate.traffic.targets import compile_config, open_drivers

WARMUP_S = 1.0
SERVER = r"""
import asyncio, sys
import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection

F = descriptor_pb2.FieldDescriptorProto
file = descriptor_pb2.FileDescriptorProto(name="bench.proto", package="bench", syntax="proto3")
request = file.message_type.add(name="GetRequest")
request.field.add(name="id", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
reply = file.message_type.add(name="Reply")
reply.field.add(name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
file.service.add(name="Fast").method.add(
    name="Get", input_type=".bench.GetRequest", output_type=".bench.Reply")
pool = descriptor_pool.DescriptorPool()
pool.Add(file)
ANSWER = message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Reply"))(
    name="ok").SerializeToString()

async def get(request, context):
    return ANSWER

async def main():
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 1000)])
    handler = grpc.unary_unary_rpc_method_handler(get)  # raw bytes both ways
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Fast", {"Get": handler}),))
    reflection.enable_server_reflection(["bench.Fast", reflection.SERVICE_NAME], server, pool)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


async def bare(port: int, concurrency: int, duration: float) -> tuple[float, float]:
    """Calls per second of a bare grpcio aio loop (one channel, ``concurrency`` tasks), and
    the client's CPU seconds per call."""
    payload = b"\x08\x07"  # GetRequest{id: 7}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/bench.Fast/Get")
        done = 0
        counting = False

        async def worker() -> None:
            nonlocal done
            while True:
                await call(payload, timeout=5)
                if counting:
                    done += 1

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(WARMUP_S)
        counting, start, cpu = True, time.monotonic(), time.process_time()
        await asyncio.sleep(duration)
        counting, seconds, calls = False, time.monotonic() - start, done
        cpu = time.process_time() - cpu
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return calls / seconds, cpu / calls


async def warmgate(
    port: int, concurrency: int, duration: float, request: str
) -> tuple[float, float]:
    """Calls per second of ``Load`` + ``GrpcDriver`` at ``concurrency``, closed loop, and the
    client's CPU seconds per call."""
    config = Config.model_validate({
        "targets": [{"name": "fast", "grpc": {
            "address": f"127.0.0.1:{port}", "method": "bench.Fast/Get", "plaintext": True,
            "request": request,
        }}],
        "load": {"concurrency": concurrency},
    })  # fmt: skip
    compiled = compile_config(config)
    counted: list[Sample] = []
    counting = False
    failed = 0

    def record(sample: Sample) -> None:
        nonlocal failed
        if counting:
            counted.append(sample)
            failed += sample.outcome != "ok"

    async with AsyncExitStack() as stack:
        drivers = await open_drivers(config, compiled.targets, stack)
        if await drivers[0].probe() is not None:
            raise RuntimeError("the benchmark server is not up")
        load = Load(drivers, [1.0], concurrency, record)
        load.start()
        load.configure(concurrency, None)
        await asyncio.sleep(WARMUP_S)
        counting, start, cpu = True, time.monotonic(), time.process_time()
        await asyncio.sleep(duration)
        counting, seconds, calls = False, time.monotonic() - start, len(counted)
        cpu = time.process_time() - cpu
        await load.stop()
    if failed:
        raise RuntimeError(f"{failed} of {calls} calls failed")
    return calls / seconds, cpu / calls


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; exit 1 when the ratio is below 0.5."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--constant", action="store_true", help="also a constant request")
    args = parser.parse_args(argv)
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        print(f"server pid {server.pid} on 127.0.0.1:{port}; {os.cpu_count()} cores; "
              f"load average {os.getloadavg()[0]:.2f}; concurrency {args.concurrency}, "
              f"{args.rounds} rounds of {args.duration:g}s")  # fmt: skip
        templated = '{"id": {{ randint(1, 1000) }}}'
        runs = {
            "bare": lambda: bare(port, args.concurrency, args.duration),
            "warmgate": lambda: warmgate(port, args.concurrency, args.duration, templated),
        }
        if args.constant:
            runs["constant"] = lambda: warmgate(port, args.concurrency, args.duration, '{"id": 7}')
        results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in runs}
        for number in range(1, args.rounds + 1):
            # ABBA: each client goes first as often as last, so drifting load hits both alike.
            order = list(runs) if number % 2 else list(reversed(runs))
            for kind in order:
                results[kind].append(asyncio.run(runs[kind]()))
            shown = ", ".join(
                f"{kind} {results[kind][-1][0]:,.0f}/s ({results[kind][-1][1] * 1e6:.0f} us CPU)"
                for kind in runs
            )
            print(f"round {number}: {shown}")
    finally:
        server.terminate()
        server.wait(10)
    rate = {kind: statistics.median(r for r, _ in found) for kind, found in results.items()}
    cpu = {kind: statistics.median(c for _, c in found) for kind, found in results.items()}
    print(
        "median: "
        + ", ".join(f"{k} {rate[k]:,.0f} calls/s, {cpu[k] * 1e6:.0f} us CPU/call" for k in rate)
    )
    ratio = rate["warmgate"] / rate["bare"]
    print(f"ratio warmgate (templated request) / bare grpcio aio loop: {ratio:.2f} (bar >= 0.5)")
    print(f"client CPU per call, bare / warmgate: {cpu['bare'] / cpu['warmgate']:.2f}")
    if "constant" in rate:
        print(f"ratio warmgate (constant request) / bare: {rate['constant'] / rate['bare']:.2f}")
    return 0 if ratio >= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
