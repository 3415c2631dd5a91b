"""``python -m bench.burst``: does an FE give back its memory and threads after
a burst of connections?

Starts a private redis-server and one FE over the embedded backend (and, with
``--mariadb``, one more over a private ``mariadbd`` on a free port, never the
shared server on 3306), then per cycle: RSS and thread count at baseline,
``N`` idle connections opened (each logs in, PyMySQL's ``SET NAMES`` runs),
held (peak), closed, and again once the FE is idle and its registry rows are
gone (after). Three cycles by default.

    python -m bench.burst [--connections 5000] [--cycles 3] [--mariadb]

``python -m bench`` runs the same measurement as its ``burst`` step (one FE
over the embedded backend).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import workloads
from bench.servers import FeCluster, raise_nofile
from frontend import procs

SETTLE_S = 5.0
"""After the registry is empty and the FE is idle, how long the bench waits
before the "after" reading (what an operator would see a few seconds later)."""


@dataclass
class Cycle:
    rss_base: int
    threads_base: int
    rss_peak: int
    threads_peak: int
    rss_after: int
    threads_after: int
    seconds_open: float
    seconds_to_empty: float


def reading(pid: int) -> tuple[int, int]:
    p = psutil.Process(pid)
    return int(p.memory_info().rss), p.num_threads()


def burst_cycles(
    cluster: FeCluster,
    connections: int,
    cycles: int,
    control: int = 0,
    settle_s: float = SETTLE_S,
    say: Callable[[str], None] = lambda _: None,
) -> list[Cycle]:
    """``cycles`` bursts of ``connections`` idle connections against the
    cluster's first FE; ``control`` connections stay open throughout (they are
    in the registry count)."""
    fe = cluster.fes[0]
    out: list[Cycle] = []
    for i in range(1, cycles + 1):
        workloads.settle([fe.pid])
        rss_base, threads_base = reading(fe.pid)
        pool = workloads.IdlePool()
        peak_rss, peak_threads = rss_base, threads_base
        try:
            seconds_open = pool.fill({fe.endpoint: connections})
            cluster.wait_registered(connections + control)
            rss, threads = reading(fe.pid)
            peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, threads)
        finally:
            t0 = time.monotonic()
            pool.close_all()
            left = cluster.wait_registered(control, timeout=60)
            seconds_to_empty = time.monotonic() - t0
        if left != control:
            say(f"  cycle {i}: {left - control} connections still registered 60 s after closing")
        workloads.settle([fe.pid])
        time.sleep(settle_s)
        rss_after, threads_after = reading(fe.pid)
        cycle = Cycle(
            rss_base,
            threads_base,
            peak_rss,
            peak_threads,
            rss_after,
            threads_after,
            round(seconds_open, 2),
            round(seconds_to_empty, 2),
        )
        out.append(cycle)
        say(f"  cycle {i}: {describe(cycle)}")
    return out


def mib(v: int) -> str:
    return f"{v / 2**20:.0f}"


def describe(c: Cycle) -> str:
    return (
        f"RSS {mib(c.rss_base)} -> {mib(c.rss_peak)} -> {mib(c.rss_after)} MiB, "
        f"threads {c.threads_base} -> {c.threads_peak} -> {c.threads_after}"
    )


def as_json(cycles: list[Cycle]) -> list[dict[str, Any]]:
    return [asdict(c) for c in cycles]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.burst", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--cycles", type=int, default=3)
    p.add_argument("--mariadb", action="store_true", help="also an FE over a private mariadbd (tests.mariadb)")
    args = p.parse_args(argv)
    raise_nofile(4 * args.connections + 4000)
    work = Path(tempfile.mkdtemp(prefix="fecluster-burst-"))
    (work / "redis").mkdir()
    redis = procs.start_redis(procs.free_port(), work / "redis")
    clusters: list[tuple[str, FeCluster]] = []
    server = None
    try:
        clusters.append(("embedded", FeCluster(redis.url, 1, work, set())))
        if args.mariadb:
            from tests.mariadb import MariaDB

            server = MariaDB("fesvc", "burst-pw")
            clusters.append(
                (
                    "mariadb",
                    FeCluster(redis.url, 1, work, set(), backend=f"mysql://fesvc:burst-pw@{server.host}:{server.port}"),
                )
            )
        for name, cluster in clusters:
            cluster.start()
            print(f"== FE over the {name} backend: {args.cycles} cycles of {args.connections:,} idle connections")
            burst_cycles(cluster, args.connections, args.cycles, say=print)
            cluster.stop()
    finally:
        for _, cluster in clusters:
            cluster.stop()
        redis.stop()
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
