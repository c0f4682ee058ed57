"""Killing a running contact center with SIGKILL and starting it again on the same database.

Callers here are SIPp processes left running in the background (several calls each), so that
calls are in progress in every phase when the server dies; the checks read PostgreSQL directly.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from tests.integration.contact_center import SIPP_PCAPS, ContactCenter
from tests.integration.peers import SCENARIOS, free_port, start_server


def callers(
    center: ContactCenter, scenario: str, number: str, count: int, name: str, wait_ms: int = 0
) -> subprocess.Popen[str]:
    """``count`` trunk calls to ``number`` placed at once by one SIPp process, left running."""
    folder = center.workdir / name
    (folder / "pcap").mkdir(parents=True)
    for capture in ("g711a.pcap", "dtmf_2833_1.pcap"):  # what the scenarios play
        shutil.copy(SIPP_PCAPS / capture, folder / "pcap" / capture)
    command = [
        shutil.which("sipp") or "sipp",
        center.server.address,
        "-sf",
        str(SCENARIOS / scenario),
        "-s",
        number,
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-mp",
        str(free_port()),
        "-m",
        str(count),
        "-l",
        str(count),
        "-r",
        "50",
        "-d",
        str(wait_ms),
        "-nostdin",
        "-trace_err",
    ]
    process = subprocess.Popen(
        command,
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    center.phones.append(process)  # ContactCenter.stop() ends it
    return process


def kill(center: ContactCenter) -> int:
    """SIGKILL the server and end the SIPp callers and phones that were talking to it.

    Returns the killed process's exit status (minus the signal number).
    """
    center.server.process.send_signal(signal.SIGKILL)
    code = center.server.process.wait(10)
    for phone in center.phones:
        if phone.poll() is None:
            phone.kill()
            phone.wait(5)
    center.phones.clear()
    return code


def restart(center: ContactCenter) -> None:
    """Start the server again on the same configuration, ports and database.

    Its log and the peers' files from then on go to a ``restarted`` folder of the work directory.
    """
    old = center.server
    center.workdir = center.workdir / "restarted"
    center.workdir.mkdir()
    log_path = center.workdir / old.log_path.name
    center.server = start_server(old.config_dir, old.port, log_path, old.host)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    node: str
    seq: int
    type: str
    call_id: str
    """The call, or "" for an event about no call."""
    time: datetime
    data: dict[str, Any]


async def stored_events(database_url: str) -> list[StoredEvent]:
    """Every event in the event log, in (node, seq) order."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT node, seq, type, call_id, time, envelope::text AS envelope FROM events "
            "ORDER BY node, seq"
        )
    finally:
        await connection.close()
    return [
        StoredEvent(
            node=row["node"],
            seq=int(row["seq"]),
            type=row["type"],
            call_id=row["call_id"] or "",
            time=row["time"],
            data=dict(json.loads(row["envelope"])["data"]),
        )
        for row in rows
    ]


async def await_stored(
    database_url: str, kind: str, count: int, within: float = 20.0
) -> list[StoredEvent]:
    """The stored events of type ``kind`` once there are at least ``count`` of them."""
    found: list[StoredEvent] = []
    for _ in range(int(within / 0.2)):
        found = [e for e in await stored_events(database_url) if e.type == kind]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{len(found)} {kind} events stored, expected {count}")


async def cdr_rows(database_url: str) -> dict[str, dict[str, Any]]:
    """Every CDR row by call id, with ``segments`` (their kinds and outcomes, in order)."""
    connection = await asyncpg.connect(database_url)
    try:
        calls = await connection.fetch("SELECT * FROM cdrs")
        segments = await connection.fetch(
            "SELECT call_id, kind, outcome, offers, ended_at FROM cdr_segments "
            "ORDER BY call_id, segment_index"
        )
    finally:
        await connection.close()
    rows = {str(row["call_id"]): {**dict(row.items()), "segments": []} for row in calls}
    for segment in segments:
        rows[str(segment["call_id"])]["segments"].append(dict(segment.items()))
    return rows
