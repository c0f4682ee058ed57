"""Bridged calls with SIPp on both sides: G.711 pcap audio relayed caller ↔ agent by `cxos run`.

    python benchmarks/media_sipp.py [--calls 100,250,500] [--window 8] [--rate 50]
                                    [--server-cpu 0] [--sipp-cpu 1]

The whole server, as ``cc_day.py`` runs it (its queue ``day``, reached by dialling 200, and as
many simulated agents as the largest level, registered with digest authentication and answered
by one SIPp that echoes every RTP packet it gets, ``-rtp_echo``). For each level N, a SIPp
caller process places N calls at ``--rate`` calls/s; each caller plays sip-tester's
``g711a.pcap`` (PCMA, 30 ms packets: 33 a second) over and over while the server queues it,
rings an agent and bridges the two legs; the agent's SIPp sends the audio straight back, so
every packet crosses the server twice. A few seconds after the last call was placed, the server
is watched for ``--window`` seconds: its CPU (user + system, /proc), and from ``/metrics`` the
RTP packets it accepted, sent, dropped (by reason) and found lost (RFC 3550 §6.4.1, summed over
legs). Then the callers hang up.

Printed per level: packets relayed per second, CPU per call (% of a core) and per accepted
packet, and loss. This is the cross-check with SIPp's pcap playback of what ``media.py``
measures with its own phones; it does not give added jitter (SIPp does not time RTP packets),
and SIPp's pcap threads and echo share the one load core, which they can saturate first.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from string import Template

from bench_scenarios import CALLER_ACK, CALLER_BYE, caller_invite
from bench_setup import scratch_directory, tools_present
from cc_day import NUMBER, Api, sipp_command, start_agents, supervisor_token, write_day_config
from machine import this_machine
from report import load_average
from sip_cps import cpu_seconds, free_udp_port, start_server, stop_server

PCAP = Path("/usr/share/sip-tester/g711a.pcap")
PCAP_SECONDS = 7.05
"""Length of g711a.pcap's audio: 236 packets of 30 ms (240 octets of PCMA each)."""

CALLERS = (
    """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- A caller who talks: dials, is answered (and queued, then bridged to an agent by the
     server), plays the pcap $plays times back to back, hangs up. -->
<scenario name="bench talking callers">
"""
    + caller_invite(8, "PCMA")
    + """  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
"""
    + CALLER_ACK
    + """$talking
"""
    + CALLER_BYE
    + """  <recv response="200"/>
</scenario>
"""
)

_PLAY = """  <nop><action><exec play_pcap_audio="g711a.pcap"/></action></nop>
  <pause milliseconds="{ms}"/>
"""

_DROPPED = r"^cxos_rtp_packets_dropped_total\{[^}]*\} ([0-9.e+]+)$"
_COUNTERS = (
    "cxos_rtp_packets_received_total",
    "cxos_rtp_packets_sent_total",
    "cxos_rtp_packets_lost_total",
)


def rtp_counters(api: Api) -> dict[str, int]:
    """The RTP counters of ``/metrics``, the dropped ones summed over their reasons."""
    request = urllib.request.Request(
        f"{api.base}/metrics", headers={"Authorization": f"Bearer {api.token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    figures = {
        name: int(float(found.group(1)))
        for name in _COUNTERS
        if (found := re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE))
    }
    figures["dropped"] = sum(
        int(float(value)) for value in re.findall(_DROPPED, text, re.MULTILINE)
    )
    return figures


