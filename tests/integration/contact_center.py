"""A running contact center for end-to-end tests: the server process, its API, its database, and
the SIPp phones of agents and callers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from ruamel.yaml import YAML

from tests.integration.peers import (
    SCENARIOS,
    RunningServer,
    SippResult,
    free_port,
    run_sipp,
    start_server,
    write_server_config,
)

SIPP_PCAPS = Path("/usr/share/sip-tester")
#: Tokens of the shipped api.yaml.
SUPERVISOR_TOKEN = "change-me-supervisor-token"
ADMIN_TOKEN = "change-me-admin-token"
#: A tree without business hours: what a caller hears does not depend on the time of the test.
TEST_TREE = """\
trees:
  test_line:
    description: Sales line of the end-to-end tests, open at all hours
    start: menu
    nodes:
      menu:
        type: menu
        greet_long: "For sales, press 1."
        choices:
          - dtmf: 1
            set: {department: sales}
            next: sales_queue
        on_failure: goodbye
      sales_queue:
        type: queue
        queue: sales
        attributes: {department: "{department}"}
      goodbye:
        type: hangup
"""


@dataclass
class ContactCenter:
    server: RunningServer
    api: str
    database_url: str
    workdir: Path
    phones: list[subprocess.Popen[str]] = field(default_factory=list)

    # ------------------------------------------------------------------ the API

    async def post(
        self, path: str, body: dict[str, Any] | None = None, token: str = SUPERVISOR_TOKEN
    ) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(headers=_auth(token)) as session,
            session.post(f"{self.api}{path}", json=body or {}) as response,
        ):
            return response.status, await response.json()

    async def get(self, path: str) -> Any:
        async with (
            aiohttp.ClientSession(headers=_auth()) as session,
            session.get(f"{self.api}{path}") as response,
        ):
            assert response.status == 200, await response.text()
            return await response.json()

    @contextlib.asynccontextmanager
    async def event_stream(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The WebSocket event stream, collected into a list while the block runs."""
        events: list[dict[str, Any]] = []
        async with aiohttp.ClientSession(headers=_auth()) as session:
            url = self.api.replace("http://", "ws://") + "/api/events"
            async with session.ws_connect(url, protocols=("cxos.events.v1",)) as socket_:
                hello = await socket_.receive_json(timeout=5)
                assert hello["control"] == "hello", hello

                async def read() -> None:
                    async for message in socket_:
                        frame = json.loads(message.data)
                        if "control" not in frame:
                            events.append(frame)

                reader = asyncio.get_running_loop().create_task(read())
                try:
                    yield events
                finally:
                    reader.cancel()

    # ------------------------------------------------------------------ the database

    async def cdr(self, call_id: str, within: float = 10.0) -> tuple[Any, list[Any]]:
        """The call's closed CDR and its segments, once the event writer has stored them."""
        connection = await asyncpg.connect(self.database_url)
        try:
            for _ in range(int(within / 0.1)):
                row = await connection.fetchrow("SELECT * FROM cdrs WHERE call_id = $1", call_id)
                if row is not None and row["ended_at"] is not None:
                    segments = await connection.fetch(
                        "SELECT * FROM cdr_segments WHERE call_id = $1 ORDER BY segment_index",
                        call_id,
                    )
                    if all(s["ended_at"] is not None for s in segments):
                        return row, list(segments)
                await asyncio.sleep(0.1)
        finally:
            await connection.close()
        raise AssertionError(f"no closed CDR for {call_id} after {within} s")

    # ------------------------------------------------------------------ phones

    async def register(self, user: str, password: str) -> int:
        """Register ``user``'s phone from a fresh port; returns it (the phone answers there)."""
        folder = self.workdir / f"register-{user}"
        folder.mkdir(parents=True)
        users = folder / "users.csv"
        users.write_text(
            f"SEQUENTIAL\n{user};[authentication username={user} password={password}]\n"
        )
        port = free_port()
        scenario = str(SCENARIOS / "agent_register.xml")
        result = await asyncio.to_thread(
            run_sipp,
            self.server.address,
            ["-sf", scenario, "-inf", str(users), "-m", "1", "-p", str(port)],
            folder,
        )
        sipp_ok(result)
        return port

    def phone(self, scenario: str, port: int, name: str) -> subprocess.Popen[str]:
        """An agent's phone on ``port`` playing ``scenario`` (echoing RTP) for one call."""
        folder = self.workdir / name
        folder.mkdir(parents=True)
        command = [
            shutil.which("sipp") or "sipp",
            self.server.address,
            "-sf",
            str(SCENARIOS / scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-mp",
            str(free_port()),
            "-rtp_echo",
            "-m",
            "1",
            "-nostdin",
            "-trace_err",
            "-timeout",
            "50s",
            "-timeout_error",
        ]
        phone = subprocess.Popen(
            command,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.phones.append(phone)
        return phone

    async def call(
        self, scenario: str, number: str, wait_ms: int, captures: Sequence[Path] = ()
    ) -> SippResult:
        """A trunk caller dialling ``number``; ``wait_ms`` is the scenario's -d pause.
        ``captures`` are copied beside SIPp's own ones, into the ``pcap`` folder scenarios play
        from."""
        folder = self.workdir / f"caller-{len(list(self.workdir.glob('caller-*')))}"
        (folder / "pcap").mkdir(parents=True)
        for capture in ("g711a.pcap", "dtmf_2833_1.pcap"):  # what the scenarios play
            shutil.copy(SIPP_PCAPS / capture, folder / "pcap" / capture)
        for path in captures:
            shutil.copy(path, folder / "pcap" / path.name)
        args = ["-sf", str(SCENARIOS / scenario), "-s", number, "-m", "1"]
        args += ["-d", str(wait_ms), "-mp", str(free_port())]
        result = await asyncio.to_thread(run_sipp, self.server.address, args, folder, 60.0)
        sipp_ok(result)
        return result

    def stop(self) -> int:
        for phone in self.phones:
            if phone.poll() is None:
                phone.kill()
                phone.wait(5)
        return self.server.stop()


def _auth(token: str = SUPERVISOR_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sipp_ok(result: SippResult) -> None:
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.file('_errors.log')[-2000:]}"


async def phone_done(phone: subprocess.Popen[str]) -> None:
    out, err = await asyncio.to_thread(phone.communicate, None, 40)
    assert phone.returncode == 0, f"agent phone failed:\n{out[-2000:]}\n{err[-2000:]}"


#: The test dial plan: 100 is the test line, every other number the shipped main menu.
TEST_DIALPLAN = 'numbers:\n  "100": {ivr: test_line}\n  "*": {ivr: main}\n'


def prepare(
    config_dir: Path, queues_yaml: str | None = None, *, dialplan_yaml: str = TEST_DIALPLAN
) -> tuple[int, int, str]:
    """Write the test configuration; returns the SIP port, the API port and the database URL."""
    (config_dir / "ivr" / "test_line.yaml").write_text(TEST_TREE)
    (config_dir / "dialplan.yaml").write_text(dialplan_yaml)
    if queues_yaml is not None:
        (config_dir / "queues.yaml").write_text(queues_yaml)
    port = free_port()
    api_port = free_port(socket.SOCK_STREAM)
    # write_server_config gives the server a private RTP range below the kernel's ephemeral
    # ports, where no peer's socket can take a port between the SDP offer and the bind.
    write_server_config(config_dir, port, {"api": {"port": api_port}})
    settings = YAML(typ="safe").load((config_dir / "server.yaml").read_text())
    return port, api_port, str(settings["storage"]["database_url"])


def start(
    config_dir: Path,
    workdir: Path,
    queues_yaml: str | None = None,
    *,
    dialplan_yaml: str = TEST_DIALPLAN,
) -> ContactCenter:
    port, api_port, database_url = prepare(config_dir, queues_yaml, dialplan_yaml=dialplan_yaml)
    server = start_server(config_dir, port, workdir / "server.log")
    return ContactCenter(
        server=server,
        api=f"http://127.0.0.1:{api_port}",
        database_url=database_url,
        workdir=workdir,
    )


@contextlib.contextmanager
def running_center(
    config_dir: Path,
    workdir: Path,
    queues_yaml: str | None = None,
    *,
    dialplan_yaml: str = TEST_DIALPLAN,
) -> Iterator[ContactCenter]:
    """`start`, then stop, whatever happened: the server must exit cleanly (its log's end tells
    why not)."""
    running = start(config_dir, workdir, queues_yaml, dialplan_yaml=dialplan_yaml)
    try:
        yield running
    finally:
        code = running.stop()
    assert code == 0, f"server exited with {code}:\n{running.server.log()[-4000:]}"


def of_type(events: list[dict[str, Any]], kind: str, **fields: Any) -> list[dict[str, Any]]:
    """The envelopes of type ``kind`` whose data has ``fields``."""
    return [
        e
        for e in events
        if e["type"] == kind and all(e["data"].get(k) == v for k, v in fields.items())
    ]


async def settle(
    events: list[dict[str, Any]], kind: str, count: int = 1, within: float = 15.0, **fields: Any
) -> list[dict[str, Any]]:
    for _ in range(int(within / 0.05)):
        found = of_type(events, kind, **fields)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} {kind} {fields} not seen; got {[e['type'] for e in events]}")


class CrmStub:
    """A CRM's customer look-up endpoint (`GET /customers/{key}`, docs/crm.md): the records it
    knows by key, 404 for anyone else; remembers every key it was asked about."""

    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self.records = records
        self.asked: list[str] = []

    async def customer(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        self.asked.append(key)
        record = self.records.get(key)
        if record is None:
            return web.json_response({"error": "no such customer"}, status=404)
        return web.json_response(record)


@contextlib.asynccontextmanager
async def serving_crm(stub: CrmStub) -> AsyncIterator[int]:
    """Serve `stub` on 127.0.0.1; yields its port."""
    app = web.Application()
    app.router.add_get("/customers/{key}", stub.customer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port(socket.SOCK_STREAM)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()
