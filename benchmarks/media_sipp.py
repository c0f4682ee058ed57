"""Bridged calls with SIPp on both sides: G.711 audio relayed caller ↔ agent by `cxos run`.

    python benchmarks/media_sipp.py [--calls 100,250,500] [--audio pcap,stream] [--window 16]
                                    [--rate 43] [--server-cpu 0] [--sipp-cpu 1] [--namespace]

The whole server, as ``cc_day.py`` runs it (its queue ``day``, reached by dialling 200, and as
many simulated agents as the largest level, registered with digest authentication and answered
by one SIPp that echoes every RTP packet it gets, ``-rtp_echo``). For each level N, a SIPp
caller process places N calls at ``--rate`` calls/s (not a divisor of 1000/20, so the calls'
packet clocks do not all fall on one phase); each caller talks while the server queues it, rings
an agent and bridges the two legs; the agent's SIPp sends the audio straight back, so every
packet crosses the server twice. The callers' audio is sip-tester's ``g711a.pcap`` (PCMA):

- ``pcap``: played as captured (``play_pcap_audio``: 30 ms packets, 33 a second each way; each
  call paced by its own thread). SIPp sends it through one raw socket per call, and Linux checks
  every raw socket for every UDP datagram it delivers on the host; on loopback the sender pays
  for the delivery, so the server pays that check on each packet it sends to the callers. At 500
  calls it was a third of the server's CPU (``raw_local_deliver`` in ``perf``): a cost of the
  load, which a server whose callers are on other machines does not have. With
  ``--namespace`` the callers run in a network namespace of their own (``caller_netns.py``),
  whose raw sockets are checked only for what is delivered to them, on the load's core; the
  server is then rid of that cost, but the load's core pays it, and beyond a few hundred calls
  SIPp's pcap threads fall behind and send in bunches.
- ``stream``: the same audio sent by SIPp's ``rtp_stream`` from an ordinary UDP socket (20 ms
  packets, 50 a second). SIPp sends every call's packet within about a millisecond of the
  others', so a level's packets arrive in one burst every 20 ms, and the last of a burst waits
  for all before it: the delay through the server grows with the level for that reason alone.

A few seconds after the last call was placed, the server is watched for ``--window`` seconds:
its CPU (user + system, /proc), from ``/metrics`` the RTP packets it accepted, sent, dropped (by
reason) and found lost (RFC 3550 §6.4.1, summed over legs), and on the loopback interface the
delay of marked audio frames from their arrival on one leg to their departure from the other
(``rtp_capture.py``; needs root). Then the callers hang up.

Printed per level: packets relayed per second, CPU per call (% of a core) and per accepted
packet, loss, the median delay through the server and the added jitter (99th percentile minus
median of that delay, as ``media.py`` measures it with its own phones), and the knee against the
targets. SIPp's callers and echo share the one load core, which they can saturate first.
"""

from __future__ import annotations

import argparse
import re
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from math import nan
from pathlib import Path
from string import Template

import numpy as np
from bench_scenarios import CALLER_ACK, CALLER_BYE, caller_invite
from bench_setup import scratch_directory, tools_present
from caller_netns import CallerNamespace, caller_namespace
from cc_day import (
    NUMBER,
    Api,
    metric,
    sipp_command,
    start_agents,
    supervisor_token,
    write_day_config,
)
from machine import this_machine
from media import MAX_ADDED_JITTER_MS, MAX_LOSS_PCT, TARGETS, meets_bar
from report import load_average
from rtp_capture import LoopbackCapture, marker_words, relay_delays
from ruamel.yaml import YAML
from sip_cps import cpu_seconds, free_udp_port, start_server, stop_server

from telephony.rtp.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW

PCAP = Path("/usr/share/sip-tester/g711a.pcap")
STREAM_FRAME = 160
"""Octets of PCMA per packet that SIPp's rtp_stream sends (20 ms)."""
MARKERS = 8
"""Distinct frames of the audio whose passage through the server is timed."""
SERVER_RTP_PORTS = range(20000, 30000)
"""The server's RTP port range (its default)."""
PCAP_SECONDS = 7.05
"""Length of g711a.pcap's audio: 236 packets of 30 ms (240 octets of PCMA each)."""

