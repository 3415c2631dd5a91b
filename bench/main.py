"""``python -m bench``: run every measurement, print the table, keep the JSON."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql

from bench import burst, workloads
from bench.grpcfloor import GrpcFloor
from bench.report import MISS, NA, PASS, Row, judge, ms, ratio, table
from bench.runinfo import RESULTS, Progress, machine
from bench.servers import Endpoint, FeCluster, Mariadb, bench_port, probe_mariadb, raise_nofile
from bench.stats import Summary, summarize
from frontend import procs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="write the results as JSON to PATH ('-' or no value: stdout, the table then goes to stderr); "
        "default: bench/results/bench-<time>.json",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: few iterations, 500 instead of 5,000 connections, 3 x 100 for processlist",
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="KILL samples per row (default 200, --quick 20); connect takes 5x, SELECT 1 10x, processlist 1/4 of it",
    )
    p.add_argument(
        "--kill-delay",
        type=float,
        default=0.05,
        help="seconds between the victim sending SELECT SLEEP(30) and the killer sending KILL (0.05)",
    )
    p.add_argument("--no-mariadb", action="store_true", help="do not look for MariaDB on 127.0.0.1:3306")
    p.add_argument(
        "--scale",
        action="store_true",
        help="after the default rows, the processlist at scale (python -m bench.scale: 20,000 sessions over 3 FEs "
        "held by 4 child processes, about 1.5 minutes more)",
    )
    p.add_argument(
        "--only",
        default="",
        metavar="STEPS",
        help="run only these steps, comma-separated: " + ", ".join(STEPS) + " (default: all)",
    )
    args = p.parse_args(argv)
    chosen = {s.strip() for s in args.only.split(",") if s.strip()}
    if chosen - set(STEPS):
        p.error(f"unknown step(s) for --only: {', '.join(sorted(chosen - set(STEPS)))}")
    args.only = chosen
    return args


STEPS = (
    "connect",
    "select1",
    "kill",
    "prepared",
    "timeout",
    "kill-small",
    "processlist",
    "memory",
    "kill-big",
    "burst",
    "hosts",
    "sysbench",
)
"""The measurement steps of a run, in order (``--only`` picks some)."""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.n = args.iterations or (20 if args.quick else 200)
        self.small = 100
        self.big = 500 if args.quick else 5000
        self.per_fe = 100 if args.quick else 1000
        self.say = Progress()
        self.samples: dict[str, Summary] = {}
        self.facts: dict[str, Any] = {}
        self.notes: list[str] = []
        self.ports: set[int] = set()
        self.pids: list[int] = []
        self.clusters: list[FeCluster] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="fecluster-bench-"))

    # ------------------------------------------------------------ helpers

    def wants(self, step: str) -> bool:
        return not self.args.only or step in self.args.only

    @property
    def n_connect(self) -> int:
        return self.n * 5

    @property
    def n_select(self) -> int:
        return self.n * 10

    @property
    def n_processlist(self) -> int:
        return max(5, self.n // 4)

    def settle(self) -> None:
        """Start each measurement on quiet FEs and Redis (not still digesting the last step)."""
        usage = workloads.settle(self.pids)
        if usage >= 5.0:
            self.notes.append(f"the FEs and Redis still used {usage:.0f}% CPU when a measurement started")

    def measure(
        self,
        title: str,
        ops: dict[str, workloads.Op],
        n: int,
        warmup: int,
        block: int = 1,
        extra: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Run ``ops`` interleaved, keep one Summary per key."""
        how = f"interleaved in blocks of {block}" if block > 1 else "interleaved"
        self.say(f"{title}: {', '.join(ops)}, {n} samples each ({how})")
        self.settle()
        try:
            samples = workloads.interleave(ops, n, warmup, block)
        finally:
            for op in ops.values():
                if isinstance(op, workloads.KillOp):
                    op.close()
        for key, values in samples.items():
            more = dict((extra or {}).get(key, {}))
            op = ops[key]
            if isinstance(op, workloads.KillOp):
                more.update(missed=op.missed, other_outcomes=op.other_outcomes)
                if op.missed:
                    self.notes.append(
                        f"{key}: {op.missed} KILL(s) reached the victim before its SLEEP started; "
                        "those iterations were dropped (raise --kill-delay if many)"
                    )
                if op.other_outcomes:
                    self.notes.append(f"{key}: victim outcomes other than 1317: {op.other_outcomes}")
            summary = self.samples[key] = summarize(values, **more)
            self.say(f"  {key}: p50 {ms(summary.p50)} ms, p99 {ms(summary.p99)} ms")

    @contextlib.contextmanager
    def connections(self, *endpoints: Endpoint) -> Iterator[list[pymysql.Connection]]:
        conns = [e.connect(read_timeout=120) for e in endpoints]
        try:
            yield conns
        finally:
            for c in conns:
                with contextlib.suppress(Exception):
                    c.close()

    def cluster(self, redis_url: str, nodes: int) -> FeCluster:
        self.say(f"starting {nodes} FE(s)")
        cluster = FeCluster(redis_url, nodes, self.workdir, self.ports)
        self.clusters.append(cluster)
        cluster.start()
        self.pids += [fe.pid for fe in cluster.fes]
        return cluster

    # ------------------------------------------------------------ the run

    def run(self, maria: Mariadb | None, redis_url: str) -> None:
        """Both clusters run side by side (3 FEs, and 1 FE for the scaling rows) so
        that figures compared with each other are taken interleaved, at the same time."""
        c3, c1 = self.cluster(redis_url, 3), self.cluster(redis_url, 1)
        pool3, pool1 = workloads.IdlePool(), workloads.IdlePool()
        fe1, fe2 = (fe.endpoint for fe in c3.fes[:2])
        solo = c1.fes[0].endpoint
        d = self.args.kill_delay
        kill = workloads.KillOp
        try:
            with contextlib.ExitStack() as stack:
                sel, k3, v3s, v3c = stack.enter_context(self.connections(fe1, fe1, fe1, fe2))
                k1, v1 = stack.enter_context(self.connections(solo, solo))
                control3, control1 = 4, 2
                m = maria.endpoint if maria else None
                msel, mk, mv = stack.enter_context(self.connections(m, m, m)) if m else (None, None, None)

                if self.wants("connect"):
                    ops: dict[str, workloads.Op] = {"fe.connect": workloads.connect_close(fe1)}
                    if m:
                        ops["maria.connect"] = workloads.connect_close(m)
                    self.measure("connect + close", ops, self.n_connect, warmup=20, block=50)

                if self.wants("select1"):
                    ops = {"fe.select1": workloads.select_1(sel)}
                    if msel:
                        ops["maria.select1"] = workloads.select_1(msel)
                    self.measure("SELECT 1", ops, self.n_select, warmup=50, block=100)

                if self.wants("kill"):
                    live3 = c3.wait_registered(control3)
                    ops = {"fe.kill.same": kill(k3, v3s, d), "fe.kill.cross": kill(k3, v3c, d)}
                    if mk and mv:
                        ops["maria.kill"] = kill(mk, mv, d)
                    # The floor under the cross-FE row, taken in the same rounds: a bare
                    # grpc.aio round trip between two processes (bench/grpcfloor.py).
                    floor = stack.enter_context(contextlib.closing(GrpcFloor(self.ports)))
                    self.pids.append(floor.pid)
                    ops.update(floor.ops())
                    self.measure(
                        "KILL QUERY",
                        ops,
                        self.n,
                        warmup=3,
                        extra={"fe.kill.same": {"live": live3}, "fe.kill.cross": {"live": live3}},
                    )
                    self.samples["grpc.transport.one_way"] = summarize(floor.one_way[-self.n :])

                if maria and msel and self.wants("processlist"):
                    self.maria_processlist(maria, msel)

                if self.wants("prepared"):
                    table = f"fecluster_bench_{os.getpid()}"
                    point = {"fe.prepared": workloads.PreparedPointSelect(fe1, "bench", table)}
                    if m:
                        point["maria.prepared"] = workloads.PreparedPointSelect(m, "test", table)
                    try:
                        self.measure("prepared point select", dict(point), self.n_select, warmup=50, block=100)
                    finally:
                        for op in point.values():
                            op.close()
                if self.wants("timeout"):
                    self.measure(
                        "statement timeout precision",
                        {"fe.timeout": workloads.timeout_overshoot(sel)},
                        max(5, self.n // 4),
                        warmup=1,
                    )

                def measure_kills(tag: str, size: int, live3: int, live1: int) -> None:
                    names = (f"fe3.{tag}.same", f"fe3.{tag}.cross", f"fe1.{tag}.same")
                    ops = (kill(k3, v3s, d), kill(k3, v3c, d), kill(k1, v1, d))
                    lives = (live3, live3, live1)
                    self.measure(
                        f"KILL QUERY with {size} live connections",
                        dict(zip(names, ops, strict=True)),
                        self.n,
                        warmup=3,
                        extra={name: {"live": live} for name, live in zip(names, lives, strict=True)},
                    )

                if self.wants("kill-small"):
                    live3 = self._fill(c3, pool3, self.small - control3, control3)
                    live1 = self._fill(c1, pool1, self.small - control1, control1)
                    measure_kills("small", self.small, live3, live1)

                if not {"processlist", "memory", "kill-big"} & self.args.only and self.args.only:
                    return
                live3 = self._fill(c3, pool3, 3 * self.per_fe, control3)
                self.say(f"SHOW PROCESSLIST x{self.n_processlist}, {live3} live connections on 3 FEs")
                self.settle()
                samples, rows = workloads.processlist(k3, self.n_processlist, warmup=3)
                self.samples["fe.processlist"] = summarize(samples, rows=rows, live=live3)
                self.say(
                    f"  fe.processlist: p50 {ms(self.samples['fe.processlist'].p50)} ms, "
                    f"p99 {ms(self.samples['fe.processlist'].p99)} ms ({rows} rows)"
                )
                samples, rows = workloads.processlist_wire(k3, self.n_processlist, warmup=3)
                self.samples["fe.processlist.wire"] = summarize(samples, rows=rows, live=live3)
                self.say(f"  fe.processlist.wire: p50 {ms(self.samples['fe.processlist.wire'].p50)} ms")
                samples, rows = workloads.processlist_where(k3, self.n_processlist, warmup=3)
                self.samples["fe.processlist.where"] = summarize(samples, rows=rows, live=live3)
                self.say(f"  fe.processlist.where: p50 {ms(self.samples['fe.processlist.where'].p50)} ms")

                live3 = self._fill(c3, pool3, self.big - control3, control3)

                self.settle()
                pid = c1.fes[0].pid
                rss_before, live_before = workloads.rss(pid), c1.registered()
                live1 = self._fill(c1, pool1, self.big - control1, control1)
                self.settle()
                rss_after, live_after = workloads.rss(pid), c1.registered()
                added = live_after - live_before
                per_conn = (rss_after - rss_before) / added / 1024 if added > 0 else float("nan")
                self.facts["memory"] = {
                    "rss_before": rss_before,
                    "rss_after": rss_after,
                    "connections_before": live_before,
                    "connections_after": live_after,
                    "kb_per_connection": round(per_conn, 2),
                }
                self.say(
                    f"1 FE: RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB over {added} "
                    f"connections: {per_conn:.1f} KB each"
                )

                measure_kills("big", self.big, live3, live1)
        finally:
            self.say("closing connections, stopping the FEs")
            self._close(c3, pool3)
            self._close(c1, pool1)

    def burst(self, redis_url: str) -> None:
        """RSS and threads of a fresh FE before, during and after bursts of idle connections."""
        cycles = 3
        self.say(f"{cycles} bursts of {self.big:,} idle connections on a fresh FE (RSS and threads)")
        cluster = self.cluster(redis_url, 1)
        try:
            runs = burst.burst_cycles(cluster, self.big, cycles, say=self.say)
        finally:
            cluster.stop()
        self.facts["burst"] = {"connections": self.big, "cycles": burst.as_json(runs)}

    def maria_processlist(self, maria: Mariadb, conn: pymysql.Connection) -> None:
        """SHOW PROCESSLIST with as many idle connections as MariaDB allows, up to 3 x per_fe."""
        with conn.cursor() as cur:
            cur.execute("SHOW STATUS LIKE 'Threads_connected'")
            used = int(cur.fetchone()[1])
        want = 3 * self.per_fe
        idle = max(0, min(want, maria.max_connections - used - 5))
        if idle < want:
            self.notes.append(
                f"MariaDB's max_connections is {maria.max_connections} ({used} in use): its SHOW PROCESSLIST "
                f"figure is taken with {idle} idle connections, not {want} (not comparable; raise "
                "max_connections to compare)"
            )
        pool = workloads.IdlePool()
        try:
            self.say(f"MariaDB: SHOW PROCESSLIST x{self.n_processlist} with {idle} idle connections")
            pool.fill({maria.endpoint: idle})
            samples, rows = workloads.processlist(conn, self.n_processlist, warmup=3)
            self.samples["maria.processlist"] = summarize(samples, rows=rows, idle=idle)
            samples, rows = workloads.processlist_wire(conn, self.n_processlist, warmup=3)
            self.samples["maria.processlist.wire"] = summarize(samples, rows=rows, idle=idle)
        finally:
            pool.close_all()

    def _close(self, cluster: FeCluster, pool: workloads.IdlePool) -> None:
        pool.close_all()
        # Let the FEs unregister every connection before SIGTERM: a stop that
        # lands during a burst of unregistrations can hang (see bench/README.md).
        left = cluster.wait_registered(0, timeout=30)
        if left:
            self.notes.append(f"{left} connections were still registered 30s after the bench closed them")
        cluster.stop()

    def _fill(self, cluster: FeCluster, pool: workloads.IdlePool, idle_total: int, control: int) -> int:
        """Hold ``idle_total`` idle connections spread evenly over the cluster's FEs."""
        endpoints = [fe.endpoint for fe in cluster.fes]
        base, extra = divmod(idle_total, len(endpoints))
        targets = {e: base + (1 if i < extra else 0) for i, e in enumerate(endpoints)}
        opening = sum(max(0, t - pool.count(e)) for e, t in targets.items())
        seconds = pool.fill(targets)
        if opening:
            rate = opening / seconds if seconds else 0
            self.facts.setdefault("open_rate", []).append(
                {"fes": len(endpoints), "opened": opening, "seconds": round(seconds, 2), "per_second": round(rate)}
            )
            self.say(f"  opened {opening} idle connections in {seconds:.1f}s ({rate:.0f}/s)")
        expected = pool.count() + control
        live = cluster.wait_registered(expected)
        if live != expected:
            self.notes.append(f"registry held {live} connections, {expected} expected")
        return live

    # ------------------------------------------------------------ rows

    def rows(self, maria: Mariadb | str | None) -> list[Row]:
        s = self.samples.get
        rows: list[Row] = []
        big, small = f"{self.big:,}", f"{self.small:,}"

        def vs_maria(key: str, fe_key: str, maria_key: str, figure: str, factor: float) -> Row:
            fe, m = s(fe_key), s(maria_key)
            r = ratio(fe.p50 if fe else None, m.p50 if m else None)
            ok = None if r is None else r <= factor
            result, detail = judge((ok, f"{r:.1f}x MariaDB" if r is not None else "no MariaDB"))
            return Row(
                key,
                "latency",
                figure,
                fe=fe,
                mariadb=m,
                target=f"p50 <= {factor:g}x MariaDB",
                result=result,
                detail=detail,
            )

        rows.append(vs_maria("connect", "fe.connect", "maria.connect", "connect + authenticate (open, close)", 1.5))
        rows.append(vs_maria("select1", "fe.select1", "maria.select1", "SELECT 1 round trip", 1.5))
        rows.append(
            vs_maria("prepared", "fe.prepared", "maria.prepared", "prepared point select (COM_STMT_EXECUTE)", 2)
        )
        rows.append(
            vs_maria("kill_same", "fe.kill.same", "maria.kill", "KILL QUERY -> 1317, victim on the killer's FE", 1.5)
        )
        overshoot = s("fe.timeout")
        result, detail = judge((None if overshoot is None else overshoot.p99 <= 100, ""))
        rows.append(
            Row(
                "timeout",
                "latency",
                "max_execution_time 200 ms: how late 3024 comes",
                fe=overshoot,
                target="p99 <= 100 ms",
                result=result,
                detail=detail,
            )
        )
        cross, mkill = s("fe.kill.cross"), s("maria.kill")
        r = ratio(cross.p50 if cross else None, mkill.p50 if mkill else None)
        result, detail = judge(
            (None if r is None else r <= 2, f"p50 {r:.1f}x MariaDB" if r is not None else "no MariaDB"),
            (None if cross is None else cross.p99 <= 4, f"p99 {ms(cross.p99)} ms" if cross else ""),
        )
        rows.append(
            Row(
                "kill_cross",
                "latency",
                "KILL QUERY -> 1317, victim on another FE",
                fe=cross,
                mariadb=mkill,
                mariadb_note="MariaDB: local kill",
                target="p50 <= 2x MariaDB local, p99 <= 4 ms",
                result=result,
                detail=detail,
            )
        )
        rows.append(Row("grpc_unary", "latency", "  bare grpc.aio unary round trip, 2 processes", fe=s("grpc.unary")))
        rows.append(
            Row(
                "grpc_stream",
                "latency",
                "  bare grpc.aio stream message round trip, 2 processes",
                fe=s("grpc.stream"),
            )
        )
        rows.append(
            Row(
                "grpc_transport",
                "latency",
                "  the same through the FEs' KillStream and PeerService",
                fe=s("grpc.transport"),
            )
        )
        rows.append(
            Row(
                "grpc_transport_one_way",
                "latency",
                "    its one-way half: KillStream.kill to the owner's kill_local",
                fe=s("grpc.transport.one_way"),
            )
        )
        rows.append(
            self._ratio(
                "kill_cross_vs_grpc",
                "latency",
                "  cross-FE KILL p50 / bare gRPC stream round trip",
                "fe.kill.cross",
                "grpc.stream",
                None,
            )
        )
        rows.append(
            self._ratio(
                "kill_cross_vs_same", "latency", "KILL cross-FE / same-FE", "fe.kill.cross", "fe.kill.same", 1.5
            )
        )
        pl, mpl = s("fe.processlist"), s("maria.processlist")
        ok = None if pl is None else pl.p50 <= 150
        result, detail = judge((ok, ""))
        maria_idle = mpl.extra.get("idle") if mpl else None
        figure = f"SHOW PROCESSLIST, 3 FEs x {self.per_fe:,} idle"
        if mpl is not None and maria_idle != 3 * self.per_fe:
            figure += f" (MariaDB: {maria_idle:,} idle)"
        rows.append(
            Row(
                "processlist",
                "latency",
                figure,
                fe=pl,
                mariadb=mpl,
                target="p50 <= 150 ms",
                result=result,
                detail=detail,
            )
        )
        rows.append(
            Row(
                "processlist_wire",
                "latency",
                "  same, to the last byte, rows not decoded",
                fe=s("fe.processlist.wire"),
                mariadb=s("maria.processlist.wire"),
            )
        )
        where = s("fe.processlist.where")
        result, detail = judge((None if where is None else where.p50 <= 100, ""))
        rows.append(
            Row(
                "processlist_where",
                "latency",
                "  information_schema.processlist WHERE ID = x",
                fe=where,
                target="p50 <= 100 ms",
                result=result,
                detail=detail,
            )
        )

        section = "KILL QUERY as connections and FEs grow"
        for key, figure in (
            ("fe1.small.same", f"1 FE, {small} live conns, same FE"),
            ("fe1.big.same", f"1 FE, {big} live conns, same FE"),
            ("fe3.small.same", f"3 FEs, {small} live conns, same FE"),
            ("fe3.big.same", f"3 FEs, {big} live conns (spread), same FE"),
            ("fe3.small.cross", f"3 FEs, {small} live conns, cross FE"),
            ("fe3.big.cross", f"3 FEs, {big} live conns (spread), cross FE"),
        ):
            rows.append(Row(key.replace(".", "_"), section, f"KILL QUERY, {figure}", fe=s(key)))
        rows.append(
            self._ratio(
                "kill_conns_1fe",
                section,
                f"1 FE same-FE KILL: {big} / {small} conns",
                "fe1.big.same",
                "fe1.small.same",
                1.2,
            )
        )
        rows.append(
            self._ratio(
                "kill_conns_3fe_same",
                section,
                f"3 FEs same-FE KILL: {big} / {small} conns",
                "fe3.big.same",
                "fe3.small.same",
                1.2,
            )
        )
        rows.append(
            self._ratio(
                "kill_conns_3fe_cross",
                section,
                f"3 FEs cross-FE KILL: {big} / {small} conns",
                "fe3.big.cross",
                "fe3.small.cross",
                1.2,
            )
        )
        rows.append(
            self._ratio(
                "kill_fes_small",
                section,
                f"same-FE KILL, {small} conns: 3 FEs / 1 FE",
                "fe3.small.same",
                "fe1.small.same",
                1.2,
            )
        )
        rows.append(
            self._ratio(
                "kill_fes_big", section, f"same-FE KILL, {big} conns: 3 FEs / 1 FE", "fe3.big.same", "fe1.big.same", 1.2
            )
        )

        mem = self.facts.get("memory")
        kb = mem["kb_per_connection"] if mem else None
        result, detail = judge((None if kb is None else kb <= 50, ""))
        added = (mem["connections_after"] - mem["connections_before"]) if mem else 0
        rows.append(
            Row(
                "memory",
                "memory",
                f"RSS per idle connection, 1 FE, +{added:,} conns",
                unit="KB",
                value=kb,
                target="<= 50 KB",
                result=result,
                detail=detail,
                extra=mem or {},
            )
        )
        rows += self.burst_rows()
        return rows

    def burst_rows(self) -> list[Row]:
        """Per cycle: RSS and threads at baseline / with the burst / after it
        closed (issue 21 item 6: back near the baseline)."""
        facts = self.facts.get("burst")
        if not facts:
            return []
        section = f"memory and threads after bursts of {facts['connections']:,} idle connections (1 FE)"
        rows: list[Row] = []
        first = facts["cycles"][0]
        for i, c in enumerate(facts["cycles"], 1):
            mib = {k: c[k] / 2**20 for k in ("rss_base", "rss_peak", "rss_after")}
            grown = mib["rss_after"] - first["rss_base"] / 2**20
            peak_grown = mib["rss_peak"] - first["rss_base"] / 2**20
            ok = grown <= max(0.5 * peak_grown, 10)
            result, detail = judge((ok, f"+{grown:.0f} MiB over the first baseline"))
            rows.append(
                Row(
                    f"burst_rss_{i}",
                    section,
                    f"cycle {i}: RSS {mib['rss_base']:.0f} -> {mib['rss_peak']:.0f} -> {mib['rss_after']:.0f} MiB",
                    unit="MiB",
                    value=mib["rss_after"],
                    target="after <= first baseline + half the burst's growth",
                    result=result,
                    detail=detail,
                    extra=c,
                )
            )
            ok = c["threads_after"] <= first["threads_base"] + 2
            result, detail = judge((ok, ""))
            rows.append(
                Row(
                    f"burst_threads_{i}",
                    section,
                    f"cycle {i}: threads {c['threads_base']} -> {c['threads_peak']} -> {c['threads_after']}",
                    unit="threads",
                    value=c["threads_after"],
                    target="after <= first baseline + 2",
                    result=result,
                    detail=detail,
                )
            )
        return rows

    def _ratio(self, key: str, section: str, figure: str, num: str, den: str, limit: float | None) -> Row:
        a, b = self.samples.get(num), self.samples.get(den)
        r = ratio(a.p50 if a else None, b.p50 if b else None)
        r99 = ratio(a.p99 if a else None, b.p99 if b else None)
        if limit is None:  # for information
            return Row(
                key, section, figure, unit="x", value=r, value_p99=r99, extra={"numerator": num, "denominator": den}
            )
        result, detail = judge((None if r is None else r <= limit, ""))
        return Row(
            key,
            section,
            figure,
            unit="x",
            value=r,
            value_p99=r99,
            target=f"p50 ratio <= {limit:g}x",
            result=result,
            detail=detail,
            extra={"numerator": num, "denominator": den},
        )


def header(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"fecluster bench  {meta['date']}  commit {m['commit'] or '?'}{'  (QUICK)' if meta['quick'] else ''}",
        f"machine: nproc {m['nproc']}, {m['cpu'] or 'cpu ?'}, {m['memory_gb']} GiB, Python {m['python']}, "
        f"{m['platform']}",
        f"MariaDB: {meta['mariadb']}",
        f"samples per row: connect {meta['iterations']['connect']}, SELECT 1 {meta['iterations']['select1']}, "
        f"KILL {meta['iterations']['kill']} (victim starts SLEEP, KILL sent {meta['kill_delay'] * 1000:.0f} ms "
        f"later), processlist {meta['iterations']['processlist']}; times in ms; client: PyMySQL, ssl_disabled",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    out_is_stdout = args.json == "-"
    printer = sys.stderr if out_is_stdout else sys.stdout
    soft, hard = raise_nofile(max(4 * bench.big + 4000, 16384))
    if soft < 2 * bench.big + 1000:
        print(f"open-files limit {soft} is too low for {bench.big} connections", file=sys.stderr)
        return 2

    meta: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": args.quick,
        "kill_delay": args.kill_delay,
        "iterations": {
            "connect": bench.n_connect,
            "select1": bench.n_select,
            "kill": bench.n,
            "processlist": bench.n_processlist,
        },
        "connections": {"small": bench.small, "big": bench.big, "processlist_per_fe": bench.per_fe},
        "nofile": [soft, hard],
        "workdir": str(bench.workdir),
    }
    maria: Mariadb | str = "skipped (--no-mariadb)" if args.no_mariadb else probe_mariadb()
    if isinstance(maria, Mariadb):
        meta["mariadb"] = f"{maria.version} on 127.0.0.1:3306, max_connections {maria.max_connections}"
    else:
        meta["mariadb"] = f"none: {maria}"
        bench.notes.append(f"MariaDB columns are empty: {maria}")
    print(header(meta), file=printer, flush=True)

    started = time.monotonic()
    redis = None
    try:
        redis_dir = bench.workdir / "redis"
        redis_dir.mkdir()
        redis = procs.start_redis(bench_port(bench.ports), redis_dir)
        bench.say(f"redis-server on port {redis.port}, FE logs in {bench.workdir}")
        bench.pids.append(redis.proc.pid)
        if args.only - {"burst", "hosts", "sysbench"} or not args.only:
            bench.run(maria if isinstance(maria, Mariadb) else None, redis.url)
        if bench.wants("burst"):
            bench.burst(redis.url)
    finally:
        for cluster in bench.clusters:
            cluster.stop()
        if redis is not None:
            redis.stop()
    rows = bench.rows(maria)
    if bench.wants("hosts"):
        # Issue 25's tier: three private mariadbd as the backend cluster, its own Redis and FEs.
        from bench import hosts

        bench.say("KILL QUERY to a backend statement over 3 hosts (bench.hosts)")
        over_hosts = hosts.measure(bench.say, iterations=bench.n)
        rows += over_hosts.rows
        bench.facts["hosts"] = over_hosts.facts
        bench.notes += over_hosts.notes
    if bench.wants("sysbench"):
        # Issue 22: oltp_read_write, 4 threads over 3 FEs sharing one embedded directory, beside MariaDB.
        from bench import sysbench

        bench.say("sysbench oltp_read_write on the embedded backend (bench.sysbench)")
        rows += sysbench.embedded_rows()
    if args.scale:
        from bench import scale

        bench.say("processlist at scale (bench.scale)")
        at_scale = scale.run(iterations=max(10, bench.n_processlist // 2 + 5), say=bench.say)
        rows += at_scale.rows
        bench.facts["scale"] = at_scale.facts
        bench.notes += at_scale.notes + scale.facts_lines(at_scale.facts)
    meta["seconds"] = round(time.monotonic() - started, 1)

    print(file=printer)
    print(table(rows), file=printer)
    results = [r.result for r in rows if r.target]
    summary = (
        f"targets: {results.count(PASS)} pass, {results.count(MISS)} miss, {results.count(NA)} n/a; "
        f"run took {meta['seconds']:.0f}s"
    )
    print(f"\n{summary}", file=printer)
    for note in bench.notes:
        print(f"note: {note}", file=printer)

    document = {"meta": meta, "rows": [r.to_json() for r in rows], "facts": bench.facts, "notes": bench.notes}
    text = json.dumps(document, indent=1)
    if out_is_stdout:
        print(text)
    else:
        path = Path(args.json) if args.json else RESULTS / f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        print(f"results: {path}", file=printer)
    return 0
