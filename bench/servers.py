"""What the bench talks to: its own redis-server and FE processes (free ports,
never the defaults another cluster may use), and MariaDB when one answers."""

from __future__ import annotations

import contextlib
import resource
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import redis

from coordinator.registry import Keys
from frontend import procs

# Never take a port an operator's cluster, a MariaDB or a Redis may be using.
RESERVED_PORTS = frozenset({3306, 6379, 8030, 9020, 9030, 9021, 9031, 9022, 9032})


def bench_port(taken: set[int] | None = None) -> int:
    taken = taken if taken is not None else set()
    while True:
        port = procs.free_port()
        if port not in RESERVED_PORTS and port not in taken:
            taken.add(port)
            return port


def raise_nofile(wanted: int) -> tuple[int, int]:
    """Raise this process's open-files limit (children inherit it); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@dataclass(frozen=True)
class Endpoint:
    name: str
    host: str
    port: int
    user: str = "root"
    password: str = ""

    def connect(self, read_timeout: float = 60, connect_timeout: float = 30) -> pymysql.Connection:
        # autocommit=None: PyMySQL sends no SET AUTOCOMMIT, so both servers see
        # the same handshake + auth + SET NAMES.
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            ssl_disabled=True,
            autocommit=None,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )


@dataclass
class Fe:
    endpoint: Endpoint
    grpc_port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class FeCluster:
    """N FE processes sharing one Redis under a private cluster name."""

    redis_url: str
    nodes: int
    workdir: Path
    ports: set[int]
    name: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:8]}")
    fes: list[Fe] = field(default_factory=list)
    backend: str = ""  # --backend; default: a sqlite directory per FE
    # A command that runs ``frontend.cli`` itself (a profiling launcher): the
    # FE's arguments, from "node" on, are appended to it.
    launcher: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # added to the FEs' environment

    def start(self) -> FeCluster:
        secret = uuid.uuid4().hex
        for i in range(self.nodes):
            mysql_port, grpc_port = bench_port(self.ports), bench_port(self.ports)
            tag = f"{self.name}-fe{i + 1}"
            args = procs.node_command(
                redis_url=self.redis_url,
                cluster=self.name,
                mysql_port=mysql_port,
                grpc_port=grpc_port,
                http_port=0,  # never Doris's 8030
                max_connections=20_000,  # the scaling rows hold 5,000 on one FE
                bind_host="127.0.0.1",
                advertise_host="127.0.0.1",
                cluster_secret=secret,
                backend=self.backend or f"sqlite://{self.workdir / tag}",
            )
            if self.launcher:
                args = [*self.launcher, *args[args.index("node") :]]
            log = self.workdir / f"{tag}.log"
            proc = procs.spawn(args, env={**procs.node_env(), **self.env}, log=log)
            self.fes.append(Fe(Endpoint(f"fe{i + 1}", "127.0.0.1", mysql_port), grpc_port, proc, log))
        for fe in self.fes:
            try:
                procs.wait_port("127.0.0.1", fe.endpoint.port, 60, fe.proc)
            except Exception as e:
                tail = fe.log.read_text(errors="replace")[-2000:] if fe.log.exists() else ""
                raise RuntimeError(f"{fe.endpoint.name} did not start: {e}\n{tail}") from e
        # Every FE must see the others before cross-FE figures mean anything.
        self.wait_members()
        return self

    def _redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5)

    def wait_members(self, timeout: float = 30) -> None:
        keys = Keys(self.name)
        deadline = time.monotonic() + timeout
        with contextlib.closing(self._redis()) as r:
            while time.monotonic() < deadline:
                if r.hlen(keys.fes) >= self.nodes:
                    return
                time.sleep(0.05)
        raise RuntimeError(f"only some of {self.nodes} FEs registered in Redis after {timeout}s")

    def registered(self) -> int:
        """Live connections in this cluster's registry."""
        with contextlib.closing(self._redis()) as r:
            return int(r.hlen(Keys(self.name).conns))

    def wait_registered(self, expected: int, timeout: float = 60) -> int:
        """Wait until the registry holds ``expected`` connections (registration is asynchronous)."""
        deadline = time.monotonic() + timeout
        count = -1
        with contextlib.closing(self._redis()) as r:
            key = Keys(self.name).conns
            while time.monotonic() < deadline:
                count = int(r.hlen(key))
                if count == expected:
                    break
                time.sleep(0.05)
        return count

    def stop(self) -> None:
        for fe in self.fes:
            if fe.proc.poll() is None:
                fe.proc.terminate()
        for fe in self.fes:
            procs.stop(fe.proc, 20)


@dataclass
class Mariadb:
    endpoint: Endpoint
    version: str
    max_connections: int
    threads_connected: int
    pid: int | None


def probe_mariadb(host: str = "127.0.0.1", port: int = 3306) -> Mariadb | str:
    """The MariaDB on host:port (user root, empty password), or why there is none."""
    endpoint = Endpoint("mariadb", host, port)
    try:
        conn = endpoint.connect(connect_timeout=2, read_timeout=10)
    except pymysql.MySQLError as e:
        return f"no MariaDB answers on {host}:{port} as root with an empty password ({e.args[-1]})"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION(), @@max_connections")
            version, max_conn = cur.fetchone()
            cur.execute("SHOW STATUS LIKE 'Threads_connected'")
            threads = int(cur.fetchone()[1])
            pid = None
            with contextlib.suppress(pymysql.MySQLError):
                cur.execute("SELECT @@pid_file")
                pid_file = Path(cur.fetchone()[0])
                if pid_file.exists():
                    pid = int(pid_file.read_text().strip())
    finally:
        conn.close()
    return Mariadb(endpoint, str(version), int(max_conn), threads, pid)
