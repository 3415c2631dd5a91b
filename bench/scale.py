"""``python -m bench.scale``: the processlist at scale (issue 14): SHOW PROCESSLIST
and a selective ``information_schema.processlist`` WHERE with 20,000 sessions
over 3 FEs.

    python -m bench.scale                     # 20,000 sessions, 3 FEs, 4 holder processes (~1.5 min)
    python -m bench.scale --sessions 3000     # a smaller cluster, same method
    python -m bench.scale --stages            # also time the FE functions on the processlist path
    python -m bench.scale --profile           # or cProfile the FEs' event loops (slows them ~2x)
    python -m bench --scale                   # the default rows, then these (one table, one JSON)

One process cannot hold 20,000 sockets here (the open-files hard limit is
20,000 and cannot be raised without privileges), so the idle sessions are held
by ``--holders`` child processes (``python -m bench.scale hold``): each logs
in its share over the FEs in turn with the project's own asyncio MySQL client
(``frontend.mysql_backend.Connection``: handshake + mysql_native_password, no
statement), 64 logins in flight per holder. Every FE holds ~6,700 sockets,
under its limit too. The bench process itself holds only its control
connections (PyMySQL, ``ssl_disabled``), waits until the registry in Redis
counts every session, waits for the FEs to go idle, then samples,
interleaved round-robin:

- ``SHOW PROCESSLIST`` from FE 1, every row read and decoded by PyMySQL;
- the same read to its last byte with no row decoded (the server's share);
- ``SELECT ID, USER, FE FROM information_schema.processlist WHERE ID = <x>``
  (x: a session on FE 3), and the same ``WHERE USER = 'bench_few'`` (a user
  with one session per FE): each owner evaluates the WHERE, so only the
  matching rows cross the network.

There is no MariaDB column: MariaDB has no cluster. The targets are absolute:
SHOW PROCESSLIST p50 <= 1 s, a selective WHERE p50 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
import pymysql
from pymysql.constants import COMMAND

from bench import workloads
from bench.report import MISS, NA, PASS, Row, judge, ms, table
from bench.runinfo import Progress, machine
from bench.servers import Endpoint, FeCluster, bench_port, raise_nofile
from bench.stats import Summary, percentile, summarize
from frontend import procs

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SECTION = "processlist at scale"
FEW_USER, FEW_PASSWORD = "bench_few", "few-pw"
SHOW_TARGET_MS, WHERE_TARGET_MS = 1000.0, 100.0
IN_FLIGHT = 64  # logins in flight per holder


# ---------------------------------------------------------------- a holder process


async def _hold(ports: list[int], count: int, first: int, user: str, password: str, in_flight: int) -> None:
    """Log in ``count`` sessions (session i on ports[(first + i) % len]), report,
    hold them until told to close (or stdin closes), close them, report."""
    from coordinator.errors import SqlError
    from frontend.mysql_backend import BackendAddress, Connection

    loop = asyncio.get_running_loop()
    addresses = [BackendAddress("127.0.0.1", port, user, password) for port in ports]
    conns: list[Connection] = []
    failures: list[str] = []
    _say({"event": "loaded"})
    if (await loop.run_in_executor(None, sys.stdin.readline)).strip() != "go":
        return
    t0 = time.perf_counter()
    todo = iter(range(count))

    async def worker() -> None:
        for i in todo:
            address = addresses[(first + i) % len(addresses)]
            for attempt in range(5):
                try:
                    conns.append(await Connection(address).open(timeout=30))
                    break
                except SqlError as e:  # open() turns every failure into one
                    if attempt == 4:
                        failures.append(repr(e))
                    await asyncio.sleep(0.1 * (attempt + 1))

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    done = time.perf_counter()
    _say(
        {
            "event": "ready",
            "opened": len(conns),
            "failed": len(failures),
            "errors": failures[:3],
            "started": t0,
            "done": done,
        }
    )
    await loop.run_in_executor(None, sys.stdin.readline)  # "close", or EOF when the bench is gone
    t1 = time.perf_counter()
    for n, conn in enumerate(conns, 1):
        conn.close()
        if n % 500 == 0:
            await asyncio.sleep(0.01)  # let the transports flush their COM_QUIT
    await asyncio.sleep(0.2)
    _say({"event": "closed", "seconds": time.perf_counter() - t1})


def _say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def _hold_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale hold")
    p.add_argument("--ports", required=True, help="comma-separated MySQL ports of the FEs")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--first", type=int, default=0, help="global index of this holder's first session")
    p.add_argument("--user", default="root")
    p.add_argument("--password", default="")
    p.add_argument("--in-flight", type=int, default=IN_FLIGHT)
    args = p.parse_args(argv)
    ports = [int(x) for x in args.ports.split(",")]
    run = _hold(ports, args.count, args.first, args.user, args.password, args.in_flight)
    try:
        import uvloop
    except ImportError:  # the FEs' own loop where it exists, else asyncio's
        asyncio.run(run)
    else:
        uvloop.run(run)
    return 0


@dataclass
class Holder:
    proc: subprocess.Popen[str]
    count: int
    ready: dict[str, Any] = field(default_factory=dict)

    def read(self, event: str, timeout: float) -> dict[str, Any]:
        """The holder's next message, which must be ``event``."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            # One line at a time: a holder says the next only after the bench's answer.
            if not select.select([self.proc.stdout], [], [], left)[0]:
                break
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"holder {self.proc.pid} exited ({self.proc.poll()}) before {event!r}")
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if message.get("event") == event:
                    return dict(message)
        raise TimeoutError(f"holder {self.proc.pid}: no {event!r} within {timeout}s")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()


