"""A network namespace of the benchmark's own for SIPp's pcap-playing callers.

SIPp plays a pcap through one raw socket per call, and Linux checks every raw socket of a
namespace for every UDP datagram it delivers there. On plain loopback the sender pays for the
delivery, so the server would pay that check, hundreds of sockets long, on each packet it sends
to any peer: a cost of the load generator, not of a media server whose callers are on other
machines. In a namespace of their own the callers' raw sockets are checked only for what is
delivered to the callers, and Receive Packet Steering on the namespace's end of the link hands
that delivery to the load's core, as the callers' own machines would do it.

The namespace is joined to the host by a veth pair with addresses of the benchmark's own
(``HOST_ADDRESS``, ``CALLER_ADDRESS``); the host end is local to the host like any other
address, so the server can listen there beside 127.0.0.1. Needs root; removed on exit.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

HOST_ADDRESS = "10.231.77.1"
CALLER_ADDRESS = "10.231.77.2"
_PREFIX = 30


@dataclass(frozen=True, slots=True)
class CallerNamespace:
    name: str
    host_address: str
    caller_address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@contextmanager
def caller_namespace(load_cpu: int) -> Iterator[CallerNamespace]:
    """The namespace, its veth link up, its received packets steered to ``load_cpu``."""
    name = f"cxos-bench-{os.getpid()}"
    host_end, caller_end = f"cxb{os.getpid() % 100000}h", f"cxb{os.getpid() % 100000}c"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", caller_end)
        _run("ip", "link", "set", caller_end, "netns", name)
        _run("ip", "addr", "add", f"{HOST_ADDRESS}/{_PREFIX}", "dev", host_end)
        _run("ip", "link", "set", host_end, "up")
        inside = CallerNamespace(name, HOST_ADDRESS, CALLER_ADDRESS)
        address = f"{CALLER_ADDRESS}/{_PREFIX}"
        _run(*inside.command(["ip", "addr", "add", address, "dev", caller_end]))
        _run(*inside.command(["ip", "link", "set", caller_end, "up"]))
        _run(*inside.command(["ip", "link", "set", "lo", "up"]))
        steering = f"/sys/class/net/{caller_end}/queues/rx-0/rps_cpus"
        _run(*inside.command(["sh", "-c", f"echo {1 << load_cpu:x} > {steering}"]))
        yield inside
    finally:
        # Either may be gone already (deleting the namespace takes its end of the pair along).
        subprocess.run(["ip", "link", "del", host_end], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
