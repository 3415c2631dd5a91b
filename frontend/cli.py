"""The ``fecluster`` command: ``up``, ``node``, ``processlist``, ``kill``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from frontend import procs
from frontend.config import add_arguments, from_namespace, to_flags


def _run_async(main: object) -> None:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]


# ---------------------------------------------------------------- node


async def _node_main(args: argparse.Namespace) -> int:
    from frontend.node import Node

    node = Node(from_namespace(args))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_stop)
    try:
        await node.startup()
    except Exception:
        # A half-started node (its port is taken, Redis never answered) must
        # exit, not hang: release what it holds within a bound and leave.
        logging.getLogger("fecluster.node").exception("FE failed to start")
        await node.abort_startup()
        logging.shutdown()
        os._exit(1)
    try:
        await node.serve()
    finally:
        await node.shutdown()
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    if not args.cluster_secret:
        print(
            "fecluster node: --cluster-secret (or FECLUSTER_CLUSTER_SECRET) is required: every FE-to-FE "
            "call must carry it, so that nobody else can kill or list sessions (fecluster up makes one)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    _run_async(_node_main(args))
    return 0


# ---------------------------------------------------------------- up


def _busy_ports(host: str, ports: list[int]) -> list[int]:
    busy = []
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                busy.append(port)
    return busy


def cmd_up(args: argparse.Namespace) -> int:
    base = from_namespace(args)
    ports = [
        port + i
        for i in range(args.nodes)
        for port in (base.mysql_port, base.grpc_port, base.http_port)
        if port  # http_port 0: off
    ]
    busy = _busy_ports(base.bind_host, ports)
    if busy:
        print(
            f"fecluster up: port(s) {', '.join(map(str, busy))} on {base.bind_host} are in use "
            "(another fecluster up?); pick others with --mysql-port/--grpc-port/--http-port",
            file=sys.stderr,
        )
        return 2
    work = Path(tempfile.mkdtemp(prefix="fecluster-up-"))
    redis = None
    nodes = []
    stopping = False
    failed = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if not base.redis_url:
            try:
                redis = procs.start_redis(directory=work)
            except FileNotFoundError as e:
                print(f"fecluster up: {e}", file=sys.stderr)
                return 2
            base = replace(base, redis_url=redis.url)
        base = replace(
            base,
            cluster_secret=base.cluster_secret or secrets.token_hex(16),
            backend=base.backend or f"sqlite://{work / 'data'}",  # one directory: every FE sees the same data
        )
        for i in range(args.nodes):
            fe = replace(
                base,
                mysql_port=base.mysql_port + i,
                grpc_port=base.grpc_port + i,
                http_port=base.http_port + i if base.http_port else 0,
            )
            flags = to_flags(fe)
            env = procs.node_env()
            if "root_password" in flags:  # not on the command line, where ps shows it
                env["FECLUSTER_ROOT_PASSWORD"] = str(flags.pop("root_password"))
            nodes.append(procs.spawn(procs.node_command(**flags), env=env, log=work / f"fe{i + 1}.log"))
        for i, proc in enumerate(nodes):
            try:
                procs.wait_port(base.advertise_host, base.mysql_port + i, 30, proc)
                if base.http_port:
                    procs.wait_port(base.advertise_host, base.http_port + i, 30, proc)
            except (RuntimeError, TimeoutError):
                failed = True
                print(f"fecluster up: fe{i + 1} did not start:\n{_tail(work / f'fe{i + 1}.log')}", file=sys.stderr)
                return 1
        print(f"fecluster: {args.nodes} FE(s), cluster {base.cluster!r}, Redis {base.redis_url}, logs in {work}")
        print(f"{'FE':<4} {'MySQL':<22} {'gRPC (FE column)':<22} {'sessions page':<30} {'connect with'}")
        for i in range(args.nodes):
            mysql = f"{base.advertise_host}:{base.mysql_port + i}"
            grpc_addr = f"{base.advertise_host}:{base.grpc_port + i}"
            web = f"http://{base.advertise_host}:{base.http_port + i}/" if base.http_port else "(off)"
            print(
                f"fe{i + 1:<2} {mysql:<22} {grpc_addr:<22} {web:<30} "
                f"mysql -h {base.advertise_host} -P {base.mysql_port + i} -u root"
            )
        print("Ctrl+C stops everything.", flush=True)
        while not stopping:
            for i, proc in enumerate(nodes):
                if proc.poll() is not None:
                    failed = True
                    print(
                        f"fe{i + 1} exited with {proc.returncode}:\n{_tail(work / f'fe{i + 1}.log')}", file=sys.stderr
                    )
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        for proc in nodes:
            proc.terminate()
        for proc in nodes:
            procs.stop(proc)
        if redis is not None:
            redis.stop()
        if failed:
            print(f"fecluster: stopped; logs kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
            print("fecluster: stopped", flush=True)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"


# ---------------------------------------------------------------- admin


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from frontend.client import Client

    password = os.environ.get("FECLUSTER_PASSWORD")
    if password is None:
        password = getpass.getpass(f"Password for {args.user}: ") if args.password_prompt else ""
    return Client(args.fe, args.user, password)


def _fail(e: Exception) -> int:
    import grpc

    from frontend.client import FeError

    if isinstance(e, FeError):
        print(str(e), file=sys.stderr)
        return 1
    if isinstance(e, grpc.RpcError):
        print(f"ERROR: {e.code().name}: {e.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    raise e


COLUMNS = ("Id", "User", "Host", "LoginTime", "Db", "Command", "Time", "State", "QueryId", "Info", "FE")


def _row_json(row) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """A processlist row as SQL shows it: numbers as numbers, NULL as null."""
    from coordinator.processlist import row_dict

    data = row_dict(row)
    data["db"], data["info"] = row.db or None, row.info or None
    return data


def cmd_processlist(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            rows, failures = client.processlist(full=args.full)
    except Exception as e:  # noqa: BLE001
        return _fail(e)
    if args.json:
        out = {"rows": [_row_json(r) for r in rows], "errors": [{"fe": f.fe, "message": f.message} for f in failures]}
        print(json.dumps(out, indent=2))
        return 0
    table = [COLUMNS] + [
        (str(r.id), r.user, r.host, r.login_time, r.db, r.command, str(r.time), r.state, r.query_id, r.info, r.fe)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for f in failures:
        print(f"warning: {f.fe}: {f.message}", file=sys.stderr)
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    from coordinator.ids import is_query_id

    target: int | str
    if args.id.isdigit():
        target = int(args.id)
    elif args.query and is_query_id(args.id):
        target = args.id
    else:
        what = "a connection id (a number) or a query id (16hex-16hex)" if args.query else "a connection id (a number)"
        print(f"fecluster kill: error: ID must be {what}, not {args.id!r}", file=sys.stderr)
        return 2
    try:
        with _client(args) as client:
            owner = client.kill(target, query=args.query)
    except Exception as e:  # noqa: BLE001
        return _fail(e)
    print(f"killed {'query' if args.query else 'connection'} {args.id} on {owner}")
    return 0


# ---------------------------------------------------------------- parser


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fecluster", description="Connection coordinator for multi-FE SQL clusters")
    sub = p.add_subparsers(dest="command", required=True)

    node = sub.add_parser("node", help="run one FE in the foreground")
    add_arguments(node)
    node.set_defaults(func=cmd_node)

    up = sub.add_parser(
        "up",
        help="run a local cluster (Redis + N FEs) in the foreground",
        description="Start a redis-server (unless --redis-url is given) and N FEs; every node option below "
        "is passed to each FE. FE i listens on the given ports + i - 1.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("--nodes", type=int, default=1, help="how many FEs (default: 1)")
    add_arguments(
        up,
        help_for={
            "redis_url": "Redis URL (default: start a private redis-server)",
            "cluster_secret": "shared secret every Peer call must carry (default: a random one)",
            "backend": "storage behind the FEs (default: one sqlite directory shared by every FE)",
        },
        unset=frozenset({"redis_url"}),
    )
    up.set_defaults(func=cmd_up)

    for name, func, help_text in (
        ("processlist", cmd_processlist, "the cluster's processlist (gRPC)"),
        ("kill", cmd_kill, "kill a connection or query anywhere in the cluster (gRPC)"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--fe", default=os.environ.get("FECLUSTER_FE", "127.0.0.1:9020"), help="an FE's gRPC address")
        cmd.add_argument("-u", "--user", default=os.environ.get("FECLUSTER_USER", "root"))
        cmd.add_argument(
            "-p", "--password-prompt", action="store_true", help="ask for the password (else FECLUSTER_PASSWORD)"
        )
        cmd.set_defaults(func=func)
        if name == "processlist":
            cmd.add_argument("--full", action="store_true")
            cmd.add_argument("--json", action="store_true")
        else:
            cmd.add_argument("--query", action="store_true", help="kill the running statement only")
            cmd.add_argument("id", help="connection id, or with --query a query id")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
