"""The PostgreSQL side of ``nox -s scale``: a primary, a synchronous streaming replica and
PgBouncer in transaction mode, started in a temporary directory from the machine's own binaries.

PostgreSQL 15 comes from ``pg_config --bindir``, PgBouncer from Debian's package (1.18). Both
run as the ``postgres`` OS user when this runs as root, because PgBouncer refuses root and
PostgreSQL refuses it too. Everything started here is stopped by ``stop()``, and the directory
removed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# PgBouncer 1.18 refuses a startup parameter it does not track unless told to ignore it;
# asyncpg sends extra_float_digits, SQLAlchemy's dialect nothing more.
IGNORED_STARTUP_PARAMETERS = "extra_float_digits"
POOL_SIZE = 2
REPLICA_NAME = "leaddb_replica"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@functools.cache
def _bindir() -> Path:
    if shutil.which("pg_config"):
        found = subprocess.run(
            ["pg_config", "--bindir"], check=True, capture_output=True, text=True
        ).stdout.strip()
        return Path(found)
    # Debian's server package without its pg_config: the newest installed major version.
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    if not installed:
        raise RuntimeError("no PostgreSQL binaries (pg_config --bindir, /usr/lib/postgresql)")
    return installed[-1].parent


@dataclass
class PostgresTopology:
    """Ports and directories of what ``start()`` started; URLs for leaddb and the tests."""

    root: Path
    primary_port: int
    replica_port: int
    bouncer_port: int
    database: str = "leaddb_scale"
    _bouncer: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def primary_dir(self) -> Path:
        return self.root / "primary"

    @property
    def replica_dir(self) -> Path:
        return self.root / "replica"

    def url(self, port: int, database: str | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database or self.database}"

    @property
    def primary_url(self) -> str:
        return self.url(self.primary_port)

    @property
    def replica_url(self) -> str:
        return self.url(self.replica_port)

    @property
    def bouncer_url(self) -> str:
        return self.url(self.bouncer_port)

    @property
    def failover_url(self) -> str:
        """Both servers, for a client that must find whichever one takes writes."""
        return (
            f"postgresql://postgres@127.0.0.1:{self.primary_port},127.0.0.1:{self.replica_port}"
            f"/{self.database}?target_session_attrs=read-write"
        )

    def pg_ctl(self, *args: str, data: Path | None = None) -> None:
        _as_postgres([str(_bindir() / "pg_ctl"), "-D", str(data or self.primary_dir), *args])

    def stop(self) -> None:
        if self._bouncer is not None:
            self._bouncer.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._bouncer.wait(timeout=10)
            if self._bouncer.poll() is None:
                self._bouncer.kill()
        for data in (self.replica_dir, self.primary_dir):
            if (data / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.CalledProcessError):
                    self.pg_ctl("stop", "-m", "immediate", "-w", data=data)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_postgres(command: list[str]) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    # No pipes: a server that pg_ctl starts inherits them, and reading them would never end.
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def start(*, replica: bool = True) -> PostgresTopology:
    """Primary, synchronous replica, PgBouncer; raises (and stops what it started) on failure.

    ``replica=False``: the primary and PgBouncer only (tests/scale/run_through_pooler.py).
    """
    root = Path(tempfile.mkdtemp(prefix="ldbscale", dir="/tmp"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    topology = PostgresTopology(root, _free_port(), _free_port(), _free_port())
    try:
        _start_primary(topology)
        if replica:
            _start_replica(topology)
        _start_bouncer(topology)
    except BaseException:
        topology.stop()
        raise
    return topology


def _start_primary(topology: PostgresTopology) -> None:
    bindir = _bindir()
    data = topology.primary_dir
    _as_postgres(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(_server_conf(topology.primary_port, topology.root))
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write("host replication postgres 127.0.0.1/32 trust\n")
    topology.pg_ctl("start", "-w", "-l", str(topology.root / "primary.log"))
    _psql(topology.primary_port, f"CREATE DATABASE {topology.database}")


def _psql(port: int, sql: str) -> None:
    where = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres"]
    _as_postgres([str(_bindir() / "psql"), "-X", *where, "-v", "ON_ERROR_STOP=1", "-c", sql])


def _server_conf(port: int, root: Path) -> str:
    return (
        f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
        "max_connections = 200\nwal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n"
        "fsync = off\nshared_buffers = 32MB\n"
    )


def _start_replica(topology: PostgresTopology) -> None:
    data = topology.replica_dir
    _as_postgres(
        [
            str(_bindir() / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(topology.primary_port),
            "-U",
            "postgres",
            "-D",
            str(data),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        ]
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(_server_conf(topology.replica_port, topology.root))
    # -R wrote primary_conninfo; the name is what synchronous_standby_names waits for.
    with (data / "postgresql.auto.conf").open("a") as auto:
        auto.write(
            f"primary_conninfo = 'host=127.0.0.1 port={topology.primary_port} user=postgres "
            f"application_name={REPLICA_NAME}'\n"
        )
    topology.pg_ctl("start", "-w", "-l", str(topology.root / "replica.log"), data=data)
    # Synchronous once the replica is there (before, every commit would wait for it): a commit
    # returns once the replica has it, so a failover loses no acknowledged commit
    # (docs/scaling.md says what asynchronous replication can lose).
    _psql(topology.primary_port, f"ALTER SYSTEM SET synchronous_standby_names = '{REPLICA_NAME}'")
    _psql(topology.primary_port, "SELECT pg_reload_conf()")


def _start_bouncer(topology: PostgresTopology) -> None:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError("pgbouncer is not installed (apt-get install -y pgbouncer)")
    root = topology.root
    _write(root / "userlist.txt", '"postgres" ""\n')
    _write(
        root / "pgbouncer.ini",
        f"[databases]\n* = host=127.0.0.1 port={topology.primary_port}\n\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {topology.bouncer_port}\n"
        f"unix_socket_dir = {root}\nauth_type = trust\nauth_file = {root}/userlist.txt\n"
        # Other logins (the tenancy suite's plain login, made by the test) are looked up on
        # the server as postgres, so any login of the server passes through (still trust).
        "auth_user = postgres\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\nmax_client_conn = 500\n"
        f"ignore_startup_parameters = {IGNORED_STARTUP_PARAMETERS}\n"
        f"logfile = {root}/pgbouncer.log\n",
    )
    command = [binary, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    topology._bouncer = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", topology.bouncer_port), timeout=0.5),
        ):
            return
        if topology._bouncer.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"pgbouncer did not start: {(root / 'pgbouncer.log').read_text()[-2000:]}")
