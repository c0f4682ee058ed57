"""Delay of relayed RTP through the server, from the packets seen on the loopback interface.

A packet socket on ``lo`` (AF_PACKET) with a classic BPF filter keeps only the RTP packets whose
payload begins with one of a few marker words: the first four octets of frames that occur once
in the looped audio. Every marked frame a caller sends is seen four times: on its way to the
server's caller leg, relayed out of the agent leg, echoed back in to the agent leg, relayed out of
the caller leg. The kernel stamps each as it arrives, which on ``lo`` is the moment it was sent
(``SO_TIMESTAMPNS``), so the reader's own delays do not count. The delay through the server is
the time from a frame's arrival on one leg's port to its departure from the other leg's port;
which port pairs with which is learnt from the frames themselves (the port a marked frame most
often leaves from after arriving on another).

The filter runs in the kernel for every packet arriving on ``lo``: a few instructions, the same
at every load level (the departing copies are not tapped at all, `PACKET_IGNORE_OUTGOING`).
Root (CAP_NET_RAW) is needed; without it `start` raises PermissionError.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_HOST = 0
_PAYLOAD = 14 + 20 + 8 + 12
"""Offset of the RTP payload: Ethernet header (as ``lo`` has one), IPv4 without options, UDP,
RTP without CSRC or extension (what SIPp and the server send)."""
_PORTS = struct.Struct("!HH")
_TIMESPEC = struct.Struct("@qq")
_PAIRING_WINDOW = 0.5
"""Seconds after a frame arrives within which its relayed copy counts as leaving."""


def marker_words(
    frames: Sequence[bytes], count: int, translations: Sequence[bytes] = ()
) -> dict[int, int]:
    """The first words (big-endian, as BPF loads them) of up to ``count`` frames that no other
    frame of the audio begins with, spread over the audio, each mapped to its marker number.
    With ``translations`` (``bytes.translate`` tables, applied one after the other, as a relay
    between legs of different G.711 laws and back does), the translated words too."""
    starts = Counter(frame[:4] for frame in frames)
    unique = [frame[:4] for frame in frames if len(frame) >= 4 and starts[frame[:4]] == 1]
    step = max(1, len(unique) // count)
    words: dict[int, int] = {}
    for marker, word in enumerate(unique[::step][:count]):
        forms = [word]
        for table in translations:
            forms.append(forms[-1].translate(table))
        for form in forms:
            words.setdefault(int.from_bytes(form, "big"), marker)
    return words


def _filter(words: Sequence[int]) -> bytes:
    """Classic BPF: IPv4 without options, UDP, payload word one of ``words``: keep the packet."""
    drop = 7 + len(words)
    accept = drop + 1
    program = [
        (0x28, 0, 0, 12),  # ldh [12]: EtherType
        (0x15, 0, drop - 2, 0x0800),
        (0x30, 0, 0, 14),  # ldb [14]: version and header length
        (0x15, 0, drop - 4, 0x45),
        (0x30, 0, 0, 23),  # ldb [23]: protocol
        (0x15, 0, drop - 6, socket.IPPROTO_UDP),
        (0x20, 0, 0, _PAYLOAD),  # ld [payload]
    ]
    for index, word in enumerate(words):
        program.append((0x15, accept - (7 + index) - 1, 0, word))
    program += [(0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFF)]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


@dataclass(frozen=True, slots=True)
class Seen:
    at: float
    source_port: int
    destination_port: int
    marker: int


@dataclass(slots=True)
class LoopbackCapture:
    """Marked RTP frames on every interface while running (`start` … `stop`)."""

    words: dict[int, int]
    """Marker words to watch for, each with its marker number (`marker_words`)."""
    seen: list[Seen] = field(default_factory=list)
    _socket: socket.socket | None = None
    _thread: threading.Thread | None = None
    _running: bool = False

    def start(self) -> None:
        # Unbound: every interface, ``lo`` and the link to a callers' namespace (`caller_netns`).
        # What arrives before the filter is attached is told apart by its marker word.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        code = _filter(sorted(self.words))
        buffer = ctypes.create_string_buffer(code)
        program = struct.pack("HP", len(code) // 8, ctypes.addressof(buffer))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        # Each packet is seen leaving and arriving. Only the arrival is kept: a tap on the way
        # out costs every sender a copy of every packet (the filter runs after the copy).
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.settimeout(0.2)
        self._socket, self._running = sock, True
        self._thread = threading.Thread(target=self._read, name="rtp-capture", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        sock = self._socket
        assert sock is not None
        while self._running:
            try:
                data, ancillary, _, address = sock.recvmsg(_PAYLOAD + 4, 64)
            except TimeoutError:
                continue
            if address[2] != PACKET_HOST or len(data) < _PAYLOAD + 4:
                continue
            stamp = next(
                (
                    _TIMESPEC.unpack(cdata)
                    for level, kind, cdata in ancillary
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                ),
                None,
            )
            if stamp is None:
                continue
            source, destination = _PORTS.unpack_from(data, 34)
            marker = self.words.get(int.from_bytes(data[_PAYLOAD : _PAYLOAD + 4], "big"))
            if marker is None:
                continue
            self.seen.append(Seen(stamp[0] + stamp[1] / 1e9, source, destination, marker))

    def stop(self) -> list[Seen]:
        self._running = False
        if self._thread is not None:
            self._thread.join()
        if self._socket is not None:
            self._socket.close()
        return self.seen


def relay_delays(seen: Sequence[Seen], server_ports: range) -> list[float]:
    """Seconds from each marked frame's arrival on a server port to its departure from the
    port it is relayed from (frames whose relayed copy was not seen are left out)."""
    arrivals = [s for s in seen if s.destination_port in server_ports]
    departures: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for s in seen:
        if s.source_port in server_ports:
            departures[s.marker].append((s.at, s.source_port))
    for times in departures.values():
        times.sort()

    def leaving_after(arrival: Seen) -> Iterator[tuple[float, int]]:
        """The same frame leaving other server ports within the window, earliest first."""
        times = departures[arrival.marker]
        for index in range(bisect_left(times, (arrival.at, -1)), len(times)):
            at, port = times[index]
            if at - arrival.at >= _PAIRING_WINDOW:
                return
            if port != arrival.destination_port:
                yield at, port

    votes = Counter(
        (arrival.destination_port, port)
        for arrival in arrivals
        for _, port in leaving_after(arrival)
    )
    partner: dict[int, int] = {}
    for (port, other), _ in votes.most_common():
        partner.setdefault(port, other)
    delays = []
    for arrival in arrivals:
        other = partner.get(arrival.destination_port)
        at = next((at for at, port in leaving_after(arrival) if port == other), None)
        if at is not None:
            delays.append(at - arrival.at)
    return delays
