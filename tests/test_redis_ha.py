"""Redis beyond one server (issue 7): FEs on Sentinel across a failover, and on
a Redis Cluster. Real redis-server processes on free ports, real FEs, PyMySQL."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pytest
import redis
from redis.cluster import RedisCluster

from coordinator.redis_client import connect, parse_sentinel_url
from frontend import procs
from tests.support import Cluster, Fe, Running, error_code, wait_for, wait_running

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason=procs.REDIS_HINT)

MASTER = "fecluster"
KILL_FAST = 5.0  # seconds: a KILL QUERY must interrupt SLEEP(30) well before it ends
RESERVED = {3306, 6379, 26379, 9020, 9030}


def _port() -> int:
    """A free port that is none of the well-known ones a developer may be running."""
    return wait_for(lambda: (p := procs.free_port()) not in RESERVED and p, 5, 0, "a free port")


def _redis(directory: Path, extra: list[str] | None = None) -> procs.RedisServer:
    directory.mkdir(parents=True, exist_ok=True)
    return procs.start_redis(_port(), directory, extra or [])


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2)


def _conns_key(cluster: Cluster) -> str:
    return f"fecluster:{{{cluster.name}}}:conns"


def _kill_query_across(victim_fe: Fe, killer_fe: Fe, victim: pymysql.Connection | None = None) -> float:
    """A SELECT SLEEP(30) on ``victim_fe`` killed from ``killer_fe``; returns the victim's wait."""
    own = victim is None
    victim = victim or victim_fe.connect()
    try:
        run = Running(victim, "SELECT SLEEP(30)")
        wait_running(killer_fe, victim.thread_id())
        with contextlib.closing(killer_fe.connect()) as killer, killer.cursor() as cur:
            sent = time.monotonic()
            cur.execute(f"KILL QUERY {victim.thread_id()}")
        assert error_code(run.join(KILL_FAST + 5)) == 1317, run.outcome
        waited = run.finished_at - sent
        assert waited < KILL_FAST, f"the victim returned {waited:.2f}s after KILL QUERY"
        # KILL QUERY leaves the connection usable.
        with victim.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchall() == ((1,),)
        return waited
    finally:
        if own:
            victim.close()


# ---------------------------------------------------------------- URL forms


def test_url_forms() -> None:
    assert parse_sentinel_url("redis+sentinel://:pw@s1:26380,s2,[::1]:5000/mymaster/2") == (
        [("s1", 26380), ("s2", 26379), ("::1", 5000)],
        "mymaster",
        2,
        "pw",
        False,
    )
    assert parse_sentinel_url("rediss+sentinel://s1/m")[1:] == ("m", 0, None, True)
    rc = connect("redis://u:p@h1:7000,h2:7001/0", timeout=1, cluster=True)
    assert sorted(rc.nodes_manager.startup_nodes) == ["h1:7000", "h2:7001"]
    assert rc.connection_kwargs["password"] == "p"


