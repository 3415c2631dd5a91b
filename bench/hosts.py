"""Cross-FE KILL QUERY to a backend statement over 3 hosts, beside MariaDB's own local KILL (issue 25).

    python -m bench.hosts [--iterations 100] [--quick] [--json PATH]

Starts three private ``mariadbd`` (``tests.mariadb``: free ports, never the
shared server on 3306) standing in for the FEs of a MySQL-protocol cluster,
a private Redis, and 2 FEs with ``--backend
mysql://fesvc:...@h1,h2,h3?shared_users=0``. Three victim sessions on FE 1
are pinned one to each host (opened one after another: the host with the
fewest sessions); the killer is a session on FE 2, so every KILL crosses FEs
(FE 2 -> Peer.Kill -> FE 1 -> ``KILL QUERY <thread>`` on that host's control
connection).

One sample, on the next host in turn: the victim sends ``SELECT SLEEP(30)``;
once the host's own processlist shows its thread in ``Query`` the killer
sends ``KILL QUERY <victim's FE id>``; the sample is the time from just
before that send until the thread's statement ended on its host: the host's
own processlist (a direct monitor connection) is polled until the thread is
in ``Sleep``, and its ``TIME_MS`` there (time since the statement ended) is
taken off the poll's arrival, so the polling's own lag stays out of the
figure. The time until the victim's client got its 1317 is kept beside it.

MariaDB's own local KILL is measured in the same run, interleaved sample by
sample (``bench.workloads.interleave``): on each of the same three servers, a
direct victim and a direct killer on that server, timed the same way.

``measure()`` gives ``bench.report`` rows (the default bench can add them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from bench import workloads
from bench.backend import PASSWORD, USER, _backend_thread_running, _wait
from bench.report import Row, judge, ms, ratio, table
from bench.runinfo import Progress
from bench.servers import Endpoint, FeCluster, bench_port
from bench.stats import Summary, summarize
from frontend import procs
from tests.mariadb import MariaDB

SECTION = "KILL QUERY to a backend statement, 3 hosts"
HOSTS = 3
WARMUP = 3  # samples of each op dropped (one per host)


@dataclass
class Target:
    """One victim: its session, the statement's thread on its host, and how to kill it."""

    host: str  # host:port
    victim: workloads.Victim
    thread: int  # the thread running the victim's statements on that host
    killer: pymysql.cursors.Cursor  # sends KILL QUERY <victim.id>
    monitor: pymysql.cursors.Cursor  # a direct connection to the host: its own processlist


class BackendKill:
    """A ``workloads.Op``: one KILL QUERY on the next target in turn; the sample
    (ms) is until the host's processlist shows the thread out of Query. The
    victim's own 1317 time is kept in ``answered`` and per host in ``by_host``."""

    def __init__(self, targets: list[Target], warmup: int) -> None:
        self.targets = targets
        self.warmup = warmup  # as interleave's: the first samples are not kept
        self.i = 0
        self.taken = 0
        self.answered: list[float] = []
        self.by_host: dict[str, list[float]] = {t.host: [] for t in targets}
        self.missed = 0
        self.other_outcomes: dict[str, int] = {}

    def __call__(self) -> float | None:
        t = self.targets[self.i % len(self.targets)]
        self.i += 1
        t.victim.start()
        _wait(lambda: _backend_thread_running(t.monitor, t.thread))
        sent = time.perf_counter()
        t.killer.execute(f"KILL QUERY {t.victim.id}")
        stopped = _stopped_at(t.monitor, t.thread)
        if not t.victim.done.wait(workloads.KILL_DEADLINE):
            self.missed += 1
            while not t.victim.done.wait(1.0):
                t.killer.execute(f"KILL QUERY {t.victim.id}")
            return None
        if t.victim.code != workloads.INTERRUPTED:
            key = str(t.victim.code)
            self.other_outcomes[key] = self.other_outcomes.get(key, 0) + 1
            return None
        sample = (stopped - sent) * 1000
        self.taken += 1
        if self.taken > self.warmup:
            self.answered.append((t.victim.ended - sent) * 1000)
            self.by_host[t.host].append(sample)
        return sample

    def close(self) -> None:
        for t in self.targets:
            t.victim.stop()


