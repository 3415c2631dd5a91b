"""Test hosts in network namespaces (issue 16): Redis and every FE on an address
of its own, and network faults between them.

Layout (all of it inside namespaces this module makes; the root namespace gets
no address, no route and no interface)::

    <prefix>-hub   bridge br0, 10.213.7.1 (the test's clients) and one relay
                   address per FE (10.213.7.12x: a delaying TCP relay in front
                   of that FE's gRPC port, which the FE advertises to its peers)
    <prefix>-redis eth0 10.213.7.10            redis-server
    <prefix>-feN   eth0 10.213.7.(20+N)        one FE (MySQL 9030, gRPC 9020, HTTP 8080)

The test process stays in the root namespace; a thread reaches the hub with
``setns(2)`` (per thread on Linux): ``with lab.inside(): pymysql.connect(...)``.
Faults are iptables rules inside the host namespaces, by peer address: cut,
one-way cut and random loss (``-m statistic``); latency comes from the relays
(``tc netem`` is not available on these kernels). Every run uses a unique name
prefix; leftovers of dead runs are removed at start, and ``close()`` removes the
namespaces (their veths go with them) and every process in them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import redis

from frontend import procs
from tests.support import REPO, Fe, wait_for

SUBNET = "10.213.7"  # a private /24 that exists only on the bridge inside our namespaces
HUB_IP = f"{SUBNET}.1"
REDIS_IP = f"{SUBNET}.10"
REDIS_PORT = 6379  # on REDIS_IP inside its namespace, never on 127.0.0.1
MYSQL_PORT, GRPC_PORT, HTTP_PORT = 9030, 9020, 8080
PREFIX = "fcnet"  # every namespace of every run starts with it: fcnet<pid>x<hex>-<host>
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian: apt-get install iproute2 iptables)"
    probe = f"{PREFIX}probe{os.getpid()}"
    try:
        _run("ip", "netns", "add", probe)
        _run("ip", "netns", "exec", probe, "iptables", "-S")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return f"cannot make a network namespace with iptables in it: {e}"
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return None


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _remove_namespace(ns: str) -> None:
    pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
    _run("ip", "netns", "del", ns, check=False)


def remove_leftovers() -> list[str]:
    """Namespaces of earlier runs whose test process is gone (a crash, a SIGKILL)."""
    removed = []
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        ns = line.split()[0] if line.strip() else ""
        m = re.match(rf"{PREFIX}(\d+)x", ns)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _remove_namespace(ns)
            removed.append(ns)
    return removed


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    relay_ip: str | None = None
    rules: list[tuple[str, list[str]]] = field(default_factory=list)  # (tag, iptables rule spec)

    @property
    def addresses(self) -> list[str]:
        """Every address this host's traffic is seen under by the others."""
        return [self.ip] + ([self.relay_ip] if self.relay_ip else [])

    def exec_args(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *args]

    def iptables(self, *args: str) -> None:
        _run(*self.exec_args(["iptables", "-w", *args]))


