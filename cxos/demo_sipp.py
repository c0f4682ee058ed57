"""The SIPp processes of ``cxos demo``: started in folders of their own, all ended on exit."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import socket
from pathlib import Path


class DemoError(Exception):
    """Why the demo cannot run, in words for the user."""


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DemoError(f"--server {address!r}: expected host:port")
    return host.strip("[]"), int(port)


def free_port(host: str = "127.0.0.1") -> int:
    """A UDP port free on ``host`` for a SIPp phone or its RTP."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class SippGroup:
    """Every SIPp process the demo starts, each in a folder of its own; all ended on exit."""

    def __init__(self, workdir: Path, server: str, local_ip: str) -> None:
        self._workdir = workdir
        self._server = server
        self._local_ip = local_ip
        self._phones: list[asyncio.subprocess.Process] = []
        self._callers: list[asyncio.subprocess.Process] = []
        self._pending: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SippGroup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_all()

    def folder(self, name: str) -> Path:
        folder = self._workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _command(self, args: list[str]) -> list[str]:
        # -nostdin: no keyboard control; -timeout_error: a global timeout is a failure.
        return [
            shutil.which("sipp") or "sipp",
            self._server,
            "-i",
            self._local_ip,
            *args,
            "-nostdin",
        ]

    async def _spawn(self, folder: Path, args: list[str]) -> asyncio.subprocess.Process:
        # A session of its own: Ctrl-C reaches the demo, which then ends SIPp in order.
        return await asyncio.create_subprocess_exec(
            *self._command(args),
            cwd=folder,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=(folder / "stderr.log").open("wb"),
            start_new_session=True,
        )

    async def run_once(self, folder: Path, args: list[str], limit: float) -> tuple[int, str]:
        """Run one SIPp to its end; its exit code and error log."""
        seconds = max(1, int(limit))
        process = await self._spawn(folder, [*args, "-timeout", f"{seconds}s", "-timeout_error"])
        self._phones.append(process)
        try:
            code = await asyncio.wait_for(process.wait(), limit + 5)
        except TimeoutError:
            code = -1
        finally:
            await _end(process)
            self._phones.remove(process)
        return code, (folder / "stderr.log").read_text(errors="replace").strip()[-500:]

    def start(self, folder: Path, args: list[str]) -> None:
        task = asyncio.get_running_loop().create_task(self._start(folder, args, self._phones))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def start_caller(self, folder: Path, args: list[str]) -> None:
        task = asyncio.get_running_loop().create_task(self._start(folder, args, self._callers))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _start(
        self, folder: Path, args: list[str], into: list[asyncio.subprocess.Process]
    ) -> None:
        into.append(await self._spawn(folder, args))

    async def started(self) -> None:
        """Wait until every SIPp asked for has been started."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def running_callers(self) -> int:
        self._callers = [p for p in self._callers if p.returncode is None]
        return len(self._callers)

    async def stop_all(self) -> None:
        await self.started()
        processes, self._phones, self._callers = self._phones + self._callers, [], []
        await asyncio.gather(*(_end(p) for p in processes))


async def _end(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 3.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