def _stopped_at(monitor: pymysql.cursors.Cursor, thread: int, timeout: float = 10) -> float:
    """When (``perf_counter``) ``thread`` left its statement: polled until the
    host's processlist shows it in ``Sleep``; its ``TIME_MS`` there counts from
    the moment the statement ended (so the poll's own lag is not in the figure,
    only the last answer's way back, a fraction of a millisecond)."""
    sql = f"SELECT COMMAND, TIME_MS FROM information_schema.processlist WHERE ID = {int(thread)}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        monitor.execute(sql)
        row = monitor.fetchone()
        seen = time.perf_counter()
        if row is None:
            raise RuntimeError(f"thread {thread} is gone from its host's processlist")
        if row[0] == "Sleep":
            return seen - float(row[1]) / 1000
    raise TimeoutError(f"thread {thread} did not leave its statement within {timeout}s")


@dataclass
class HostsResult:
    rows: list[Row]
    facts: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _start_servers() -> list[MariaDB]:
    """One after another: mariadb-install-db run in parallel clash over their temporary tables."""
    started: list[MariaDB] = []
    try:
        for _ in range(HOSTS):
            started.append(MariaDB(USER, PASSWORD))
    except BaseException:
        for s in started:
            s.stop()
        raise
    return started


def _drop(conn: pymysql.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def measure(say: Callable[[str], None] | None = None, iterations: int = 100) -> HostsResult:
    """Start 3 mariadbd, Redis and 2 FEs, take ``iterations`` samples of each
    op interleaved, stop everything; -> rows for ``bench.report.table``."""
    say = say or (lambda message: print(message, file=sys.stderr, flush=True))
    workdir = Path(tempfile.mkdtemp(prefix="fecluster-bench-hosts-"))
    ports: set[int] = set()
    servers: list[MariaDB] = []
    redis = None
    cluster: FeCluster | None = None
    conns: list[pymysql.Connection] = []
    ops: dict[str, BackendKill] = {}
    facts: dict[str, Any] = {}
    notes: list[str] = []
    try:
        say(f"starting {HOSTS} private mariadbd")
        servers = _start_servers()
        facts["mariadb"] = str(servers[0].query("SELECT VERSION()")[0][0])
        redis_dir = workdir / "redis"
        redis_dir.mkdir()
        redis = procs.start_redis(bench_port(ports), redis_dir)
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in servers)
        cluster = FeCluster(
            redis.url, 2, workdir, ports, backend=f"mysql://{USER}:{PASSWORD}@{hosts}?shared_users=0"
        ).start()
        say(f"2 FEs over {hosts}, logs in {workdir}")
        fe1, fe2 = (fe.endpoint for fe in cluster.fes)
        direct = {
            f"127.0.0.1:{s.port}": Endpoint(f"mariadb{i + 1}", "127.0.0.1", s.port) for i, s in enumerate(servers)
        }

        def connect(endpoint: Endpoint) -> pymysql.Connection:
            conn = endpoint.connect(read_timeout=120)
            conns.append(conn)
            return conn

        monitors = {host: connect(e).cursor() for host, e in direct.items()}
        killer = connect(fe2).cursor()
        fe_targets, maria_targets = [], []
        for _ in range(HOSTS):  # one after another: each lands on the host with the fewest sessions
            conn = connect(fe1)
            with conn.cursor() as cur:
                cur.execute("SELECT @@port, @@pseudo_thread_id")  # relayed: the session's own host and thread
                port, thread = (int(v) for v in cur.fetchone())
            host = f"127.0.0.1:{port}"
            fe_targets.append(Target(host, workloads.Victim(conn), thread, killer, monitors[host]))
        placed = sorted(t.host for t in fe_targets)
        if placed != sorted(direct):
            raise RuntimeError(f"the victims were not spread one per host: {placed}")
        for host, endpoint in direct.items():
            conn = connect(endpoint)
            maria_targets.append(
                Target(host, workloads.Victim(conn), conn.thread_id(), connect(endpoint).cursor(), monitors[host])
            )
        facts["fe_victim_threads"] = {t.host: t.thread for t in fe_targets}
        facts["maria_victim_threads"] = {t.host: t.thread for t in maria_targets}
        ops = {"fe.hosts.kill": BackendKill(fe_targets, WARMUP), "maria.hosts.kill": BackendKill(maria_targets, WARMUP)}
        pids = [fe.pid for fe in cluster.fes] + [redis.proc.pid] + [s.proc.pid for s in servers if s.proc]
        usage = workloads.settle(pids)
        if usage >= 5.0:
            notes.append(f"bench.hosts: the FEs, Redis and mariadbd still used {usage:.0f}% CPU when it started")
        say(f"KILL QUERY to a backend statement over {HOSTS} hosts: cross-FE vs MariaDB local, {iterations} each")
        samples = workloads.interleave(dict(ops), iterations, WARMUP)
    finally:
        for op in ops.values():
            op.close()
        for conn in conns:
            _drop(conn)
        if cluster is not None:
            cluster.stop()
        if redis is not None:
            redis.stop()
        for s in servers:
            s.stop()

    summaries: dict[str, Summary] = {}
    for key, op in ops.items():
        by_host = {h: round(summarize(v).p50, 3) for h, v in op.by_host.items()}
        summaries[key] = summarize(
            samples[key], missed=op.missed, other_outcomes=op.other_outcomes, p50_by_host=by_host
        )
        summaries[key + ".answered"] = summarize(op.answered)
        if op.missed:
            notes.append(f"{key}: {op.missed} KILL(s) left the victim running past {workloads.KILL_DEADLINE}s")
        if op.other_outcomes:
            notes.append(f"{key}: victim outcomes other than 1317: {op.other_outcomes}")
        say(f"  {key}: p50 {ms(summaries[key].p50)} ms, p99 {ms(summaries[key].p99)} ms (stopped on the host)")
    return HostsResult(rows(summaries), facts, notes)


