"""``cxos demo``: simulated agents and callers for a running server, driven with SIPp.

Simulated agents register their phones (SIPp answering processes, digest auth with the agents'
credentials from the configuration), are logged in through the REST API, then answer, echo the
caller's audio and hang up after a random talk time. Callers arrive as a Poisson process (one
SIPp per call). Every second a line tells what the supervisor API sees, so a newcomer can watch
queues, agents and KPIs move on the wallboard without any phone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import aiohttp

from config.loader import Configuration, default_config_dir, load_configuration
from config.source import ConfigError
from cxos.demo_sipp import DemoError, SippGroup, free_port, is_loopback, split_host_port

logger = logging.getLogger(__name__)

SCENARIOS = Path(__file__).parent / "demo_scenarios"
#: Where Debian's sip-tester package installs the RFC 4733 digit captures SIPp plays.
SIPP_PCAPS = Path("/usr/share/sip-tester")
#: Menu keys of the shipped main IVR: sales, support, billing.
MENU_KEYS = ("1", "2", "3")
#: How long a registration lasts; the demo refuses to run longer than this.
REGISTER_EXPIRES = 3600
#: Seconds an agent's phone rings before it answers.
RING_SECONDS = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    server: str
    api: str
    token: str
    agents: int
    rate: float
    duration: float
    talk: float
    patience: float
    numbers: tuple[str, ...]
    #: Numbers that lead to an IVR: their callers press a menu key.
    menu_numbers: frozenset[str]
    local_ip: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedAgent:
    agent_id: str
    sip_user: str
    password: str


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxos demo",
        description="place simulated calls into a running CXOS server and answer them with "
        "simulated agents (needs SIPp)",
    )
    parser.add_argument("--config", type=Path, default=None, help="the server's configuration")
    parser.add_argument("--server", default=None, help="SIP host:port (default: from server.yaml)")
    parser.add_argument("--api", default=None, help="REST API URL (default: from server.yaml)")
    parser.add_argument("--token", default=None, help="supervisor or admin token (api.yaml)")
    parser.add_argument("--agents", type=int, default=3, help="simulated agents (default 3)")
    parser.add_argument("--rate", type=float, default=0.5, help="calls per second (Poisson)")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds to place calls")
    parser.add_argument("--talk", type=float, default=20.0, help="mean talk time, seconds")
    parser.add_argument("--patience", type=float, default=90.0, help="seconds before abandoning")
    parser.add_argument(
        "--number",
        action="append",
        default=None,
        help="number to dial (repeatable; default: numbers that lead straight to a queue, "
        "else the IVR's number with the menu keys in turn)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        configuration = load_configuration(args.config or default_config_dir())
        options, agents = _options(args, configuration)
        stop = StopRequest()
        try:
            return asyncio.run(_demo(options, agents, stop))
        except asyncio.CancelledError:
            if stop.signal is None:
                raise
            said = "interrupted" if stop.signal == signal.SIGINT else "terminated"
            sys.stderr.write(f"cxos demo: {said}; every SIPp process was stopped\n")
            return 128 + stop.signal
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        return 1
    except DemoError as exc:
        sys.stderr.write(f"cxos demo: {exc}\n")
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the demo's own handler was in place
        sys.stderr.write("cxos demo: interrupted; every SIPp process was stopped\n")
        return 130


def _options(
    args: argparse.Namespace, configuration: Configuration
) -> tuple[DemoOptions, list[SimulatedAgent]]:
    if shutil.which("sipp") is None:
        raise DemoError("SIPp is not installed (`apt install sip-tester`, or see sipp.sf.net)")
    if args.agents < 1 or args.rate <= 0 or args.duration <= 0 or args.talk <= 0:
        raise DemoError("--agents, --rate, --duration and --talk must be positive")
    if args.duration + args.patience > REGISTER_EXPIRES - 60:
        raise DemoError(f"--duration plus --patience must stay under {REGISTER_EXPIRES - 60} s")
    settings = configuration.server
    udp = next((s for s in settings.sip.listen if s.transport == "udp"), None)
    if udp is None and args.server is None:
        raise DemoError("the configuration has no UDP listener; pass --server host:port")
    # Only loopback unless the user names another address: the demo must not spray calls at
    # whatever address a configuration happens to listen on.
    default_host = udp.host if udp is not None and is_loopback(udp.host) else "127.0.0.1"
    server = args.server or f"{_bracket(default_host)}:{udp.port if udp else 5060}"
    api_host = settings.api.host if is_loopback(settings.api.host) else "127.0.0.1"
    api = (args.api or f"http://{_bracket(api_host)}:{settings.api.port}").rstrip("/")
    token = args.token or next(
        (
            t.token
            for t in configuration.api.tokens
            if t.token is not None and t.role.value in ("supervisor", "admin")
        ),
        None,
    )
    if token is None:
        raise DemoError("no supervisor token in api.yaml holds its secret; pass --token")
    agents = [
        SimulatedAgent(agent_id=a.id, sip_user=a.sip_user, password=a.password)
        for a in configuration.agents
        if a.password is not None
    ][: args.agents]
    if len(agents) < args.agents:
        raise DemoError(
            f"{args.agents} agents asked for, but agents.yaml has only {len(agents)} with a "
            "plain password (the demo registers their phones)"
        )
    dialplan = configuration.dialplan
    if args.number:
        numbers = tuple(args.number)
    else:
        direct = [n for n, e in dialplan.numbers.items() if e.queue is not None and n != "*"]
        ivr = [n for n, e in dialplan.numbers.items() if e.ivr is not None and n != "*"]
        numbers = tuple(direct) or tuple(ivr[:1]) or ("100",)
    unrouted = [n for n in numbers if dialplan.entry_for(n) is None]
    if unrouted:
        raise DemoError(f"the dialplan has no route for {', '.join(unrouted)}; pass --number")
    menu_numbers = frozenset(n for n in numbers if (e := dialplan.entry_for(n)) and e.ivr)
    host, _ = split_host_port(server)
    return (
        DemoOptions(
            server=server,
            api=api,
            token=token,
            agents=args.agents,
            rate=args.rate,
            duration=args.duration,
            talk=args.talk,
            patience=args.patience,
            numbers=numbers,
            menu_numbers=menu_numbers,
            local_ip="::1" if ":" in host and is_loopback(host) else _local_ip(host),
        ),
        agents,
    )


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _local_ip(server_host: str) -> str:
    if is_loopback(server_host):
        return "127.0.0.1"
    family = socket.AF_INET6 if ":" in server_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((server_host, 9))  # no packet is sent: this only picks the route
        return str(probe.getsockname()[0])


def _render(name: str, folder: Path, **values: object) -> Path:
    text = Template((SCENARIOS / name).read_text()).substitute(
        {k: str(v) for k, v in values.items()}
    )
    target = folder / name
    target.write_text(text)
    return target


class Api:
    """The few REST calls the demo needs (docs/api.md)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self._session = session
        self._base = base

    async def get(self, path: str) -> Any:
        async with self._session.get(f"{self._base}{path}") as response:
            if response.status != 200:
                raise DemoError(f"GET {path}: HTTP {response.status} {await response.text()}")
            return await response.json()

    async def post(self, path: str) -> int:
        async with self._session.post(f"{self._base}{path}", json={}) as response:
            return response.status