def run_level(
    api: Api, server_pid: int, port: int, work: Path, calls: int, args: argparse.Namespace
) -> dict[str, float]:
    folder = work / f"callers-{calls}-{time.monotonic_ns()}"
    folder.mkdir()
    (folder / "g711a.pcap").symlink_to(PCAP)
    ramp = calls / args.rate
    talk = ramp + 4.0 + args.window + 4.0
    plays = int(talk // PCAP_SECONDS) + 1
    (folder / "callers.xml").write_text(
        Template(CALLERS).substitute(
            talking=_PLAY.format(ms=int(PCAP_SECONDS * 1000)) * plays, plays=plays
        )
    )
    callers = subprocess.Popen(
        sipp_command(
            port,
            args.sipp_cpu,
            *("-sf", "callers.xml", "-s", NUMBER, "-p", str(free_udp_port())),
            *("-mp", str(free_udp_port()), "-r", str(args.rate), "-l", str(calls)),
            *("-m", str(calls), "-timeout", f"{int(talk + 60)}s"),
        ),
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "stderr.log").open("wb"),
    )
    try:
        # Each call is queued and bridged within moments of being placed (the agents answer at
        # once): the window starts a few seconds after the last call was placed.
        time.sleep(ramp + 3.0)
        connected = sum(
            1 for call in api.get("/api/calls")["calls"] if call.get("state") == "connected"
        )
        before, cpu_before, at = rtp_counters(api), cpu_seconds(server_pid), time.monotonic()
        time.sleep(args.window)
        after, cpu_after = rtp_counters(api), cpu_seconds(server_pid)
        wall = time.monotonic() - at
        callers.wait(talk + 120)
    finally:
        if callers.poll() is None:
            callers.kill()
    if callers.returncode:
        errors = (folder / "stderr.log").read_text(errors="replace").strip().splitlines()
        sys.stderr.write(
            f"SIPp callers for {calls} calls exited {callers.returncode}: {errors[-3:]}\n"
        )
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    received = delta.get("cxos_rtp_packets_received_total", 0)
    lost = delta.get("cxos_rtp_packets_lost_total", 0) + delta.get("dropped", 0)
    cpu = cpu_after - cpu_before
    return {
        "connected": float(connected),
        "packets_per_s": received / wall,
        "cpu_pct": 100 * cpu / wall,
        "cpu_per_call_pct": 100 * cpu / wall / calls,
        "us_per_packet": 1e6 * cpu / max(1, received),
        "loss_pct": 100 * lost / max(1, received + lost),
        "sent_per_received": delta.get("cxos_rtp_packets_sent_total", 0) / max(1, received),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", default="100,250,500", help="bridged calls per level")
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured per level")
    parser.add_argument("--rate", type=float, default=50.0, help="calls placed per second")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--sipp-cpu", type=int, default=1)
    parser.add_argument("--keep-log", type=Path, default=None, help="copy the server's log here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not tools_present(("sipp", "taskset")) or not PCAP.exists():
        return 2
    levels = [int(n) for n in args.calls.split(",") if n.strip()]
    out = sys.stdout
    out.write(f"{this_machine()}\nload average {load_average()}\n")
    with scratch_directory("cxos-media-sipp-") as work:
        port = free_udp_port()
        config = work / "conf"
        api_port = write_day_config(config, port, max(levels), 20.0)
        server = start_server(config, port, args.server_cpu, work / "server.log")
        try:
            api = Api(api_port, supervisor_token(config))
            agents = start_agents(work, port, api, max(levels), 3600.0, args.sipp_cpu, echo=True)
            try:
                out.write(
                    f"{'calls':>6} {'connected':>9} {'pkt/s':>8} {'srv CPU %':>9} "
                    f"{'CPU/call %':>10} {'µs/pkt':>7} {'loss %':>7} {'sent/recv':>9}\n"
                )
                for calls in levels:
                    figures = run_level(api, server.pid, port, work, calls, args)
                    out.write(
                        f"{calls:>6} {figures['connected']:>9.0f} {figures['packets_per_s']:>8.0f} "
                        f"{figures['cpu_pct']:>9.1f} {figures['cpu_per_call_pct']:>10.3f} "
                        f"{figures['us_per_packet']:>7.1f} {figures['loss_pct']:>7.3f} "
                        f"{figures['sent_per_received']:>9.2f}\n"
                    )
                    out.flush()
                    time.sleep(3.0)
            finally:
                agents.terminate()
        finally:
            stop_server(server)
            if args.keep_log is not None:
                args.keep_log.write_bytes((work / "server.log").read_bytes())
    out.write(f"load average after: {load_average()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