def rows(s: dict[str, Summary]) -> list[Row]:
    fe, maria = s.get("fe.hosts.kill"), s.get("maria.hosts.kill")
    r = ratio(fe.p50 if fe else None, maria.p50 if maria else None)
    result, detail = judge((None if r is None else r <= 4, f"p50 {r:.1f}x MariaDB" if r is not None else ""))
    return [
        Row(
            "hosts_kill_stopped",
            SECTION,
            "cross-FE KILL QUERY -> the statement ended on its host",
            fe=fe,
            mariadb=maria,
            mariadb_note="MariaDB: local KILL QUERY on the same hosts",
            target="p50 <= 4x MariaDB local",
            result=result,
            detail=detail,
        ),
        Row(
            "hosts_kill_answered",
            SECTION,
            "  same, until the victim's client has its 1317",
            fe=s.get("fe.hosts.kill.answered"),
            mariadb=s.get("maria.hosts.kill.answered"),
        ),
    ]


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m bench.hosts", description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=None, help="samples of each figure (default 100)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 samples")
    parser.add_argument("--json", metavar="PATH", help="write the rows and facts here")
    args = parser.parse_args(argv)
    n = args.iterations or (20 if args.quick else 100)
    started = time.monotonic()
    result = measure(Progress(), n)
    print(f"fecluster bench.hosts  {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
    print(
        f"3 private mariadbd {result.facts.get('mariadb', '?')} as the hosts, 2 FEs (--backend mysql://h1,h2,h3); "
        f"{n} samples each, interleaved; times in ms; client: PyMySQL\n"
    )
    print(table(result.rows))
    for key in ("fe.hosts.kill", "maria.hosts.kill"):
        row = next(r for r in result.rows if r.key == "hosts_kill_stopped")
        summary = row.fe if key.startswith("fe") else row.mariadb
        if summary is not None:
            print(f"{key} p50 by host: {summary.extra.get('p50_by_host')}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"run took {time.monotonic() - started:.0f}s")
    if args.json:
        document = {"rows": [r.to_json() for r in result.rows], "facts": result.facts, "notes": result.notes}
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
