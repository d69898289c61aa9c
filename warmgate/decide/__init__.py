"""The decisions: the window, the histogram, the checks, the plateau, the ramp, the gate, the
judge, the lifecycle machine and a journey's walk, fed plain data with ``now`` passed in.

Rule: pure. Imports nothing that does I/O or reads a clock (no asyncio, socket, time, threading,
httpx, pydantic), and of warmgate only ``kernel/``.
"""