class StopRequest:
    """Ctrl-C or SIGTERM, remembered as well as delivered as a cancellation.

    SIPp runs in sessions of its own, so the demo must stop it through its clean-up. A cancel
    that arrives just as an awaited subprocess or HTTP exchange finishes can be absorbed on its
    way up (Python 3.11's `asyncio.wait_for`), so the traffic loop also looks at the request.
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None

    def request(self, received: signal.Signals, task: asyncio.Task[int]) -> None:
        self.signal = received
        task.cancel()

    def check(self) -> None:
        if self.signal is not None:
            raise asyncio.CancelledError


async def _demo(options: DemoOptions, agents: list[SimulatedAgent], stop: StopRequest) -> int:
    main_task = asyncio.current_task()
    if main_task is not None:
        loop = asyncio.get_running_loop()
        for received in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(received, stop.request, received, main_task)
    headers = {"Authorization": f"Bearer {options.token}"}
    timeout = aiohttp.ClientTimeout(total=5)
    with tempfile.TemporaryDirectory(prefix="cxos-demo-") as workdir:
        async with (
            aiohttp.ClientSession(headers=headers, timeout=timeout) as session,
            SippGroup(Path(workdir), options.server, options.local_ip) as sipp,
        ):
            api = Api(session, options.api)
            await _check_api(api, options.api)
            #: Each agent logged in, with the port their phone registered from.
            logged_in: list[tuple[SimulatedAgent, int]] = []
            callers: set[str] = set()
            try:
                await _start_agents(options, agents, api, sipp, logged_in)
                await _run_traffic(options, api, sipp, callers, stop)
                await _drain(options, api, sipp, logged_in, stop)
            finally:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, DemoError):
                    await _hang_up(api, sipp, callers)
                for agent, _ in logged_in:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        await api.post(f"/api/agents/{agent.agent_id}/logout")
                await sipp.stop_all()
                # Expires 0 removes only the binding of the same Contact (RFC 3261 §10.2.2):
                # unregister from the port the phone answered on, now that it is free.
                for agent, port in logged_in:
                    with contextlib.suppress(DemoError):
                        await _register(options, agent, sipp, port, expires=0)
    return 0


async def _check_api(api: Api, base: str) -> None:
    try:
        await api.get("/api/queues")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DemoError(
            f"the CXOS API at {base} does not answer ({exc}); is `cxos run` up?"
        ) from exc


async def _register(
    options: DemoOptions, agent: SimulatedAgent, sipp: SippGroup, port: int, expires: int
) -> None:
    folder = sipp.folder(f"register-{agent.sip_user}-{expires}")
    scenario = _render("agent_register.xml", folder, expires=expires)
    users = folder / "users.csv"
    users.write_text(
        f"SEQUENTIAL\n{agent.sip_user};"
        f"[authentication username={agent.sip_user} password={agent.password}]\n"
    )
    code, errors = await sipp.run_once(
        folder, ["-sf", str(scenario), "-inf", str(users), "-m", "1", "-p", str(port)], 8.0
    )
    if code != 0:
        if "timed out" in errors or code < 0:
            why = "no answer to REGISTER; is `cxos run` listening there?"
        elif "403" in errors or "401" in errors:
            why = "the server refused the password of agents.yaml"
        else:
            why = errors.splitlines()[-1] if errors else f"SIPp exited with {code}"
        raise DemoError(
            f"agent {agent.agent_id} ({agent.sip_user}) could not register at {options.server}: "
            f"{why}"
        )


async def _start_agents(
    options: DemoOptions,
    agents: list[SimulatedAgent],
    api: Api,
    sipp: SippGroup,
    logged_in: list[tuple[SimulatedAgent, int]],
) -> None:
    talk_ms = options.talk * 1000
    for agent in agents:
        port = free_port(host=options.local_ip)
        await _register(options, agent, sipp, port, expires=REGISTER_EXPIRES)
        folder = sipp.folder(f"agent-{agent.sip_user}")
        scenario = _render(
            "agent_answer.xml",
            folder,
            sip_user=agent.sip_user,
            ring_ms=int(RING_SECONDS * 1000),
            talk_min_ms=int(talk_ms * 0.5),
            talk_max_ms=int(talk_ms * 1.5),
        )
        media_port = str(free_port(host=options.local_ip))
        sipp.start(folder, ["-sf", str(scenario), "-p", str(port), "-mp", media_port, "-rtp_echo"])
        status = await api.post(f"/api/agents/{agent.agent_id}/login")
        if status not in (202, 409):  # 409: already logged in
            raise DemoError(f"logging in {agent.agent_id} through the API failed: HTTP {status}")
        logged_in.append((agent, port))
        logger.info("agent %s (%s) registered and logged in", agent.agent_id, agent.sip_user)


async def _run_traffic(
    options: DemoOptions, api: Api, sipp: SippGroup, callers: set[str], stop: StopRequest
) -> None:
    rng = random.Random()
    # Menu callers take the keys in turn, so that every branch of the menu gets calls even in a
    # short demo (a random key left whole queues idle now and then).
    menu_keys = itertools.cycle(MENU_KEYS)
    loop = asyncio.get_running_loop()
    started = loop.time()
    next_call = started + rng.expovariate(options.rate)
    next_report = started + 1.0
    placed = 0
    warned = False
    while True:
        stop.check()
        now = loop.time()
        if now >= started + options.duration:
            break
        if now >= next_call:
            callers.add(_place_call(options, sipp, rng, menu_keys, placed))
            placed += 1
            # Poisson arrivals: exponential gaps between calls.
            next_call += rng.expovariate(options.rate)
        if now >= next_report:
            queued = await _report(api, placed, sipp.running_callers())
            next_report += 1.0
            if (
                not warned
                and not queued
                and placed >= 3
                and now - started > 20
                and options.menu_numbers
            ):
                warned = True
                logger.warning(
                    "no caller has reached a queue yet: the IVR may be outside business hours "
                    "or on a holiday. Add a number that goes straight to a queue to "
                    'dialplan.yaml (for example "200": {queue: sales}) and pass --number 200'
                )
        await asyncio.sleep(
            max(0.0, min(next_call, next_report, started + options.duration) - loop.time())
        )
    logger.info("demo over: %d calls placed", placed)
    await _report(api, placed, sipp.running_callers())


async def _drain(
    options: DemoOptions,
    api: Api,
    sipp: SippGroup,
    logged_in: list[tuple[SimulatedAgent, int]],
    stop: StopRequest,
) -> None:
    """Log the agents out and let the calls they are on end (a logout waits for the call)."""
    for agent, _ in logged_in:
        await api.post(f"/api/agents/{agent.agent_id}/logout")
    ids = {agent.agent_id for agent, _ in logged_in}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.talk * 1.5 + RING_SECONDS + 5.0
    while loop.time() < deadline:
        stop.check()
        agents = (await api.get("/api/agents"))["agents"]
        if all(a["state"] == "logged_out" for a in agents if a["agent_id"] in ids):
            break
        await asyncio.sleep(0.5)
    logger.info("agents logged out; ending %d waiting callers", sipp.running_callers())


async def _hang_up(api: Api, sipp: SippGroup, callers: set[str]) -> None:
    """End the demo's calls still in the server through the API, so the server sends each
    caller its BYE: a SIPp process that is merely killed would leave its call behind."""
    await sipp.started()
    for attempt in range(60):  # each caller answers its BYE and exits within moments
        if sipp.running_callers() == 0:
            return
        # Listed again every half second: a call placed a moment ago may not be listed yet.
        if attempt % 5 == 0:
            for call in (await api.get("/api/calls"))["calls"]:
                if call.get("caller_id") in callers:
                    status = await api.post(f"/api/calls/{call['call_id']}/hangup")
                    logger.debug(
                        "hang-up of call %s (%s): HTTP %d", call["call_id"], call["state"], status
                    )
        await asyncio.sleep(0.1)


def _place_call(
    options: DemoOptions, sipp: SippGroup, rng: random.Random, menu_keys: Iterator[str], index: int
) -> str:
    """Start one caller; returns its caller ID."""
    folder = sipp.folder(f"caller-{index}")
    number = rng.choice(options.numbers)
    caller_id = f"555{rng.randrange(1000000, 9999999)}"
    keypress = "<!-- no menu: the number leads straight to a queue -->"
    comment = "The number leads straight to a queue."
    if number in options.menu_numbers:
        key = next(menu_keys)
        # The menu is read after the welcome prompt; the key is an RFC 4733 telephone-event.
        keypress = (
            '<pause milliseconds="5000"/>\n  <nop><action><exec play_pcap_audio="'
            f'{SIPP_PCAPS / f"dtmf_2833_{key}.pcap"}"/></action></nop>'
        )
        comment = f"About 5 s into the IVR's menu it keys {key}."
    scenario = _render(
        "caller.xml",
        folder,
        caller_id=caller_id,
        keypress=keypress,
        keypress_comment=comment,
        patience_ms=int(options.patience * 1000),
    )
    ports = [str(free_port(host=options.local_ip)) for _ in range(2)]
    sipp.start_caller(
        folder, ["-sf", str(scenario), "-s", number, "-m", "1", "-p", ports[0], "-mp", ports[1]]
    )
    return caller_id


async def _report(api: Api, placed: int, in_progress: int) -> int:
    """One status line from the supervisor API; returns how many calls the queues were offered."""
    try:
        queues = (await api.get("/api/queues"))["queues"]
        agents = (await api.get("/api/agents"))["agents"]
        kpis = (await api.get("/api/kpis/queues"))["queues"]
    except (aiohttp.ClientError, TimeoutError, DemoError) as exc:
        sys.stdout.write(f"{time.strftime('%H:%M:%S')} API unavailable: {exc}\n")
        return 0
    waiting = " ".join(f"{q['queue_id']}={q['waiting']}" for q in queues)
    states = " ".join(f"{a['agent_id']}:{a['state']}" for a in agents)
    answered = sum(int(k.get("answered") or 0) for k in kpis)
    offered = sum(int(k.get("offered") or 0) for k in kpis)
    sys.stdout.write(
        f"{time.strftime('%H:%M:%S')} placed {placed} in progress {in_progress} | waiting "
        f"{waiting} | offered {offered} answered {answered} | {states}\n"
    )
    sys.stdout.flush()
    return offered + sum(int(q["waiting"]) for q in queues)
