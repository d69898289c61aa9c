"""The gRPC driver's throughput beside a bare grpcio aio client loop, at the same concurrency.

Starts its own fast gRPC service in a subprocess (grpcio aio, one unary method that answers a
small message at once, from a descriptor built here: no protoc), then, in turns, for
``--rounds`` rounds of ``--duration`` seconds each (after a second of warm-up):

- **bare**: the floor for a Python client: one grpcio aio channel, ``--concurrency`` tasks each
  awaiting the raw-bytes method in a loop (request serialized once, answer left as bytes);
- **warmgate**: ``Load`` + ``GrpcDriver`` (compiled from a config, the method resolved through
  the server's reflection), closed loop at the same concurrency, with a templated request
  (``{"id": {{ randint(1, 1000) }}}``) rendered, parsed and serialized per call, as a real
  config does; and ``--constant`` adds a run with a constant request (serialized once).

Prints calls per second of each, and the ratio warmgate / bare (the bar: at least 0.5). Run
it on a quiet machine; both clients share the machine's cores with the server.

    .venv/bin/python benchmarks/grpc_driver.py [--concurrency 32] [--duration 5] [--rounds 3]
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


async def bare(port: int, concurrency: int, duration: float) -> float:
    """Calls per second of a bare grpcio aio loop: one channel, ``concurrency`` tasks."""
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
        counting, start = True, time.monotonic()
        await asyncio.sleep(duration)
        counting, seconds, calls = False, time.monotonic() - start, done
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return calls / seconds


async def warmgate(port: int, concurrency: int, duration: float, request: str) -> float:
    """Calls per second of ``Load`` + ``GrpcDriver`` at ``concurrency``, closed loop."""
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
        counting, start = True, time.monotonic()
        await asyncio.sleep(duration)
        counting, seconds, calls = False, time.monotonic() - start, len(counted)
        await load.stop()
    if failed:
        raise RuntimeError(f"{failed} of {calls} calls failed")
    return calls / seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; exit 1 when the ratio is below 0.5."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--constant", action="store_true", help="also a constant request")
    args = parser.parse_args(argv)
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        print(f"server pid {server.pid} on 127.0.0.1:{port}; {os.cpu_count()} cores; "
              f"load average {os.getloadavg()[0]:.2f}; concurrency {args.concurrency}, "
              f"{args.rounds} rounds of {args.duration:g}s")  # fmt: skip
        kinds = {"bare": [], "warmgate": []} | ({"constant": []} if args.constant else {})
        templated = '{"id": {{ randint(1, 1000) }}}'
        for number in range(1, args.rounds + 1):
            rates = {
                "bare": asyncio.run(bare(port, args.concurrency, args.duration)),
                "warmgate": asyncio.run(warmgate(port, args.concurrency, args.duration, templated)),
            }
            if args.constant:
                rates["constant"] = asyncio.run(
                    warmgate(port, args.concurrency, args.duration, '{"id": 7}')
                )
            for kind, rate in rates.items():
                kinds[kind].append(rate)
            shown = ", ".join(f"{kind} {rate:,.0f}/s" for kind, rate in rates.items())
            print(f"round {number}: {shown}")
    finally:
        server.terminate()
        server.wait(10)
    medians = {kind: statistics.median(rates) for kind, rates in kinds.items()}
    ratio = medians["warmgate"] / medians["bare"]
    print("median calls/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in medians.items()))
    print(f"ratio warmgate (templated request) / bare grpcio aio loop: {ratio:.2f} (bar >= 0.5)")
    if "constant" in medians:
        print(
            f"ratio warmgate (constant request) / bare: {medians['constant'] / medians['bare']:.2f}"
        )
    return 0 if ratio >= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
