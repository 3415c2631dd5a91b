"""A user's statements cost the FE bounded work on its event loop (issue 20,
item 5): while a user without grants sends 1 MB and 15 MB statements, a
numeric-string cast, comment storms and a 1 MB INSERT, a bystander's
``SELECT 1`` stays fast and the FE's memory stays bounded, on both backends.

Before: one 1 MB statement from a user without grants took 13 s and 618 MB
that were never returned; ``CAST('1e600000' AS SIGNED)`` froze an FE 18 s; a
15 MB statement was tokenized whole on the loop (bystander p99 1.2 s).

The bounds asserted are generous (the machine is shared); the figures are
printed for the README.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import psutil
import pymysql
import pytest

from tests.mariadb import MariaDB
from tests.support import Cluster, Fe, new_cluster

ATTACK = [
    ("1 MB comment", "SELECT 1 /*" + "x" * (1 << 20) + "*/"),
    ("15 MB comment", "SELECT 1 /*" + "x" * (15 << 20) + "*/"),
    ("numeric-string cast", "SELECT CAST('1e600000' AS SIGNED)"),
    ("1 MB comment storm", "SELECT 1 " + "/**/" * 250_000),
    ("15 MB string", "SELECT '" + "a" * (15 << 20) + "'"),
    ("1 MB INSERT", "INSERT INTO nosuch VALUES " + ",".join(["(1)"] * 300_000)),
    ("1 MB of statements", "SELECT 1;" * 110_000),
]


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def target(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Fe]:
    """One FE of its own (its memory is measured): embedded, or over the private MariaDB."""
    kw = {}
    if request.param == "mysql":
        server: MariaDB = request.getfixturevalue("backend_mariadb")
        kw["backend"] = f"mysql://root@127.0.0.1:{server.port}"
    cluster: Cluster = new_cluster(redis_url, 1, **kw)
    try:
        yield cluster.fes[0]
    finally:
        cluster.stop()


@pytest.mark.slow
def test_a_bystander_stays_fast_while_a_user_sends_hostile_statements(target: Fe) -> None:
    fe = target
    fe.query("CREATE USER IF NOT EXISTS 'mallory' IDENTIFIED BY 'pw'")
    process = psutil.Process(fe.proc.pid)
    before = process.memory_info().rss
    stop = threading.Event()
    latencies: list[float] = []

    def bystander() -> None:
        with contextlib.closing(fe.connect()) as conn, conn.cursor() as cur:
            for _ in range(20):
                cur.execute("SELECT 1")
            while not stop.is_set():
                start = time.perf_counter()
                cur.execute("SELECT 1")
                cur.fetchall()
                latencies.append((time.perf_counter() - start) * 1000)
                time.sleep(0.002)

    thread = threading.Thread(target=bystander, daemon=True)
    thread.start()
    peak = before
    answers: dict[str, str] = {}
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            for name, sql in ATTACK:
                try:
                    with (
                        contextlib.closing(
                            pymysql.connect(
                                host="127.0.0.1",
                                port=fe.mysql_port,
                                user="mallory",
                                password="pw",
                                max_allowed_packet=64 << 20,
                                ssl_disabled=True,
                            )
                        ) as conn,
                        conn.cursor() as cur,
                    ):
                        cur.execute(sql)
                        cur.fetchall()
                    answers[name] = "ok"
                except pymysql.err.MySQLError as e:
                    answers[name] = f"{e.args[0]}"
                peak = max(peak, process.memory_info().rss)
    finally:
        stop.set()
        thread.join(10)
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    after = process.memory_info().rss
    print(
        f"\nbystander SELECT 1: {len(latencies)} samples, p50 {p50:.2f} ms, p99 {p99:.2f} ms,"
        f" max {latencies[-1]:.1f} ms;"
        f" FE RSS {before >> 20} MB before, peak {peak >> 20} MB, {after >> 20} MB after; answers {answers}"
    )
    assert fe.alive()
    assert p99 < 250, f"a bystander's SELECT 1 p99 was {p99:.1f} ms"
    assert peak - before < 600 << 20, f"the FE grew by {(peak - before) >> 20} MB"
    with contextlib.closing(fe.connect()) as conn, conn.cursor() as cur:  # still serving
        cur.execute("SELECT 1")
        assert cur.fetchall() == ((1,),)
