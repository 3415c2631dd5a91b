"""FEs over a MariaDB backend vs the same MariaDB directly (issue 12's speed rows).

    python -m bench.backend [--quick] [--json PATH]

Starts a private ``mariadbd`` on a free port (``tests.mariadb``: never the
shared server on 3306), a private Redis and 2 FEs with ``--backend
mysql://...`` over it, then measures, with the same client code both ways:

- SELECT 1 round trip (the FE answers it itself) and a text point select
  (relayed to the backend on the session's pinned connection);
- a prepared point select (mysql-connector, binary protocol: COM_STMT_*);
- point-select throughput with 16 client threads (PyMySQL, one connection
  each, spread over the FEs) for a fixed time;
- KILL QUERY from the other FE until the backend's thread has stopped (the
  server's own processlist shows the thread no longer in Query), vs MariaDB's
  own KILL QUERY on a direct connection, timed the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql

from bench.servers import Endpoint, FeCluster
from bench.stats import Summary, summarize
from frontend import procs
from tests.mariadb import MariaDB

USER, PASSWORD = "fesvc", "bench-pw"
ROWS = 10_000


def _timed(n: int, body: Callable[[int], Any]) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        body(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


def select1(endpoint: Endpoint, n: int) -> Summary:
    with contextlib.closing(endpoint.connect()) as conn, conn.cursor() as cur:
        for _ in range(50):
            cur.execute("SELECT 1")
        return summarize(_timed(n, lambda i: (cur.execute("SELECT 1"), cur.fetchall())))


def point_select(endpoint: Endpoint, n: int) -> Summary:
    with contextlib.closing(endpoint.connect()) as conn, conn.cursor() as cur:
        for i in range(50):
            cur.execute(f"SELECT v FROM bench.t WHERE id = {i + 1}")
        return summarize(
            _timed(n, lambda i: (cur.execute(f"SELECT v FROM bench.t WHERE id = {i % ROWS + 1}"), cur.fetchall()))
        )


def prepared_point_select(endpoint: Endpoint, n: int) -> Summary:
    import mysql.connector

    conn = mysql.connector.connect(
        host=endpoint.host, port=endpoint.port, user=endpoint.user, password=endpoint.password, use_pure=True
    )
    try:
        cur = conn.cursor(prepared=True)
        sql = "SELECT v FROM bench.t WHERE id = ?"
        for i in range(50):
            cur.execute(sql, (i + 1,))
            cur.fetchall()
        return summarize(_timed(n, lambda i: (cur.execute(sql, (i % ROWS + 1,)), cur.fetchall())))
    finally:
        conn.close()


def throughput(endpoints: list[Endpoint], threads: int, seconds: float) -> float:
    """Point selects per second over ``threads`` connections (round robin over ``endpoints``)."""
    conns = [endpoints[i % len(endpoints)].connect() for i in range(threads)]
    counts = [0] * threads
    stop = threading.Event()
    start_gate = threading.Barrier(threads + 1)

    def worker(k: int) -> None:
        with conns[k].cursor() as cur:
            start_gate.wait()
            i = k
            while not stop.is_set():
                cur.execute(f"SELECT v FROM bench.t WHERE id = {i % ROWS + 1}")
                cur.fetchall()
                counts[k] += 1
                i += threads

    workers = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    start_gate.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join(30)
    elapsed = time.perf_counter() - began
    for c in conns:
        c.close()
    return sum(counts) / elapsed


def _backend_thread_running(monitor: pymysql.cursors.Cursor, thread_id: int) -> bool:
    monitor.execute(f"SELECT command FROM information_schema.processlist WHERE id = {thread_id}")
    row = monitor.fetchone()
    return bool(row) and row[0] == "Query"


def _wait(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark's victim did not reach the expected state")


def kill_until_stopped(server: MariaDB, victim_at: Endpoint, killer_at: Endpoint, via_fe: bool, n: int) -> Summary:
    """KILL QUERY sent -> the server's processlist shows the victim's thread out of Query."""
    samples = []
    with (
        contextlib.closing(server.connect()) as monitor_conn,
        monitor_conn.cursor() as monitor,
        contextlib.closing(killer_at.connect()) as killer,
        killer.cursor() as kcur,
    ):
        for i in range(n):
            victim = victim_at.connect()
            marker = f"killbench{i}"
            done = threading.Event()

            def run(conn: pymysql.Connection = victim, tag: str = marker, ended: threading.Event = done) -> None:
                with contextlib.suppress(pymysql.err.MySQLError), conn.cursor() as cur:
                    cur.execute(f"SELECT SLEEP(30) AS `{tag}`")
                ended.set()

            threading.Thread(target=run, daemon=True).start()
            thread_id = 0

            def started(tag: str = marker) -> bool:
                nonlocal thread_id
                monitor.execute(
                    "SELECT id FROM information_schema.processlist "
                    f"WHERE command = 'Query' AND info LIKE '%{tag}%' AND id <> CONNECTION_ID()"
                )
                row = monitor.fetchone()
                thread_id = int(row[0]) if row else 0
                return bool(row)

            _wait(started)
            target = victim.thread_id() if via_fe else thread_id
            sent = time.perf_counter()
            kcur.execute(f"KILL QUERY {target}")
            _wait(lambda tid=thread_id: not _backend_thread_running(monitor, tid))
            samples.append((time.perf_counter() - sent) * 1000)
            done.wait(10)
            victim.close()
    return summarize(samples)


def _seed(server: MariaDB) -> None:
    with contextlib.closing(server.connect()) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS bench")
        cur.execute("CREATE TABLE IF NOT EXISTS bench.t (id INT PRIMARY KEY, v VARCHAR(32))")
        cur.execute(f"INSERT IGNORE INTO bench.t SELECT seq, CONCAT('value-', seq) FROM bench.seq_1_to_{ROWS}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backend", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few samples")
    parser.add_argument("--json", metavar="PATH", help="write the raw figures here")
    args = parser.parse_args(argv)
    n_rt, n_kill, seconds = (200, 10, 2.0) if args.quick else (2000, 50, 8.0)
    workdir = Path(tempfile.mkdtemp(prefix="fecluster-bench-backend-"))
    server = MariaDB(USER, PASSWORD)
    redis_server = procs.start_redis()
    cluster = FeCluster(
        redis_server.url, 2, workdir, set(), backend=f"mysql://{USER}:{PASSWORD}@127.0.0.1:{server.port}"
    )
    rows: list[tuple[str, Summary | float, Summary | float, str]] = []
    try:
        _seed(server)
        version = server.query("SELECT VERSION()")[0][0]
        cluster.start()
        fe1, fe2 = (fe.endpoint for fe in cluster.fes)
        direct = Endpoint("mariadb", "127.0.0.1", server.port)
        rows.append(("SELECT 1 round trip (FE answers)", select1(fe1, n_rt), select1(direct, n_rt), "p50 <= 2x"))
        rows.append(("point select, text (relayed)", point_select(fe1, n_rt), point_select(direct, n_rt), "p50 <= 2x"))
        rows.append(
            (
                "point select, prepared (binary)",
                prepared_point_select(fe1, n_rt),
                prepared_point_select(direct, n_rt),
                "p50 <= 2x",
            )
        )
        rows.append(
            (
                "point selects/s, 16 threads",
                throughput([fe1, fe2], 16, seconds),
                throughput([direct], 16, seconds),
                ">= 40% of direct",
            )
        )
        rows.append(
            (
                "KILL QUERY -> backend thread stopped",
                kill_until_stopped(server, fe1, fe2, True, n_kill),
                kill_until_stopped(server, direct, direct, False, n_kill),
                "p50 <= 3x MariaDB's own",
            )
        )
    finally:
        cluster.stop()
        redis_server.stop()
        server.stop()
    print(f"fecluster bench.backend  {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
    print(f"backend: private {version} on a free port; 2 FEs (--backend mysql://); client: PyMySQL / mysql-connector")
    print(f"samples: round trips {n_rt}, KILL {n_kill}, throughput {seconds:.0f} s; times in ms\n")
    head = f"{'figure':42}  {'FE p50':>8}  {'FE p99':>8}  {'direct p50':>10}  {'direct p99':>10}  {'ratio':>6}  target"
    print(head)
    print("-" * len(head))
    out: dict[str, Any] = {}
    for name, fe, ref, target in rows:
        if isinstance(fe, Summary) and isinstance(ref, Summary):
            ratio = fe.p50 / ref.p50
            print(f"{name:42}  {fe.p50:8.2f}  {fe.p99:8.2f}  {ref.p50:10.2f}  {ref.p99:10.2f}  {ratio:5.2f}x  {target}")
            out[name] = {"fe": fe.to_json(), "direct": ref.to_json()}
        else:
            assert isinstance(fe, float) and isinstance(ref, float)
            print(f"{name:42}  {fe:8.0f}  {'':8}  {ref:10.0f}  {'':10}  {fe / ref:5.0%}  {target}")
            out[name] = {"fe": fe, "direct": ref}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