def spawn_holders(ports: list[int], sessions: int, holders: int, log: Path) -> list[Holder]:
    out: list[Holder] = []
    base, extra = divmod(sessions, holders)
    first = 0
    stderr: IO[bytes] = open(log, "ab")  # noqa: SIM115 - handed to the children
    try:
        for i in range(holders):
            count = base + (1 if i < extra else 0)
            cmd = [sys.executable, "-m", "bench.scale", "hold", "--ports", ",".join(map(str, ports))]
            cmd += ["--count", str(count), "--first", str(first)]
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                preexec_fn=procs._die_with_parent,
            )
            out.append(Holder(proc, count))
            first += count
    finally:
        stderr.close()
    return out


# ---------------------------------------------------------------- looking inside the FEs

# (module, class or None for a module function, name, label): async functions
# timed per call by ``--stages`` (a probe missing from the FE code is skipped).
STAGES = [
    ("frontend.wire.server", "MysqlConnection", "_query", "COM_QUERY, whole statement (FE 1)"),
    ("frontend.statements.cluster", None, "processlist", "SHOW PROCESSLIST handler: rows + format_row (FE 1)"),
    ("frontend.statements.cluster", None, "processlist_table", "information_schema query handler (FE 1)"),
    ("coordinator.routing", "Router", "processlist", "router.processlist: ask every FE, merge, sort (FE 1)"),
    ("coordinator.routing", "Router", "_list_one", "router._list_one: one FE's rows (local, or the gRPC call)"),
    ("frontend.grpc_api", "PeerService", "List", "owner: Peer.List handler (before serializing)"),
    ("frontend.session_table", "SessionTable", "list_local", "owner: list_local (process_row each, WHERE)"),
    ("frontend.sqlite_backend", "SqliteBackend", "query_rows", "sqlite query_rows (load the rows, query; a thread)"),
    ("frontend.wire.server", "MysqlConnection", "_send_result", "wire: encode + write the result (waits the client)"),
]


def _install_stages(times: dict[str, list[float]]) -> None:
    import functools
    import importlib

    def wrap(original: Any, label: str) -> Any:
        @functools.wraps(original)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                times.setdefault(label, []).append((time.perf_counter() - t0) * 1000.0)

        return timed

    for module_name, cls_name, name, label in STAGES:
        module = importlib.import_module(module_name)
        owner = getattr(module, cls_name, None) if cls_name else module
        original = getattr(owner, name, None) if owner is not None else None
        if original is None:
            continue
        timed = wrap(original, label)
        setattr(owner, name, timed)
        for i, entry in enumerate(getattr(module, "HANDLERS", []) if cls_name is None else []):
            if entry[1] is original:  # the executor copies the (pattern, handler) pairs when it starts
                module.HANDLERS[i] = (entry[0], timed)