@pytest.mark.parametrize(
    ("url", "cluster", "message"),
    [
        ("http://h:1", False, "unsupported Redis URL scheme"),
        ("redis://h1,h2", False, "need --redis-cluster"),
        ("redis+sentinel://s1:26379", False, "needs a master name"),
        ("redis+sentinel://s1/m", True, "exclude each other"),
        ("redis://h1:7000/3", True, "only has db 0"),
        ("redis+sentinel://s1/m?nope=1", False, "unsupported option"),
        ("redis+sentinel://s1/m?ssl_ca_certs=/ca.pem", False, "TLS options need"),
    ],
)
def test_bad_urls_say_why(url: str, cluster: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connect(url, timeout=1, cluster=cluster)


# ---------------------------------------------------------------- Sentinel


@dataclass
class SentinelSetup:
    primary: procs.RedisServer
    replica: procs.RedisServer
    sentinel_ports: list[int]
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def master_port(self) -> int:
        _host, port = _client(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def stop(self) -> None:
        for proc in self.sentinels:
            procs.stop(proc, 5)
        self.replica.stop()
        self.primary.stop()


def _start_sentinel(directory: Path, port: int, primary_port: int) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "sentinel.conf"  # sentinel rewrites its config file: it must be writable
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 1\n"
        f"sentinel down-after-milliseconds {MASTER} 1000\n"
        f"sentinel failover-timeout {MASTER} 3000\n"
    )
    proc = procs.spawn(["redis-server", str(conf), "--sentinel"], log=directory / "sentinel.log")
    procs.wait_port("127.0.0.1", port, 10, proc)
    return proc


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[SentinelSetup]:
    """One primary, one replica, one sentinel (quorum 1) with short timeouts."""
    primary = _redis(tmp_path / "primary", ["--repl-diskless-sync-delay", "0"])
    replica = _redis(tmp_path / "replica", ["--replicaof", "127.0.0.1", str(primary.port)])
    setup = SentinelSetup(primary, replica, [_port()])
    try:
        wait_for(
            lambda: _client(replica.port).info("replication")["master_link_status"] == "up",
            10,
            what="the replica to sync",
        )
        for i, port in enumerate(setup.sentinel_ports):
            setup.sentinels.append(_start_sentinel(tmp_path / f"sentinel{i}", port, primary.port))
        # A failover needs a replica the sentinel already knows about.
        wait_for(
            lambda: _client(setup.sentinel_ports[0]).sentinel_slaves(MASTER),
            15,
            0.1,
            what="the sentinel to discover the replica",
        )
        yield setup
    finally:
        setup.stop()


@pytest.mark.slow
@needs_redis
def test_sentinel_failover_keeps_cross_fe_kill_routing(
    sentinel_setup: SentinelSetup, make_cluster: Callable[..., Cluster]
) -> None:
    s = sentinel_setup
    cluster = make_cluster(2, s.url)
    fe1, fe2 = cluster.fes

    # Before the failover: both ways, and a connection that will outlive it.
    _kill_query_across(fe1, fe2)
    _kill_query_across(fe2, fe1)
    survivor = fe2.connect()
    try:
        wait_for(
            lambda: _client(s.primary.port).hexists(_conns_key(cluster), survivor.thread_id()),
            10,
            what="the survivor's registration",
        )
        # Everything written so far reached the replica before the primary dies.
        assert _client(s.primary.port).execute_command("WAIT", 1, 5000) == 1

        s.primary.proc.kill()  # SIGKILL: no goodbye to anyone
        s.primary.proc.wait(5)
        started = time.monotonic()
        wait_for(lambda: s.master_port() == s.replica.port, 20, 0.1, what="the sentinel to promote the replica")
        failover = time.monotonic() - started
        assert _client(s.replica.port).info("replication")["role"] == "master"

        # New connections register in the new primary ...
        fresh = fe1.connect()
        try:
            wait_for(
                lambda: _client(s.replica.port).hexists(_conns_key(cluster), fresh.thread_id()),
                20,
                0.1,
                what=f"the new connection's registration on the new primary (failover took {failover:.1f}s)",
            )
            # ... and every FE's view of the cluster comes back from it.
            wait_for(
                lambda: {r[12] for r in fe2.query("SHOW PROCESSLIST")} == {fe1.address, fe2.address},
                20,
                0.1,
                what="fe2 to list both FEs after the failover",
            )
            # Kills route across FEs after the failover: new connections ...
            _kill_query_across(fe1, fe2, fresh)
            _kill_query_across(fe2, fe1)
            # ... and the one that lived through it.
            _kill_query_across(fe2, fe1, survivor)
        finally:
            fresh.close()
    finally:
        survivor.close()
    for fe in cluster.fes:
        assert fe.alive(), fe.logs()


# ---------------------------------------------------------------- Redis Cluster


@pytest.fixture
def redis_cluster_url(tmp_path: Path) -> Iterator[str]:
    """Three primaries, no replicas, every slot covered; the URL lists all three as startup nodes."""
    servers: list[procs.RedisServer] = []
    try:
        for i in range(3):
            extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                str(_port()),
                "--cluster-node-timeout",
                "2000",
            ]
            servers.append(_redis(tmp_path / f"node{i}", extra))
        nodes = [f"127.0.0.1:{s.port}" for s in servers]
        out = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-yes"], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stdout + out.stderr
        wait_for(
            lambda: all(_client(s.port).cluster("info")["cluster_state"] == "ok" for s in servers),
            20,
            0.05,
            what="cluster_state:ok on every node",
        )
        yield "redis://" + ",".join(nodes) + "/0"
    finally:
        for server in servers:
            server.stop()


@pytest.mark.slow
@needs_redis
def test_redis_cluster_kill_and_processlist(redis_cluster_url: str, make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3, redis_cluster_url, redis_cluster=True)
    addresses = {fe.address for fe in cluster.fes}

    waits = [_kill_query_across(cluster.fes[i], cluster.fes[(i + 1) % 3]) for i in range(3)]
    assert max(waits) < KILL_FAST

    conns = [fe.connect() for fe in cluster.fes]
    try:
        ids = {c.thread_id() for c in conns}
        for fe in cluster.fes:

            def listed(fe: Fe = fe) -> bool:
                rows = fe.query("SHOW PROCESSLIST")
                return ids <= {r[1] for r in rows} and addresses <= {r[12] for r in rows}

            wait_for(listed, 10, 0.05, what=f"{fe.name}'s processlist to list every FE's connections")
        # The registry is in the cluster, on the one primary owning the cluster's hash tag.
        first = redis_cluster_url.removeprefix("redis://").split(",")[0]
        host, port = first.split(":")
        with contextlib.closing(RedisCluster(host=host, port=int(port), decode_responses=True)) as rc:
            wait_for(
                lambda: ids <= {int(k) for k in rc.hkeys(_conns_key(cluster))},
                10,
                what="the connections in the cluster's registry",
            )
            owners = {
                rc.get_node_from_key(_conns_key(cluster)).name,
                rc.get_node_from_key(f"fecluster:{{{cluster.name}}}:fes").name,
            }
            assert len(owners) == 1
    finally:
        for c in conns:
            c.close()
    for fe in cluster.fes:
        assert fe.alive(), fe.logs()
