"""The ``fecluster`` command: ``up``, ``node``, ``processlist``, ``kill``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

from frontend import procs
from frontend.config import add_arguments, from_namespace


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
        membership = getattr(node, "membership", None)
        if membership is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await membership.stop()
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
    # mysql-mimic logs every client mistake (unknown command, reset socket) at
    # ERROR with a traceback; the adapter logs what matters in one line instead.
    logging.getLogger("mysql_mimic").setLevel(logging.CRITICAL)
    _run_async(_node_main(args))
    return 0


# ---------------------------------------------------------------- up


def cmd_up(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="fecluster-up-"))
    redis = None
    nodes = []
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        redis_url = args.redis_url
        if not redis_url:
            try:
                redis = procs.start_redis(directory=work)
            except FileNotFoundError as e:
                print(f"fecluster up: {e}", file=sys.stderr)
                return 2
            redis_url = redis.url
        secret = args.cluster_secret or secrets.token_hex(16)
        for i in range(args.nodes):
            cmd = procs.node_command(
                redis_url=redis_url,
                redis_cluster=args.redis_cluster,
                cluster=args.cluster,
                mysql_port=args.mysql_port + i,
                grpc_port=args.grpc_port + i,
                http_port=args.http_port + i if args.http_port else None,
                advertise_host=args.advertise_host,
                bind_host=args.advertise_host,
                cluster_secret=secret,
                lease_ttl=args.lease_ttl,
                shutdown_grace=args.shutdown_grace,
                data_dir=work / f"fe{i + 1}",
            )
            env = procs.node_env()
            if args.root_password:
                env["FECLUSTER_ROOT_PASSWORD"] = args.root_password
            nodes.append(procs.spawn(cmd, env=env, log=work / f"fe{i + 1}.log"))
        for i, proc in enumerate(nodes):
            procs.wait_port(args.advertise_host, args.mysql_port + i, 30, proc)
            if args.http_port:
                procs.wait_port(args.advertise_host, args.http_port + i, 30, proc)
        print(f"fecluster: {args.nodes} FE(s), cluster {args.cluster!r}, Redis {redis_url}, logs in {work}")
        print(f"{'FE':<4} {'MySQL':<22} {'gRPC (FE column)':<22} {'sessions page':<30} {'connect with'}")
        for i in range(args.nodes):
            mysql = f"{args.advertise_host}:{args.mysql_port + i}"
            grpc_addr = f"{args.advertise_host}:{args.grpc_port + i}"
            web = f"http://{args.advertise_host}:{args.http_port + i}/" if args.http_port else "(off)"
            print(
                f"fe{i + 1:<2} {mysql:<22} {grpc_addr:<22} {web:<30} "
                f"mysql -h {args.advertise_host} -P {args.mysql_port + i} -u root"
            )
        print("Ctrl+C stops everything.", flush=True)
        while not stopping:
            for i, proc in enumerate(nodes):
                if proc.poll() is not None:
                    print(f"fe{i + 1} exited with {proc.returncode}; see {work}/fe{i + 1}.log", file=sys.stderr)
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
        print("fecluster: stopped", flush=True)


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


def cmd_processlist(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    try:
        with _client(args) as client:
            rows, failures = client.processlist(full=args.full)
    except Exception as e:  # noqa: BLE001
        return _fail(e)
    if args.json:
        out = {
            "rows": [
                MessageToDict(r, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
                for r in rows
            ],
            "errors": [{"fe": f.fe, "message": f.message} for f in failures],
        }
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
    target: int | str = args.id
    if not args.id.isdigit():
        if not args.query:
            print(f"ERROR 1094 (HY000): Unknown thread id: {args.id}", file=sys.stderr)
            return 1
    else:
        target = int(args.id)
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

    up = sub.add_parser("up", help="run a local cluster (Redis + N FEs) in the foreground")
    up.add_argument("--nodes", type=int, default=1)
    up.add_argument("--mysql-port", type=int, default=9030)
    up.add_argument("--grpc-port", type=int, default=9020)
    up.add_argument("--http-port", type=int, default=8030, help="first FE's HTTP port (sessions page, REST); 0: off")
    up.add_argument("--redis-url", default=os.environ.get("FECLUSTER_REDIS_URL", ""))
    up.add_argument(
        "--redis-cluster",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("FECLUSTER_REDIS_CLUSTER", "").strip().lower() in ("1", "true", "yes", "on"),
        help="--redis-url points at a Redis Cluster",
    )
    up.add_argument("--cluster", default="default")
    up.add_argument("--advertise-host", default="127.0.0.1")
    up.add_argument("--cluster-secret", default=os.environ.get("FECLUSTER_CLUSTER_SECRET", ""))
    up.add_argument("--root-password", default=os.environ.get("FECLUSTER_ROOT_PASSWORD", ""))
    up.add_argument("--lease-ttl", type=float, default=10.0)
    up.add_argument("--shutdown-grace", type=float, default=3.0, help="seconds running statements get on Ctrl+C")
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