class Relay:
    """A TCP relay in the hub namespace: listens on ``listen`` and forwards to
    ``target``, holding every chunk ``delay`` seconds in each direction
    (so the round trip gains ``2 * delay``). ``delay`` may change at any time."""

    def __init__(self, lab: Lab, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.lab = lab
        self.listen = listen
        self.target = target
        self.delay = 0.0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen, reuse_address=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target, local_addr=(self.listen[0], 0))
        except OSError:
            writer.close()
            return
        self.connections += 1
        for src, dst in ((reader, up_w), (up_r, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                dst.write(chunk)
                await dst.drain()

        sender = asyncio.create_task(send())
        try:
            while chunk := await src.read(65536):
                queue.put_nowait((time.monotonic() + self.delay, chunk))
                if sender.done():
                    break
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            queue.put_nowait((0.0, b""))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sender, max(1.0, 2 * self.delay + 1))
            dst.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()


class Lab:
    """Namespaces, a bridge, relays and iptables faults for one test."""

    def __init__(self) -> None:
        self.prefix = f"{PREFIX}{os.getpid()}x{uuid.uuid4().hex[:4]}"
        self.hub = f"{self.prefix}-hub"
        self.hosts: dict[str, Host] = {}
        self.relays: dict[str, Relay] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve_relays, name="netns-relays", daemon=True)
        self._started = False

    # ------------------------------------------------------------ topology

    def start(self) -> None:
        remove_leftovers()
        _run("ip", "netns", "add", self.hub)
        self._started = True
        _run("ip", "-n", self.hub, "link", "set", "lo", "up")
        _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.hub, "addr", "add", f"{HUB_IP}/24", "dev", "br0")
        _run("ip", "-n", self.hub, "link", "set", "br0", "up")
        self._thread.start()

    def add_host(self, name: str, ip: str, relay_ip: str | None = None) -> Host:
        ns = f"{self.prefix}-{name}"
        _run("ip", "netns", "add", ns)
        peer = f"v-{name}"
        _run("ip", "link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", self.hub)
        _run("ip", "-n", self.hub, "link", "set", peer, "master", "br0", "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        if relay_ip:
            _run("ip", "-n", self.hub, "addr", "add", f"{relay_ip}/24", "dev", "br0")
        host = self.hosts[name] = Host(name, ns, ip, relay_ip)
        return host

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the block's socket calls from the hub namespace (this thread only)."""
        own = f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net"
        saved = os.open(own, os.O_RDONLY)
        try:
            _setns(f"/run/netns/{self.hub}")
            yield
        finally:
            try:
                if _libc.setns(saved, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "cannot return to the test's own network namespace")
            finally:
                os.close(saved)

    def enter(self) -> None:
        """Move the calling thread into the hub for good (client worker threads)."""
        _setns(f"/run/netns/{self.hub}")

    def spawn(
        self, host: Host, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        proc = procs.spawn(host.exec_args(args), env=env, log=log)
        self.procs.append(proc)
        return proc

    # ------------------------------------------------------------ relays

    def _serve_relays(self) -> None:
        self.enter()
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def add_relay(self, name: str, listen: tuple[str, int], target: tuple[str, int]) -> Relay:
        relay = Relay(self, listen, target)
        asyncio.run_coroutine_threadsafe(relay.start(), self._loop).result(10)
        self.relays[name] = relay
        return relay

    def set_delay(self, name: str, seconds: float) -> None:
        """One-way delay per chunk through ``name``'s relay (RTT + 2 * seconds)."""
        self.relays[name].delay = seconds

    # ------------------------------------------------------------ faults

    def _drop(self, host: Host, chain: str, flag: str, peers: list[str], tag: str, extra: list[str] = ()) -> None:  # type: ignore[assignment]
        for addr in peers:
            spec = [chain, flag, addr, *extra, "-j", "DROP"]
            host.iptables("-I", *spec)
            host.rules.append((tag, spec))

    def one_way(self, a: str, b: str) -> None:
        """``a``'s packets to ``b`` are dropped (inside ``a``); ``b``'s packets reach ``a``."""
        self._drop(self.hosts[a], "OUTPUT", "-d", self.hosts[b].addresses, f"{a}>{b}")

    def cut(self, a: str, b: str) -> None:
        """No packet between ``a`` and ``b`` in either direction."""
        for x, y in ((a, b), (b, a)):
            hx, hy = self.hosts[x], self.hosts[y]
            self._drop(hx, "OUTPUT", "-d", hy.addresses, f"{x}>{y}")
            self._drop(hx, "INPUT", "-s", hy.addresses, f"{y}>{x}")

    def loss(self, a: str, b: str, probability: float) -> None:
        """Drop each packet between ``a`` and ``b`` with ``probability``, both directions (rules in ``a``)."""
        extra = ["-m", "statistic", "--mode", "random", "--probability", str(probability)]
        ha, hb = self.hosts[a], self.hosts[b]
        self._drop(ha, "OUTPUT", "-d", hb.addresses, f"loss {a}>{b}", extra)
        self._drop(ha, "INPUT", "-s", hb.addresses, f"loss {b}>{a}", extra)

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """Remove the rules between ``a`` and ``b`` (both given), every rule of ``a``, or every rule."""
        for host in self.hosts.values():
            keep = []
            for tag, spec in host.rules:
                names = set(re.split(r"[ >]", tag)) - {"loss"}
                hit = a is None or (a in names and (b is None or b in names))
                if hit:
                    host.iptables("-D", *spec)
                else:
                    keep.append((tag, spec))
            host.rules = keep

    def faults(self) -> list[str]:
        return sorted({tag for h in self.hosts.values() for tag, _ in h.rules})

    # ------------------------------------------------------------ cleanup

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):
                procs.stop(proc, 5)
        if self._thread.is_alive():
            for relay in self.relays.values():
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(relay.stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        for ns in [h.ns for h in self.hosts.values()] + ([self.hub] if self._started else []):
            _remove_namespace(ns)

    def leftovers(self) -> list[str]:
        listed = _run("ip", "netns", "list", check=False).stdout
        return [line.split()[0] for line in listed.splitlines() if line.startswith(self.prefix)]


# ---------------------------------------------------------------- a cluster on it


@dataclass
class NetFe(Fe):
    lab: Lab | None = None
    host: Host | None = None
    log_mark: int = 0  # where this incarnation's log starts

    @property
    def address(self) -> str:
        """The FE column: the relay address this FE advertises."""
        assert self.host is not None
        return f"{self.host.relay_ip}:{GRPC_PORT}"

    def connect(self, user: str = "root", password: str = "", **kw: Any) -> pymysql.Connection:
        assert self.lab is not None and self.host is not None
        with self.lab.inside():
            return pymysql.connect(
                host=self.host.ip,
                port=MYSQL_PORT,
                user=user,
                password=password,
                ssl_disabled=True,
                autocommit=True,
                connect_timeout=kw.pop("connect_timeout", 10),
                read_timeout=kw.pop("read_timeout", 60),
                **kw,
            )

    def metrics(self) -> dict[str, float]:
        assert self.lab is not None and self.host is not None
        with self.lab.inside():
            body = urllib.request.urlopen(f"http://{self.host.ip}:{HTTP_PORT}/metrics", timeout=5).read().decode()
        out: dict[str, float] = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def fd_count(self) -> int:
        """Open file descriptors of the FE's Python process."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


class NetCluster:
    """Redis and FEs, each in its own namespace, on one bridge."""

    def __init__(self, lab: Lab, **extra: Any) -> None:
        self.lab = lab
        self.name = f"t{uuid.uuid4().hex[:8]}"
        self.secret = uuid.uuid4().hex
        self.extra = extra
        self.fes: list[NetFe] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="fecluster-netns-"))
        self.redis_host = lab.add_host("redis", REDIS_IP)
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.start_redis()

    @property
    def redis_url(self) -> str:
        return f"redis://{REDIS_IP}:{REDIS_PORT}/0"

    def start_redis(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        args = [
            binary,
            "--bind",
            REDIS_IP,
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        args += ["--dir", str(self.workdir), "--daemonize", "no"]
        self.redis_proc = self.lab.spawn(self.redis_host, args, self.workdir / "redis.log")
        wait_for(lambda: self.redis_call(lambda r: r.ping()), 10, what="redis-server in its namespace")

    def restart_redis(self) -> None:
        """Stop Redis and start it again, empty."""
        assert self.redis_proc is not None
        procs.stop(self.redis_proc, 5)
        self.start_redis()

    def redis_call(self, fn: Any) -> Any:
        with self.lab.inside():
            client = redis.Redis(host=REDIS_IP, port=REDIS_PORT, decode_responses=True, socket_timeout=5)
            try:
                return fn(client)
            finally:
                client.close()

    def registry_ids(self) -> set[int]:
        return {int(k) for k in self.redis_call(lambda r: r.hkeys(f"fecluster:{{{self.name}}}:conns"))}

    def start_fe(self, wait: bool = True, **overrides: Any) -> NetFe:
        i = len(self.fes) + 1
        name = f"fe{i}"
        host = self.lab.add_host(name, f"{SUBNET}.{20 + i}", relay_ip=f"{SUBNET}.{120 + i}")
        self.lab.add_relay(name, (host.relay_ip or "", GRPC_PORT), (host.ip, GRPC_PORT))
        flags: dict[str, Any] = {
            "redis_url": self.redis_url,
            "cluster": self.name,
            "bind_host": host.ip,
            "advertise_host": host.relay_ip,
            "mysql_port": MYSQL_PORT,
            "grpc_port": GRPC_PORT,
            "http_port": HTTP_PORT,
            "cluster_secret": self.secret,
            "backend": f"sqlite://{self.workdir / name}",
            "log_level": "DEBUG" if os.environ.get("FECLUSTER_TEST_DEBUG") else "INFO",
            **self.extra,
            **overrides,
        }
        fe = NetFe(name, MYSQL_PORT, GRPC_PORT, None, self.workdir / f"{name}.log", [], flags, lab=self.lab, host=host)  # type: ignore[arg-type]
        self._spawn(fe)
        self.fes.append(fe)
        if wait:
            self.wait_ready(fe)
        return fe

    def _spawn(self, fe: NetFe) -> None:
        assert fe.host is not None
        fe.log_mark = len(fe.logs()) if fe.log.exists() else 0
        fe.args = procs.node_command(**fe.flags)
        fe.proc = self.lab.spawn(fe.host, fe.args, fe.log, env=procs.node_env())

    def wait_ready(self, fe: NetFe, timeout: float = 30) -> None:
        """Wait for this incarnation's "up" log line."""

        def up() -> bool:
            return not fe.alive() or " up: server id " in fe.logs()[fe.log_mark :]

        wait_for(up, timeout, what=f"{fe.name} to start")
        if not fe.alive():
            raise AssertionError(f"{fe.name} exited with {fe.proc.returncode}:\n{fe.logs()[fe.log_mark :]}")

    def restart_fe(self, fe: NetFe, hard: bool = False, wait: bool = True) -> None:
        """Stop an FE (SIGTERM, or SIGKILL with ``hard``) and start it again on the same address."""
        if hard:
            fe.proc.kill()
            fe.proc.wait()
        else:
            procs.stop(fe.proc, 15)
        self._spawn(fe)
        if wait:
            self.wait_ready(fe)

    def stop(self) -> None:
        for fe in self.fes:
            with contextlib.suppress(Exception):
                procs.stop(fe.proc, 15)
        if self.redis_proc is not None:
            procs.stop(self.redis_proc, 5)


__all__ = ["REPO", "Lab", "NetCluster", "NetFe", "remove_leftovers", "unavailable"]
