"""The server process of ``media.py``: one `MediaRunner` on uvloop, driven by JSON commands
on stdin (open legs, start, stop), answering on stdout with its ports and figures."""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import sys
import time
from typing import Any


async def serve(base_port: int, catch_up_spacing: float) -> None:
    """The server process: reads one JSON command per line on stdin, answers on stdout."""
    from cxos.app import tune_garbage_collector
    from telephony.media.engine import EngineSettings
    from telephony.media.runner import MediaRunner
    from telephony.rtp.g711 import Law

    runner = MediaRunner(settings=EngineSettings(catch_up_spacing=catch_up_spacing))
    # As `cxos run` (server.tune_gc, on by default) does once started, before any call.
    tune_garbage_collector()
    # Garbage collector pauses, by generation: a long one stalls every leg's tick and relay.
    pauses: list[tuple[int, float]] = []
    began = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - began[0]))

    gc.callbacks.append(on_gc)
    prompt = tuple(bytes([0x55 ^ (i & 0x7F)]) * 160 for i in range(3000))  # one minute
    loop = asyncio.get_running_loop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    skipped = received = flood = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        if command["op"] == "open":
            peers: list[int] = command["peers"]
            ports: list[int] = []
            port = base_port
            for index, peer_port in enumerate(peers):
                while True:  # skip ports other programs hold
                    try:
                        await runner.open_leg(
                            f"leg{index}",
                            local=("127.0.0.1", port),
                            law=Law.ULAW,
                            payload_type=0,
                            event_payload_type=101,
                            remote=("127.0.0.1", peer_port),
                        )
                    except OSError:
                        port += 2
                        continue
                    ports.append(port)
                    port += 2
                    break
            if command["mode"] == "bridged":
                for index in range(0, len(peers), 2):
                    runner.engine.bridge(f"leg{index}", f"leg{index + 1}")
            else:
                for index in range(len(peers)):
                    runner.engine.play(f"leg{index}", (prompt,))
            runner.arm()
            reply: dict[str, Any] = {"ports": ports}
        elif command["op"] == "start":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            started = time.monotonic()
            skipped = runner.engine.skipped_ticks
            pauses.clear()
            counters = runner.engine.totals()[0]
            received, flood = counters.received, counters.flood
            reply = {}
        elif command["op"] == "stop":
            now = resource.getrusage(resource.RUSAGE_SELF)
            cpu = now.ru_utime - usage.ru_utime + now.ru_stime - usage.ru_stime
            reply = {
                "cpu": cpu,
                "wall": time.monotonic() - started,
                "received": runner.engine.totals()[0].received - received,
                # Packets the server read too late and too many at once: its per-source rate
                # limit (LegSettings.max_packet_rate, packet_burst) shed them as a flood.
                "flood": runner.engine.totals()[0].flood - flood,
                "send_dropped": runner.send_dropped,
                "skipped_ticks": runner.engine.skipped_ticks - skipped,
                "gc_max_ms": 1000 * max((pause for _, pause in pauses), default=0.0),
                "gc_full": sum(1 for generation, _ in pauses if generation == 2),
            }
            await runner.close()
        else:
            break
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