CALLERS = (
    """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- A caller who talks: dials, is answered (and queued, then bridged to an agent by the
     server), talks (the pcap played over and over, or the same audio streamed), hangs up. -->
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

_STREAM = """  <nop><action><exec rtp_stream="g711a.alaw,-1,8"/></action></nop>
  <pause milliseconds="{ms}"/>
"""

_DROPPED = r"^cxos_rtp_packets_dropped_total\{[^}]*\} ([0-9.e+]+)$"
_COUNTERS = (
    "cxos_rtp_packets_received_total",
    "cxos_rtp_packets_sent_total",
    "cxos_rtp_packets_lost_total",
)


def pcap_payloads(pcap: Path) -> list[bytes]:
    """The RTP payloads of a pcap file's packets (Ethernet, IPv4, UDP, plain RTP header)."""
    data = pcap.read_bytes()
    offset, payloads = 24, []
    while offset + 16 <= len(data):
        (length,) = struct.unpack_from("<I", data, offset + 8)
        frame = data[offset + 16 : offset + 16 + length]
        offset += 16 + length
        ip = frame[14:]
        payloads.append(ip[(ip[0] & 0x0F) * 4 + 8 + 12 :])
    return payloads


def rtp_counters(api: Api) -> dict[str, int]:
    """The RTP counters of ``/metrics``, the dropped ones summed over their reasons."""
    text = api.metrics()
    figures = {name: value for name in _COUNTERS if (value := metric(text, name)) is not None}
    figures["dropped"] = sum(
        int(float(value)) for value in re.findall(_DROPPED, text, re.MULTILINE)
    )
    return figures


def run_level(
    api: Api,
    server_pid: int,
    port: int,
    work: Path,
    calls: int,
    audio: str,
    args: argparse.Namespace,
    namespace: CallerNamespace | None,
) -> dict[str, float]:
    folder = work / f"callers-{audio}-{calls}-{time.monotonic_ns()}"
    folder.mkdir()
    ramp = calls / args.rate
    talk = ramp + 4.0 + args.window + 4.0
    packets = pcap_payloads(PCAP)
    if audio == "pcap":
        (folder / "g711a.pcap").symlink_to(PCAP)
        plays = int(talk // PCAP_SECONDS) + 1
        talking = _PLAY.format(ms=int(PCAP_SECONDS * 1000)) * plays
        frames = packets
    else:
        audio = b"".join(packets)
        (folder / "g711a.alaw").write_bytes(audio)
        talking = _STREAM.format(ms=int(talk * 1000))
        frames = [audio[i : i + STREAM_FRAME] for i in range(0, len(audio), STREAM_FRAME)]
    (folder / "callers.xml").write_text(Template(CALLERS).substitute(talking=talking))
    command = sipp_command(
        port,
        args.sipp_cpu,
        *("-sf", "callers.xml", "-s", NUMBER, "-p", str(free_udp_port())),
        *("-mp", str(free_udp_port()), "-r", str(args.rate), "-l", str(calls)),
        *("-m", str(calls), "-timeout", f"{int(talk + 60)}s"),
        **(
            {}
            if namespace is None
            else {"server": namespace.host_address, "local": namespace.caller_address}
        ),
    )
    callers = subprocess.Popen(
        command if namespace is None else namespace.command(command),
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
        capture: LoopbackCapture | None = LoopbackCapture(
            marker_words(frames, MARKERS, (ALAW_TO_ULAW, ULAW_TO_ALAW))
        )
        try:
            capture.start()
        except PermissionError:  # a packet socket needs CAP_NET_RAW
            capture = None
        before, cpu_before, at = rtp_counters(api), cpu_seconds(server_pid), time.monotonic()
        time.sleep(args.window)
        after, cpu_after = rtp_counters(api), cpu_seconds(server_pid)
        wall = time.monotonic() - at
        delays = relay_delays(capture.stop(), SERVER_RTP_PORTS) if capture else []
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
    jitter = float(np.percentile(delays, 99) - np.percentile(delays, 50)) if delays else nan
    return {
        "added_jitter_ms": 1000 * jitter,
        "delay_ms": 1000 * float(np.percentile(delays, 50)) if delays else nan,
        "delays": float(len(delays)),
        "connected": float(connected),
        "packets_per_s": received / wall,
        "cpu_pct": 100 * cpu / wall,
        "cpu_per_call_pct": 100 * cpu / wall / calls,
        "us_per_packet": 1e6 * cpu / max(1, received),
        "loss_pct": 100 * lost / max(1, received + lost),
        "sent_per_received": delta.get("cxos_rtp_packets_sent_total", 0) / max(1, received),
    }


def run_mode(
    api: Api,
    server_pid: int,
    port: int,
    work: Path,
    levels: Sequence[int],
    audio: str,
    args: argparse.Namespace,
    namespace: CallerNamespace | None,
) -> None:
    out = sys.stdout
    where = "on loopback" if namespace is None else "in a network namespace of their own"
    out.write(
        f"callers' audio: {audio}, callers {where}\n"
        f"{'calls':>6} {'connected':>9} {'pkt/s':>8} {'srv CPU %':>9} "
        f"{'CPU/call %':>10} {'µs/pkt':>7} {'loss %':>7} {'delay ms':>8} "
        f"{'jitter ms':>9} {'timed':>6} {'sent/recv':>9}\n"
    )
    knee, failed = 0, False
    for calls in levels:
        figures = run_level(api, server_pid, port, work, calls, audio, args, namespace)
        out.write(
            f"{calls:>6} {figures['connected']:>9.0f} {figures['packets_per_s']:>8.0f} "
            f"{figures['cpu_pct']:>9.1f} {figures['cpu_per_call_pct']:>10.3f} "
            f"{figures['us_per_packet']:>7.1f} {figures['loss_pct']:>7.3f} "
            f"{figures['delay_ms']:>8.2f} {figures['added_jitter_ms']:>9.2f} "
            f"{figures['delays']:>6.0f} {figures['sent_per_received']:>9.2f}\n"
        )
        out.flush()
        if meets_bar(figures) and not failed:
            knee = calls
        else:
            failed = True
        time.sleep(3.0)
    target = TARGETS["bridged"]
    if failed and figures["delays"] == 0:
        verdict = "not judged: no delay measured (the loopback capture needs root)"
    elif knee >= target:
        verdict = "met"
    elif failed:
        verdict = "missed"
    else:
        verdict = "not settled: no level as high was tried"
    out.write(
        f"bridged knee with {audio} callers (< {MAX_LOSS_PCT} % loss, < "
        f"{MAX_ADDED_JITTER_MS:.0f} ms added jitter): {knee} calls on one server core; "
        f"target >= {target}: {verdict}\n"
    )


def admit_callers(config: Path, namespace: CallerNamespace, port: int) -> None:
    """A UDP listener on the host's end of the link to the callers' namespace, and the callers'
    address a source of the bench trunk."""
    yaml = YAML()
    settings = yaml.load(config / "server.yaml")
    listener = {"transport": "udp", "host": namespace.host_address, "port": port}
    settings["sip"]["listen"].append(listener)
    trunks = yaml.load(config / "trunks.yaml")
    trunks["trunks"][0]["sources"].append(namespace.caller_address)
    for name, document in (("server.yaml", settings), ("trunks.yaml", trunks)):
        with (config / name).open("w") as handle:
            yaml.dump(document, handle)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", default="100,250,500", help="bridged calls per level")
    parser.add_argument("--window", type=float, default=16.0, help="seconds measured per level")
    parser.add_argument("--rate", type=float, default=43.0, help="calls placed per second")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--sipp-cpu", type=int, default=1)
    parser.add_argument(
        "--audio", default="pcap,stream", help="how the callers send audio: pcap, stream or both"
    )
    parser.add_argument(
        "--namespace",
        action="store_true",
        help="pcap callers in a network namespace of their own (root): their raw sockets cost "
        "the load's core instead of the server's",
    )
    parser.add_argument("--keep-log", type=Path, default=None, help="copy the server's log here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not tools_present(("sipp", "taskset")) or not PCAP.exists():
        return 2
    levels = [int(n) for n in args.calls.split(",") if n.strip()]
    modes = [mode.strip() for mode in args.audio.split(",") if mode.strip()]
    if not set(modes) <= {"pcap", "stream"}:
        raise SystemExit(f"--audio: pcap, stream or both, not {args.audio}")
    out = sys.stdout
    out.write(f"{this_machine()}\nload average {load_average()}\n")
    with scratch_directory("cxos-media-sipp-") as work, ExitStack() as stack:
        namespace = None
        if "pcap" in modes and args.namespace:
            try:
                namespace = stack.enter_context(caller_namespace(args.sipp_cpu))
            except (OSError, subprocess.CalledProcessError) as error:
                out.write(f"no network namespace for the pcap callers ({error}): on loopback\n")
        port = free_udp_port()
        config = work / "conf"
        api_port = write_day_config(config, port, max(levels), 20.0)
        if namespace is not None:
            admit_callers(config, namespace, port)
        server = start_server(config, port, args.server_cpu, work / "server.log")
        try:
            api = Api(api_port, supervisor_token(config))
            agents = start_agents(work, port, api, max(levels), 3600.0, args.sipp_cpu, echo=True)
            try:
                for audio in modes:
                    run_mode(
                        api,
                        server.pid,
                        port,
                        work,
                        levels,
                        audio,
                        args,
                        namespace if audio == "pcap" else None,
                    )
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
