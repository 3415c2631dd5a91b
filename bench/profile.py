"""``python -m bench.profile``: where an FE spends its time on one workload.

Starts a private redis-server and 2 FEs, drives one workload against FE 1
for a few seconds while ``py-spy record`` samples the FE process(es), then
prints the functions with the most samples (inclusive and self) and keeps
the raw collapsed stacks (flamegraph input) under bench/results/.

    pip install py-spy                      # once, into the venv
    python -m bench.profile connect         # or select1, kill-same, kill-cross, processlist

py-spy needs ptrace rights on the FE processes (root, or
kernel.yama.ptrace_scope=0).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench import workloads
from bench.runinfo import RESULTS
from bench.servers import FeCluster, bench_port, raise_nofile
from frontend import procs

_LINE = re.compile(r":\d+\)$")  # "func (file.py:123)" -> "func (file.py)"
WORKLOADS = ("connect", "select1", "kill-same", "kill-cross", "processlist")


def drive(workload: str, cluster: FeCluster, stop: threading.Event, idle: int, counter: list[int]) -> None:
    fe1, fe2 = (fe.endpoint for fe in cluster.fes[:2])
    if workload == "connect":
        op = workloads.connect_close(fe1)
        while not stop.is_set():
            op()
            counter[0] += 1
        return
    pool = workloads.IdlePool()
    with contextlib.ExitStack() as stack:
        conns = [fe1.connect(), fe1.connect(), fe2.connect()]
        for c in conns:
            stack.callback(c.close)
        stack.callback(pool.close_all)
        if idle:
            pool.fill({fe1: idle // 2, fe2: idle - idle // 2})
        if workload == "select1":
            op = workloads.select_1(conns[0])
        elif workload == "processlist":
            cur = conns[0].cursor()

            def op() -> None:
                cur.execute("SHOW PROCESSLIST")
                cur.fetchall()
        else:
            victim = conns[1] if workload == "kill-same" else conns[2]
            # A short delay: more KILLs per second of profile; misses are harmless here.
            kill = workloads.KillOp(conns[0], victim, delay=0.01)
            stack.callback(kill.close)
            op = kill
        while not stop.is_set():
            op()
            counter[0] += 1


def summarize_raw(path: Path, top: int) -> str:
    """Top functions of py-spy's collapsed stacks: inclusive and self sample counts."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"-- top {top} by {title} samples")
        for frame, n in counter.most_common(top):
            lines.append(f"{100 * n / total:5.1f}%  {frame}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("workload", choices=WORKLOADS)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    p.add_argument(
        "--idle",
        type=int,
        default=None,
        help="idle connections held over the 2 FEs during the run (default: 3000 for processlist, else 0)",
    )
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--all-fes", action="store_true", help="also profile FE 2 (the owner in kill-cross)")
    p.add_argument("--native", action="store_true", help="py-spy --native: C frames too (uvloop, grpc, syscalls)")
    args = p.parse_args(argv)
    if args.idle is None:
        args.idle = 3000 if args.workload == "processlist" else 0
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    raise_nofile(4 * args.idle + 4000)
    work = Path(tempfile.mkdtemp(prefix="fecluster-profile-"))
    (work / "redis").mkdir()
    redis = procs.start_redis(bench_port(), work / "redis")
    cluster = FeCluster(redis.url, 2, work, set())
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = f"{dt.datetime.now():%Y%m%d-%H%M%S}"
    try:
        cluster.start()
        stop = threading.Event()
        counter = [0]
        driver = threading.Thread(target=drive, args=(args.workload, cluster, stop, args.idle, counter))
        driver.start()
        time.sleep(1.0 + args.idle / 400)  # warm up, open the idle connections
        targets = cluster.fes if args.all_fes else cluster.fes[:1]
        cpu_before = [psutil.Process(fe.pid).cpu_times() for fe in cluster.fes]
        ops_before = counter[0]
        t0 = time.monotonic()
        recorders = []
        outputs = []
        for i, fe in enumerate(targets, 1):
            out = RESULTS / f"profile-{args.workload}-fe{i}-{stamp}.txt"
            outputs.append(out)
            recorders.append(
                subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(fe.pid),
                        "--rate",
                        str(args.rate),
                        "--duration",
                        str(int(args.seconds)),
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                        *(["--native"] if args.native else ["--nonblocking"]),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        for rec in recorders:
            _, err = rec.communicate()
            if rec.returncode:
                print(err.decode(errors="replace"), file=sys.stderr)
        ops, elapsed = counter[0] - ops_before, time.monotonic() - t0
        cpu_after = [psutil.Process(fe.pid).cpu_times() for fe in cluster.fes]
        stop.set()
        driver.join(60)
        print(f"{args.workload}: {ops} operations in {elapsed:.1f}s while sampled ({ops / elapsed:.0f}/s)")
        for i, (a, b) in enumerate(zip(cpu_before, cpu_after, strict=True), 1):
            used = (b.user + b.system) - (a.user + a.system)
            print(
                f"fe{i}: {used:.2f}s CPU ({100 * used / elapsed:.0f}% of a core), "
                f"{1000 * used / max(ops, 1):.3f} ms CPU per operation (user {b.user - a.user:.2f}s, "
                f"system {b.system - a.system:.2f}s)"
            )
        for out in outputs:
            print(f"\n== {out}")
            print(summarize_raw(out, args.top))
    finally:
        cluster.stop()
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
