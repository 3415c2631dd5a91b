"""``python -m bench.killtrace``: where the milliseconds of one KILL QUERY go.

Starts a private redis-server and 2 FEs through a launcher that wraps a few
FE functions with timestamps (nothing in frontend/ or coordinator/ changes),
runs same-FE and cross-FE ``KILL QUERY`` like the bench does, and prints for
each step the median time after the killer's send. The bench's clock and the
FEs' clocks are the same (``perf_counter`` is CLOCK_MONOTONIC), so the
timestamps line up across processes. It also reports the FEs' garbage
collector pauses (``gc.callbacks``).

    python -m bench.killtrace [--iterations 200] [--idle 0]

The probes cost a few microseconds each; compare runs with each other, not
with the bench's figures. Probes whose function no longer exists are skipped.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import workloads
from bench.servers import Endpoint, bench_port, raise_nofile
from frontend import procs

# (module, class, method, label): the KILL's path, in today's names
PROBES = [
    ("frontend.wire.server", "MysqlConnection", "_query", "wire._query"),
    ("frontend.wire.server", "MysqlConnection", "_run", "wire._run"),
    ("coordinator.routing", "Router", "kill", "router.kill"),
    ("coordinator.routing", "Router", "_owner", "router._owner"),
    ("coordinator.routing", "Router", "_peer_kill", "router._peer_kill"),
    ("coordinator.peers", "KillStream", "kill", "stream.kill"),
    ("frontend.session_table", "SessionTable", "kill_local", "sessions.kill_local"),
    ("coordinator.accounts", "Accounts", "fresh", "users.fresh"),
    ("frontend.grpc_api", "PeerService", "_kill", "peer._kill"),
    # grpc's Python layer: the killer's write on the kill stream, and the
    # wait for each reply (its end is when the reply reached Python).
    ("grpc.aio._call", "StreamStreamCall", "write", "grpc.write"),
    ("grpc.aio._call", "StreamStreamCall", "_read", "grpc._read"),
]
SYNC_PROBES = [
    ("frontend.session", "Session", "kill_query", "session.kill_query"),
    ("frontend.wire.server", "MysqlConnection", "send_error", "wire.send_error"),
    ("frontend.wire.server", "MysqlConnection", "send", "wire.send"),
]


# ---------------------------------------------------------------- inside the FE


def _fe_main(argv: list[str]) -> int:
    import importlib

    out = os.environ["KILLTRACE_OUT"]
    events: list[tuple[float, str]] = []
    pauses: list[tuple[int, float]] = []
    started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], (time.perf_counter() - started[0]) * 1000))

    gc.callbacks.append(on_gc)
    if os.environ.get("KILLTRACE_SWITCH_INTERVAL"):  # an experiment: the GIL's hand-over interval
        sys.setswitchinterval(float(os.environ["KILLTRACE_SWITCH_INTERVAL"]))

    def probe_async(cls: type, name: str, label: str) -> None:
        original = getattr(cls, name)

        @functools.wraps(original)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            events.append((time.perf_counter(), label + ">"))
            try:
                return await original(self, *args, **kwargs)
            finally:
                events.append((time.perf_counter(), label + "<"))

        setattr(cls, name, wrapper)

    def probe_sync(cls: type, name: str, label: str) -> None:
        original = getattr(cls, name)

        @functools.wraps(original)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            events.append((time.perf_counter(), label))
            return original(self, *args, **kwargs)

        setattr(cls, name, wrapper)

    for probes, install in ((PROBES, probe_async), (SYNC_PROBES, probe_sync)):
        for module, cls_name, method, label in probes:
            cls = getattr(importlib.import_module(module), cls_name, None)
            if cls is not None and hasattr(cls, method):
                install(cls, method, label)

    def dump(*_: object) -> None:
        Path(out).write_text(json.dumps({"events": events, "gc": pauses}))

    atexit.register(dump)
    signal.signal(signal.SIGUSR1, dump)
    from frontend.cli import main

    return main(argv)


# ---------------------------------------------------------------- the driver


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fe"]:
        return _fe_main(argv[1:])
    p = argparse.ArgumentParser(
        prog="python -m bench.killtrace", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--idle", type=int, default=0, help="idle connections held over the 2 FEs")
    p.add_argument("--kill-delay", type=float, default=0.03)
    args = p.parse_args(argv)
    raise_nofile(4 * args.idle + 4000)

    work = Path(tempfile.mkdtemp(prefix="fecluster-killtrace-"))
    (work / "redis").mkdir()
    redis = procs.start_redis(bench_port(), work / "redis")
    cluster, secret = f"trace{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    fes: list[tuple[Endpoint, Any, Path]] = []
    pool = workloads.IdlePool()
    try:
        for i in (1, 2):
            mysql_port, grpc_port = bench_port(), bench_port()
            node = procs.node_command(
                redis_url=redis.url,
                cluster=cluster,
                mysql_port=mysql_port,
                grpc_port=grpc_port,
                http_port=0,  # never Doris's 8030
                max_connections=20_000,  # the scaling rows hold 5,000 on one FE
                bind_host="127.0.0.1",
                advertise_host="127.0.0.1",
                cluster_secret=secret,
            )
            cmd = [sys.executable, "-m", "bench.killtrace", "fe", *node[node.index("node") :]]
            env = procs.node_env()
            env["KILLTRACE_OUT"] = str(work / f"fe{i}.json")
            proc = procs.spawn(cmd, env=env, log=work / f"fe{i}.log")
            fes.append((Endpoint(f"fe{i}", "127.0.0.1", mysql_port), proc, work / f"fe{i}.json"))
        for endpoint, proc, _ in fes:
            procs.wait_port("127.0.0.1", endpoint.port, 60, proc)
        time.sleep(4)  # a membership refresh, so each FE knows the other
        if args.idle:
            pool.fill({fes[0][0]: args.idle // 2, fes[1][0]: args.idle - args.idle // 2})
        killer, v_same, v_cross = fes[0][0].connect(), fes[0][0].connect(), fes[1][0].connect()
        runs: dict[str, list[tuple[float, float, float]]] = {}
        for label, victim_conn in (("same-FE", v_same), ("cross-FE", v_cross)):
            op = workloads.KillOp(killer, victim_conn, args.kill_delay)
            for _ in range(10):
                op()
            samples = []
            for _ in range(args.iterations):
                op.victim.start()
                time.sleep(args.kill_delay)
                t0 = time.perf_counter()
                op.cur.execute(op.sql)
                t_ok = time.perf_counter()
                op.victim.done.wait(5)
                samples.append((t0, t_ok, op.victim.ended))
            op.close()
            runs[label] = samples
        for _, proc, _ in fes:
            os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(1)
        traces = [json.loads(path.read_text()) for _, _, path in fes]
        for label, samples in runs.items():
            print(
                f"== {label} KILL QUERY, {len(samples)} samples, {args.idle} idle connections: "
                "median ms after the killer's send"
            )
            offsets: dict[str, list[float]] = {}
            for t0, t_ok, t_end in samples:
                seen: set[str] = set()
                for i, trace in enumerate(traces, 1):
                    for ts, name in trace["events"]:
                        key = f"fe{i} {name}"
                        if t0 - 0.001 <= ts <= max(t_ok, t_end) and key not in seen:
                            seen.add(key)
                            offsets.setdefault(key, []).append((ts - t0) * 1000)
                offsets.setdefault("client: killer got OK", []).append((t_ok - t0) * 1000)
                offsets.setdefault("client: victim got 1317", []).append((t_end - t0) * 1000)
            for key, values in sorted(offsets.items(), key=lambda kv: statistics.median(kv[1])):
                if len(values) >= len(samples) // 2:
                    print(f"  {statistics.median(values):7.3f}  {key}")
        for i, trace in enumerate(traces, 1):
            for gen in (0, 1, 2):
                pauses = [ms for g, ms in trace["gc"] if g == gen]
                if pauses:
                    print(
                        f"fe{i} gc gen{gen}: {len(pauses)} collections, median {statistics.median(pauses):.2f} ms, "
                        f"max {max(pauses):.2f} ms"
                    )
        for c in (killer, v_same, v_cross):
            c.close()
    finally:
        pool.close_all()
        time.sleep(2)  # let the FEs unregister before SIGTERM
        for _, proc, _ in fes:
            procs.stop(proc)
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