def _fe_main(argv: list[str]) -> int:
    """An FE (``frontend.cli``) looked into between SIGUSR1 (start) and SIGUSR2
    (stop; written to $SCALE_TRACE_DIR/<pid>-<n>.prof or .json): with
    SCALE_TRACE=profile, cProfile of the event-loop thread; with
    SCALE_TRACE=stages, the time of each call of the STAGES functions."""
    out = Path(os.environ["SCALE_TRACE_DIR"])
    mode = os.environ.get("SCALE_TRACE", "profile")
    state: dict[str, Any] = {"on": False, "profile": None, "n": 0}
    times: dict[str, list[float]] = {}
    if mode == "stages":
        _install_stages(times)

    def start(*_: object) -> None:
        if state["on"]:
            return
        state["on"] = True
        times.clear()
        if mode == "profile":
            state["profile"] = cProfile.Profile()
            state["profile"].enable()

    def stop(*_: object) -> None:
        if not state["on"]:
            return
        state["on"] = False
        state["n"] += 1
        suffix = "prof" if mode == "profile" else "json"
        tmp = out / f".{os.getpid()}-{state['n']}.{suffix}"
        if mode == "profile":
            profile, state["profile"] = state["profile"], None
            profile.disable()
            profile.dump_stats(tmp)
        else:
            tmp.write_text(json.dumps(times))
        tmp.rename(out / f"{os.getpid()}-{state['n']}.{suffix}")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from frontend.cli import main

    return main(argv)


class Tracer:
    """Looks into every FE of a cluster over one phase of the measurement:
    cProfile (``mode`` "profile") or the STAGES timings ("stages")."""

    def __init__(self, cluster: FeCluster, directory: Path, mode: str) -> None:
        self.cluster = cluster
        self.dir = directory
        self.mode = mode
        self.phases = 0

    def start(self) -> None:
        for fe in self.cluster.fes:
            os.kill(fe.pid, signal.SIGUSR1)
        time.sleep(0.2)  # the FEs handle the signal on their next loop turn

    def stop(self, phase: str, queries: int, top: int = 30) -> str:
        self.phases += 1
        for fe in self.cluster.fes:
            os.kill(fe.pid, signal.SIGUSR2)
        parts = [f"== {self.mode}: {phase} ({queries} statements sent to fe1)"]
        suffix = "prof" if self.mode == "profile" else "json"
        for fe in self.cluster.fes:
            path = self.dir / f"{fe.pid}-{self.phases}.{suffix}"
            deadline = time.monotonic() + 30
            while not path.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not path.exists():
                parts.append(f"-- {fe.endpoint.name}: nothing written")
            elif self.mode == "stages":
                parts.append(f"-- {fe.endpoint.name}: calls, median ms per call, p90, total ms per statement")
                for label, values in json.loads(path.read_text()).items():
                    ordered = sorted(values)
                    parts.append(
                        f"  {len(values):5d}  {percentile(ordered, 0.5):8.1f}  {percentile(ordered, 0.9):8.1f}  "
                        f"{sum(values) / max(1, queries):8.1f}  {label}"
                    )
            else:
                for order in ("cumulative", "tottime"):
                    buf = io.StringIO()
                    stats = pstats.Stats(str(path), stream=buf)
                    stats.strip_dirs().sort_stats(order).print_stats(top)
                    body = buf.getvalue()
                    body = body[body.find("   ncalls") :] if "   ncalls" in body else body
                    parts.append(f"-- {fe.endpoint.name} (pid {fe.pid}), by {order}, {stats.total_tt:.2f}s profiled")
                    parts.append(body.rstrip())
        return "\n".join(parts)


# ---------------------------------------------------------------- the row


class Query:
    """One sample: ``sql`` sent on ``conn`` and its answer read to the end,
    every row decoded by PyMySQL (``decode``) or only framed (``SHOW
    PROCESSLIST`` to the last byte, as ``workloads.processlist_wire``)."""

    def __init__(self, conn: pymysql.Connection, sql: str, decode: bool = True) -> None:
        self.conn = conn
        self.sql = sql
        self.decode = decode
        self.cur = conn.cursor()
        self.rows = 0

    def __call__(self) -> float:
        t0 = time.perf_counter()
        if self.decode:
            self.cur.execute(self.sql)
            self.rows = len(self.cur.fetchall())
        else:
            conn = self.conn
            conn._execute_command(COMMAND.COM_QUERY, self.sql)
            columns = conn._read_packet().read_length_encoded_integer()
            for _ in range(columns):
                conn._read_packet()
            conn._read_packet()  # EOF after the column definitions (PyMySQL does not ask for DEPRECATE_EOF)
            count = 0
            while not conn._read_packet().is_eof_packet():
                count += 1
            self.rows = count
        return (time.perf_counter() - t0) * 1000.0


