"""sysbench through the FEs beside the same server directly (issues 20 and 22).

    python -m bench.sysbench [--time SECONDS] [--threads N] [--json PATH] [--embedded-only]

Starts a private ``mariadbd`` (``tests.mariadb``, a free port: never the
shared server on 3306), a private Redis, 2 FEs over the MariaDB behind
HAProxy (round robin), then runs sysbench 1.0 with the same options against
HAProxy and against the MariaDB directly, interleaved per row:

- ``oltp_point_select`` and ``oltp_read_write``, each in sysbench's default
  mode (prepared statements: COM_STMT_*) and with ``--db-ps-mode=disable``
  (text statements);
- then ``oltp_read_write`` (text) through 3 FEs sharing one embedded
  directory, beside the same MariaDB (``--embedded-only``: this row alone).

Every row prints transactions/s, the p50 latency (ms) and the errors sysbench
counted; a run with errors fails the row. sysbench comes from Debian
(``apt-get install sysbench``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.report import Row, judge
from bench.servers import FeCluster
from frontend import procs
from tests.haproxy import HAProxy
from tests.mariadb import MariaDB

USER, PASSWORD = "fesvc", "bench-pw"
TABLES, TABLE_SIZE = 2, 10_000
RELAY, EMBEDDED = "2 FEs + HAProxy over MariaDB", "3 FEs, one embedded directory"
TESTS = (
    ("oltp_point_select", "prepared", ()),
    ("oltp_point_select", "text", ("--db-ps-mode=disable",)),
    ("oltp_read_write", "prepared", ()),
    ("oltp_read_write", "text", ("--db-ps-mode=disable",)),
)


def sysbench(
    port: int | tuple[int, ...], test: str, command: str, extra: tuple[str, ...], threads: int, seconds: int
) -> dict[str, Any]:
    """One sysbench command against 127.0.0.1:port as root: tps, p50 ms, errors. Several
    ports: sysbench's connections take them in turn (its --mysql-port list)."""
    ports = port if isinstance(port, tuple) else (port,)
    args = [
        "sysbench",
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        f"--mysql-port={','.join(map(str, ports))}",
        "--mysql-user=root",
        "--mysql-password=",
        "--mysql-db=sbtest",
        f"--tables={TABLES}",
        f"--table-size={TABLE_SIZE}",
        f"--threads={threads}",
        f"--time={seconds}",
        "--percentile=50",
        *extra,
        test,
        command,
    ]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    except subprocess.TimeoutExpired as e:
        return {"tps": 0.0, "p50_ms": None, "errors": None, "exit": -1, "stderr": f"timed out: {e}"}
    if command != "run":
        if done.returncode != 0:
            raise RuntimeError(f"sysbench {test} {command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return {}
    out = done.stdout
    tps = re.search(r"transactions:\s+\d+\s+\(([\d.]+) per sec", out)
    p50 = re.search(r"50th percentile:\s+([\d.]+)", out)
    errors = re.search(r"ignored errors:\s+(\d+)", out)
    return {
        "tps": float(tps.group(1)) if tps else 0.0,
        "p50_ms": float(p50.group(1)) if p50 else None,
        "errors": int(errors.group(1)) if errors else None,
        "exit": done.returncode,
        "stderr": done.stderr[-500:] if done.returncode else "",
    }


@contextlib.contextmanager
def stack(workdir: Path) -> Iterator[tuple[MariaDB, int, tuple[int, ...]]]:
    """MariaDB, the HAProxy port in front of 2 FEs over it, and an embedded 3-FE cluster's ports."""
    server = MariaDB(USER, PASSWORD)
    redis = procs.start_redis()
    clusters: list[FeCluster] = []
    balancer: HAProxy | None = None
    try:
        redis_url = redis.url
        relay = FeCluster(
            redis_url, 2, workdir, set(), backend=f"mysql://{USER}:{PASSWORD}@127.0.0.1:{server.port}"
        ).start()
        clusters.append(relay)
        balancer = HAProxy([fe.endpoint.port for fe in relay.fes])
        shared = workdir / "embedded"
        embedded = FeCluster(redis_url, 3, workdir, set(), backend=f"sqlite://{shared}").start()
        clusters.append(embedded)
        yield server, balancer.port, tuple(fe.endpoint.port for fe in embedded.fes)
    finally:
        if balancer is not None:
            balancer.stop()
        for cluster in clusters:
            cluster.stop()
        redis.stop()
        server.stop()


def run(seconds: int, threads: int, embedded_only: bool = False) -> dict[str, Any]:
    if shutil.which("sysbench") is None:
        raise SystemExit("sysbench is not installed (Debian: apt-get install sysbench)")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fecluster-sysbench-") as tmp, stack(Path(tmp)) as (server, lb, emb):
        for port in (server.port, lb, *emb):
            procs.wait_port("127.0.0.1", port, 30)
        for port in (server.port, emb[0]):  # the relay sees the server's sbtest (one database for both)
            subprocess.run(
                ["mariadb", "--host=127.0.0.1", f"--port={port}", "--user=root", "--protocol=TCP", "-e",
                 "CREATE DATABASE IF NOT EXISTS sbtest"],
                check=True, capture_output=True, timeout=30,
            )  # fmt: skip
            # one thread per table whatever --threads says: a single thread's bulk INSERTs run
            # past the embedded backend's 256 KB statement limit
            sysbench(port, "oltp_read_write", "prepare", (), TABLES, seconds)
        for test, mode, extra in () if embedded_only else TESTS:
            fe = sysbench(lb, test, "run", extra, threads, seconds)
            direct = sysbench(server.port, test, "run", extra, threads, seconds)
            rows.append(
                {"test": test, "mode": mode, "through": "2 FEs + HAProxy over MariaDB", "fe": fe, "mariadb": direct}
            )
            print(_line(rows[-1]), file=sys.stderr, flush=True)
        # sysbench's threads connect to the 3 FEs in turn: they share the directory, not a process
        fe = sysbench(emb, "oltp_read_write", "run", ("--db-ps-mode=disable",), threads, seconds)
        direct = sysbench(server.port, "oltp_read_write", "run", ("--db-ps-mode=disable",), threads, seconds)
        rows.append(
            {
                "test": "oltp_read_write",
                "mode": "text",
                "through": "3 FEs, one embedded directory",
                "fe": fe,
                "mariadb": direct,
            }
        )
        print(_line(rows[-1]), file=sys.stderr, flush=True)
    return {"threads": threads, "seconds": seconds, "rows": rows}


def embedded_rows(seconds: int = 20, threads: int = 4) -> list[Row]:
    """The embedded row as ``python -m bench`` prints rows: oltp_read_write through 3 FEs
    sharing one directory, 0 errors wanted, its tps beside MariaDB's."""
    row = run(seconds, threads, embedded_only=True)["rows"][0]
    fe, direct = row["fe"], row["mariadb"]
    result, detail = judge(
        (
            fe["errors"] == 0 and fe["exit"] == 0,
            f"{fe['tps']:.1f} tps vs MariaDB {direct['tps']:.1f}, p50 {fe['p50_ms']} ms, errors {fe['errors']}",
        )
    )
    return [
        Row(
            "sysbench_embedded_rw",
            "sysbench",
            f"oltp_read_write (text), {threads} threads over 3 FEs on one embedded directory: tps / MariaDB's",
            unit="x",
            value=fe["tps"] / direct["tps"] if direct["tps"] else None,
            target="0 errors",
            result=result,
            detail=detail,
            extra={"fe": fe, "mariadb": direct},
        )
    ]


def _line(row: dict[str, Any]) -> str:
    fe, direct = row["fe"], row["mariadb"]
    share = fe["tps"] / direct["tps"] * 100 if direct["tps"] else 0.0
    p50 = (
        f"p50 {fe['p50_ms']} vs {direct['p50_ms']} ms"
        if fe["p50_ms"] is not None and direct["p50_ms"] is not None
        else "p50 n/a"
    )
    return (
        f"{row['test']:<18} {row['mode']:<8} {row['through']:<32} {fe['tps']:>9.1f} tps vs {direct['tps']:>9.1f} "
        f"({share:4.0f}%), {p50}, errors {fe['errors']} (exit {fe['exit']})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sysbench", description=__doc__.splitlines()[0])
    p.add_argument("--time", type=int, default=20, help="seconds per sysbench run (20)")
    p.add_argument("--threads", type=int, default=4, help="sysbench threads (4)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument(
        "--embedded-only", action="store_true", help="only the embedded row (3 FEs on one directory) beside MariaDB"
    )
    args = p.parse_args(argv)
    results = run(args.time, args.threads, args.embedded_only)
    for row in results["rows"]:
        print(_line(row))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    failed = [r for r in results["rows"] if r["fe"]["errors"] or r["fe"]["exit"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
