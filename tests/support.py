"""Test helpers: real redis-server, real FE processes, real clients."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pymysql
import redis

from coordinator.registry import Keys
from frontend import procs
from frontend.config import Config

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as e:  # noqa: BLE001 - keep polling through transient errors
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: last={last!r}")


@dataclass
class Fe:
    name: str
    mysql_port: int
    grpc_port: int
    proc: subprocess.Popen[bytes]
    log: Path
    args: list[str]
    flags: dict[str, Any] = field(default_factory=dict)
    http_port: int = 0  # 0: the HTTP port is off (start it with http_port=0 to turn it off)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def address(self) -> str:
        """The value of the FE column."""
        return f"127.0.0.1:{self.grpc_port}"

    def connect(self, user: str = "root", password: str = "", **kw: Any) -> pymysql.Connection:
        return pymysql.connect(
            host="127.0.0.1",
            port=self.mysql_port,
            user=user,
            password=password,
            ssl_disabled=True,
            autocommit=True,
            connect_timeout=10,
            read_timeout=kw.pop("read_timeout", 60),
            **kw,
        )

    def query(self, sql: str, user: str = "root", password: str = "") -> tuple[tuple[Any, ...], ...]:
        with contextlib.closing(self.connect(user, password)) as c, c.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Cluster:
    redis_url: str
    name: str
    secret: str
    fes: list[Fe] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fecluster-test-")))
    extra: dict[str, Any] = field(default_factory=dict)

    def start_fe(self, wait: bool = True, **overrides: Any) -> Fe:
        i = len(self.fes) + 1
        flags: dict[str, Any] = {
            "redis_url": self.redis_url,
            "cluster": self.name,
            "bind_host": "127.0.0.1",
            "advertise_host": "127.0.0.1",
            "cluster_secret": self.secret,
            "backend": f"sqlite://{self.workdir / f'fe{i}'}",
            "log_level": "DEBUG" if os.environ.get("FECLUSTER_TEST_DEBUG") else "INFO",
            **self.extra,
            **overrides,
        }
        fe = self._spawn(f"fe{i}", flags)
        self.fes.append(fe)
        if wait:
            self.wait_ready(fe)
        return fe

    def _spawn(self, name: str, flags: dict[str, Any]) -> Fe:
        mysql_port, grpc_port = procs.free_port(), procs.free_port()
        http_port = flags["http_port"] if "http_port" in flags else procs.free_port()
        ports = {"mysql_port": mysql_port, "grpc_port": grpc_port, "http_port": http_port}  # 0: off, never 8030
        args = procs.node_command(**{**flags, **ports})
        log = self.workdir / f"{name}.log"
        proc = procs.spawn(args, env=procs.node_env(), log=log)
        return Fe(name, mysql_port, grpc_port, proc, log, args, flags, http_port)

    def wait_ready(self, fe: Fe, attempts: int = 3) -> None:
        """Wait for the FE's "up" log line. A free port can be taken by someone
        else between choosing it and binding it: then start again on new ports."""
        for attempt in range(attempts):
            try:
                wait_for(lambda: not fe.alive() or " up: server id " in fe.logs(), 30, what=f"{fe.name} to start")
            except AssertionError as e:
                raise AssertionError(f"{fe.name} did not start: {e}\n{fe.logs()}") from e
            if fe.alive():
                return
            logs = fe.logs().lower()
            if attempt + 1 < attempts and ("address already in use" in logs or "cannot bind" in logs):
                fresh = self._spawn(fe.name, fe.flags)
                fe.mysql_port, fe.grpc_port, fe.http_port = fresh.mysql_port, fresh.grpc_port, fresh.http_port
                fe.proc, fe.args = fresh.proc, fresh.args
                continue
            raise AssertionError(f"{fe.name} exited with {fe.proc.returncode}:\n{fe.logs()}")

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=5)

    def registry_ids(self) -> set[int]:
        with contextlib.closing(self.redis()) as r:
            return {int(k) for k in r.hkeys(Keys(self.name).conns)}

    def stop(self) -> None:
        for fe in self.fes:
            procs.stop(fe.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)  # nothing left in $TMPDIR


def new_cluster(redis_url: str, n: int, **extra: Any) -> Cluster:
    cluster = Cluster(redis_url, f"t{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, extra=extra)
    for _ in range(n):
        cluster.start_fe(wait=False)
    for fe in cluster.fes:
        cluster.wait_ready(fe)
    return cluster


class Running:
    """Run a statement in a thread; ``result()`` gives (outcome, seconds)."""

    def __init__(self, conn: pymysql.Connection, sql: str) -> None:
        self.conn = conn
        self.sql = sql
        self.outcome: Any = None
        self.elapsed = 0.0
        self.finished_at = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        try:
            with self.conn.cursor() as cur:
                cur.execute(self.sql)
                self.outcome = cur.fetchall()
        except Exception as e:  # noqa: BLE001
            self.outcome = e
        self.finished_at = time.monotonic()
        self.elapsed = self.finished_at - start

    def join(self, timeout: float = 10) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.sql!r} still running after {timeout}s"
        return self.outcome


def wait_running(fe: Fe, conn_id: int, timeout: float = 10) -> tuple[Any, ...]:
    """Wait until ``conn_id`` shows Command=Query in processlist seen from ``fe``."""

    def running() -> tuple[Any, ...] | None:
        for row in fe.query("SHOW FULL PROCESSLIST"):
            if row[1] == conn_id and row[7] == "Query":
                return row
        return None

    return wait_for(running, timeout, what=f"connection {conn_id} to run a statement")


SEED_COLUMNS = [
    "CurrentConnected", "Id", "User", "Host", "LoginTime", "Catalog", "Db",
    "Command", "Time", "State", "QueryId", "Info", "FE", "CloudCluster",
]  # fmt: skip


def fails(conn: pymysql.Connection, sql: str) -> tuple[int | None, str]:
    """Run ``sql`` expecting a MySQL error; -> (code, message)."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    except pymysql.err.MySQLError as e:
        return error_code(e), str(e.args[1]) if len(e.args) > 1 else ""
    raise AssertionError(f"{sql!r} succeeded")


def kill_during(
    watch: Fe, victim: pymysql.Connection, killer: pymysql.Connection, kill_sql: str, sql: str = "SELECT SLEEP(30)"
) -> tuple[Any, float]:
    """Start ``sql`` on ``victim``, wait until ``watch`` shows it running, send
    ``kill_sql`` on ``killer``; -> (the victim's outcome, seconds from KILL sent to return)."""
    run = Running(victim, sql)
    wait_running(watch, victim.thread_id())
    sent = time.monotonic()
    with killer.cursor() as cur:
        cur.execute(kill_sql)
    outcome = run.join()
    return outcome, run.finished_at - sent


def error_code(outcome: Any) -> int | None:
    if isinstance(outcome, pymysql.err.MySQLError) and outcome.args:
        return int(outcome.args[0])
    return None


@contextlib.contextmanager
def stopped(fe: Fe) -> Iterator[None]:
    """SIGSTOP an FE for the duration of the block."""
    fe.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        fe.signal(signal.SIGCONT)


def node_config(redis_url: str, cluster: str | None = None) -> Config:
    """An in-process node's configuration: loopback, free ports, no HTTP (never Doris's 8030)."""
    return Config(
        redis_url=redis_url,
        cluster=cluster or f"t{uuid.uuid4().hex[:8]}",
        cluster_secret="s",
        bind_host="127.0.0.1",
        mysql_port=procs.free_port(),
        grpc_port=procs.free_port(),
        http_port=0,
        shutdown_grace=0.5,
    )