class OtherLoad:
    """The CPU that processes other than ``pids`` use from now on: the
    machine's busy time less theirs (another job's tests on a shared machine)."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                self.procs.append(psutil.Process(pid))
        self.t0 = time.monotonic()
        self.busy0, self.ours0 = self._busy(), self._ours()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()  # not irq/softirq: loopback traffic of our own processes lands there
        return t.user + t.nice + t.system

    def _ours(self) -> float:
        total = 0.0
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def cores(self) -> float:
        """Cores used by the others since this object was made."""
        elapsed = time.monotonic() - self.t0
        others = (self._busy() - self.busy0) - (self._ours() - self.ours0)
        return max(0.0, others / elapsed) if elapsed > 0 else 0.0


@dataclass
class ScaleResult:
    rows: list[Row]
    facts: dict[str, Any]
    notes: list[str]
    traces: list[str]  # --profile / --stages reports


def run(
    sessions: int = 20_000,
    fes: int = 3,
    holders: int = 4,
    iterations: int = 30,
    trace: str = "",  # "profile" (cProfile) or "stages" (timed FE functions), during each query phase
    say: Progress | None = None,
) -> ScaleResult:
    """Start Redis and ``fes`` FEs, hold ``sessions`` idle sessions over them, sample the queries."""
    say = say or Progress()
    soft, _ = raise_nofile(1 << 20)
    per_holder = -(-sessions // holders)
    if per_holder + 200 > soft:
        raise SystemExit(f"open-files limit {soft}: {per_holder} sessions per holder do not fit; raise --holders")
    if sessions // fes + 500 > soft:
        raise SystemExit(f"open-files limit {soft}: {sessions // fes} sessions per FE do not fit; raise --fes")
    workdir = Path(tempfile.mkdtemp(prefix="fecluster-bench-scale-"))
    facts: dict[str, Any] = {"sessions": sessions, "fes": fes, "holders": holders, "workdir": str(workdir)}
    notes: list[str] = []
    samples: dict[str, Summary] = {}
    reports: list[str] = []
    ports: set[int] = set()
    (workdir / "redis").mkdir()
    redis = procs.start_redis(bench_port(ports), workdir / "redis")
    say(f"redis-server on port {redis.port}, FE logs in {workdir}")
    cluster = FeCluster(redis.url, fes, workdir, ports)
    tracer: Tracer | None = None
    if trace:
        (workdir / "trace").mkdir()
        cluster.launcher = (sys.executable, "-m", "bench.scale", "fe")
        cluster.env = {"SCALE_TRACE_DIR": str(workdir / "trace"), "SCALE_TRACE": trace}
    crowd: list[Holder] = []
    control: list[pymysql.Connection] = []
    try:
        say(f"starting {fes} FEs")
        cluster.start()
        if trace:
            tracer = Tracer(cluster, workdir / "trace", trace)
        endpoints = [fe.endpoint for fe in cluster.fes]
        asker = endpoints[0].connect(read_timeout=120)
        control.append(asker)
        with asker.cursor() as cur:
            cur.execute(f"CREATE USER '{FEW_USER}'@'%' IDENTIFIED BY '{FEW_PASSWORD}'")
        few = [Endpoint(e.name, e.host, e.port, FEW_USER, FEW_PASSWORD).connect() for e in endpoints]
        control += few
        target_id = few[-1].thread_id()  # a session on the last FE: its row crosses the network
        pids = [fe.pid for fe in cluster.fes] + [redis.proc.pid]
        rss_before = [workloads.rss(fe.pid) for fe in cluster.fes]

        say(f"{holders} holder processes: {sessions:,} sessions over {fes} FEs")
        crowd = spawn_holders([e.port for e in endpoints], sessions, holders, workdir / "holders.log")
        for h in crowd:
            h.read("loaded", 60)
        go = time.perf_counter()
        for h in crowd:
            h.send("go")
        for h in crowd:
            h.ready = h.read("ready", 600)
        logged_in = max(h.ready["done"] for h in crowd) - go
        opened = sum(h.ready["opened"] for h in crowd)
        failed = sum(h.ready["failed"] for h in crowd)
        if failed:
            errors = [e for h in crowd for e in h.ready["errors"]][:3]
            notes.append(f"{failed} of {sessions} logins failed after 5 tries: {errors}")
        say(f"  {opened:,} sessions logged in after {logged_in:.1f}s ({opened / logged_in:.0f}/s)")
        expected = opened + len(control)
        live = cluster.wait_registered(expected, timeout=300)
        registered = time.perf_counter() - go
        if live != expected:
            notes.append(f"the registry held {live} sessions, {expected} expected")
        say(f"  the registry counts {live:,} sessions {registered:.1f}s after the first login")
        usage = workloads.settle(pids, timeout=120)
        if usage >= 5.0:
            notes.append(f"the FEs and Redis still used {usage:.0f}% CPU when the measurement started")
        rss_after = [workloads.rss(fe.pid) for fe in cluster.fes]
        holder_rss = [workloads.rss(h.proc.pid) for h in crowd]
        facts["login"] = {
            "opened": opened,
            "failed": failed,
            "seconds": round(logged_in, 2),
            "per_second": round(opened / logged_in),
            "registered_after": round(registered, 2),
            "in_flight_per_holder": IN_FLIGHT,
        }
        facts["rss"] = {
            e.name: {
                "before": b,
                "after": a,
                "sessions": (opened // fes),
                "kb_per_session": round((a - b) / 1024 / max(1, opened // fes), 2),
            }
            for e, b, a in zip(endpoints, rss_before, rss_after, strict=True)
        }
        facts["holder_rss"] = holder_rss
        for e, b, a in zip(endpoints, rss_before, rss_after, strict=True):
            say(f"  {e.name}: RSS {b / 2**20:.0f} -> {a / 2**20:.0f} MiB")

        where = "SELECT ID, USER, FE FROM information_schema.processlist WHERE "
        show_ops = {
            "show": Query(asker, "SHOW PROCESSLIST"),
            "show.wire": Query(asker, "SHOW PROCESSLIST", decode=False),
        }
        where_ops = {
            "where.id": Query(asker, f"{where}ID = {target_id}"),
            "where.user": Query(asker, f"{where}USER = '{FEW_USER}'"),
        }
        for title, ops, n in (
            ("SHOW PROCESSLIST", show_ops, iterations),
            ("processlist WHERE", where_ops, 2 * iterations),
        ):
            say(f"{title}: {', '.join(ops)}, {n} samples each (interleaved), {live:,} live sessions")
            workloads.settle(pids, timeout=30)
            if tracer:
                tracer.start()
            others = OtherLoad([*pids, *(h.proc.pid for h in crowd), os.getpid()])
            taken = workloads.interleave(ops, n, warmup=3)
            cores = others.cores()
            facts.setdefault("other_load_cores", {})[title] = round(cores, 2)
            if cores >= 0.1:
                notes.append(
                    f"{title}: processes other than the bench's used {cores:.1f} of {os.cpu_count()} cores "
                    "during the samples (another job on the machine: expect slower, noisier figures)"
                )
            if tracer:
                reports.append(tracer.stop(title, (n + 3) * len(ops)))
                if trace == "stages":
                    say(reports[-1])
            for key, values in taken.items():
                summary = samples[key] = summarize(values, rows=ops[key].rows, live=live)
                say(f"  {key}: p50 {ms(summary.p50)} ms, p99 {ms(summary.p99)} ms ({summary.extra['rows']} rows)")
    finally:
        say("closing the sessions, stopping the FEs")
        for h in crowd:
            h.send("close")
        for h in crowd:
            with contextlib.suppress(Exception):
                h.read("closed", 120)
            with contextlib.suppress(Exception):
                h.proc.stdin.close()  # type: ignore[union-attr]
            with contextlib.suppress(subprocess.TimeoutExpired):
                h.proc.wait(30)
            if h.proc.poll() is None:
                h.proc.kill()
                h.proc.wait()
        # Let the FEs unregister every session before SIGTERM (bench/README.md, "Known effects").
        left = cluster.wait_registered(len(control), timeout=120) if cluster.fes else 0
        for c in control:
            with contextlib.suppress(Exception):
                c.close()
        if cluster.fes and left > len(control):
            notes.append(f"{left} sessions were still registered 120s after the holders closed theirs")
        cluster.stop()
        redis.stop()
    return ScaleResult(rows(samples, sessions, fes), facts, notes, reports)


def rows(samples: dict[str, Summary], sessions: int, fes: int) -> list[Row]:
    s = samples.get
    out: list[Row] = []
    who = f"{sessions:,} sessions over {fes} FEs"

    def timed(key: str, figure: str, limit: float | None) -> Row:
        summary = s(key)
        target, result, detail = "", "", ""
        if limit is not None:
            target = f"p50 <= {limit / 1000:g} s" if limit >= 1000 else f"p50 <= {limit:g} ms"
            result, detail = judge((None if summary is None else summary.p50 <= limit, ""))
        return Row(
            f"scale_{key.replace('.', '_')}", SECTION, figure, fe=summary, target=target, result=result, detail=detail
        )

    out.append(timed("show", f"SHOW PROCESSLIST, {who}", SHOW_TARGET_MS))
    out.append(timed("show.wire", "  same, to the last byte, rows not decoded", None))
    out.append(timed("where.id", "  information_schema.processlist WHERE ID = x", WHERE_TARGET_MS))
    out.append(timed("where.user", f"  same, WHERE USER = '{FEW_USER}' ({fes} rows)", WHERE_TARGET_MS))
    return out


def facts_lines(facts: dict[str, Any]) -> list[str]:
    lines = []
    login = facts.get("login")
    if login:
        lines.append(
            f"login: {login['opened']:,} sessions by {facts['holders']} holder processes in {login['seconds']:.1f}s "
            f"({login['per_second']:,}/s); the registry counted them all {login['registered_after']:.1f}s after "
            "the first login"
        )
    for name, r in facts.get("rss", {}).items():
        lines.append(
            f"{name} RSS: {r['before'] / 2**20:.0f} MiB idle -> {r['after'] / 2**20:.0f} MiB with ~{r['sessions']:,} "
            f"sessions ({r['kb_per_session']:.1f} KB each)"
        )
    return lines


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hold"]:
        return _hold_main(argv[1:])
    if argv[:1] == ["fe"]:
        return _fe_main(argv[1:])
    p = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sessions", type=int, default=20_000, help="idle sessions held over the FEs (20,000)")
    p.add_argument("--fes", type=int, default=3, help="FE processes (3)")
    p.add_argument("--holders", type=int, default=4, help="processes holding the sessions (4)")
    p.add_argument("--iterations", type=int, default=30, help="SHOW PROCESSLIST samples; the WHEREs take 2x (30)")
    look = p.add_mutually_exclusive_group()
    look.add_argument(
        "--profile", action="store_true", help="cProfile every FE's event loop during each query phase (slows it)"
    )
    look.add_argument(
        "--stages", action="store_true", help="time the FE functions of the processlist path (STAGES) per call"
    )
    p.add_argument("--json", default=None, metavar="PATH", help="default: bench/results/scale-<time>.json")
    args = p.parse_args(argv)

    started = time.monotonic()
    meta = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine()}
    m = meta["machine"]
    print(
        f"fecluster bench.scale  {meta['date']}  commit {m['commit'] or '?'}\n"
        f"machine: nproc {m['nproc']}, {m['cpu'] or 'cpu ?'}, {m['memory_gb']} GiB, Python {m['python']}\n"
        f"samples: SHOW PROCESSLIST {args.iterations}, WHERE {2 * args.iterations}; times in ms; client: PyMySQL, "
        "ssl_disabled",
        flush=True,
    )
    trace = "profile" if args.profile else "stages" if args.stages else ""
    result = run(args.sessions, args.fes, args.holders, args.iterations, trace)
    meta["seconds"] = round(time.monotonic() - started, 1)
    print()
    print(table(result.rows))
    print()
    for line in facts_lines(result.facts):
        print(line)
    results = [r.result for r in result.rows if r.target]
    print(
        f"targets: {results.count(PASS)} pass, {results.count(MISS)} miss, {results.count(NA)} n/a; "
        f"run took {meta['seconds']:.0f}s"
    )
    for note in result.notes:
        print(f"note: {note}")
    stamp = f"{dt.datetime.now():%Y%m%d-%H%M%S}"
    if result.traces:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"scale-{trace}-{stamp}.txt"
        path.write_text("\n\n".join(result.traces) + "\n")
        print(f"{trace}: {path}")
    document = {
        "meta": meta,
        "rows": [r.to_json() for r in result.rows],
        "facts": result.facts,
        "notes": result.notes,
    }
    out = Path(args.json) if args.json else RESULTS / f"scale-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
