"""The ``fecluster`` command: ``up``, ``node``, ``processlist``, ``kill``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import getpass
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from frontend import procs

if TYPE_CHECKING:
    from frontend.node import Node
from frontend.config import add_arguments, env_name, from_namespace, to_flags


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
    _warn_if_open(node)
    try:
        await node.serve()
    finally:
        await node.shutdown()
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _warn_if_open(node: Node) -> None:
    """An FE anyone on the network may reach, where root logs in without a password: say so."""
    cfg = node.config
    root = node.accounts.cached("root")
    if root is not None and not root.auth_string and not _is_loopback(cfg.bind_host):
        logging.getLogger("fecluster.node").warning(
            "root has an empty password and this FE listens on %s (MySQL %d, gRPC %d, HTTP %d): anyone who "
            "reaches it is an admin. Set one (SET PASSWORD FOR root = PASSWORD('...')), or --bind-host 127.0.0.1",
            cfg.bind_host,
            cfg.mysql_port,
            cfg.grpc_port,
            cfg.http_port,
        )


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

# Settings that carry secrets (a password in a URL, the cluster secret): handed to the FEs in their
# environment, never on their command lines, where ps shows them to every local user.
SECRET_FIELDS = ("cluster_secret", "root_password", "backend", "redis_url")
FES_FILE = "fes.json"


def default_state_dir(cluster: str) -> Path:
    """Where ``up`` keeps a cluster's Redis data, SQLite data, logs and where its FEs are."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fecluster" / re.sub(r"[^A-Za-z0-9._-]", "_", cluster)


def _redact(url: str) -> str:
    """A URL without its password, to print."""
    password = urlsplit(url).password
    return url if password is None else url.replace(f":{password}@", ":***@", 1)


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


def _spawn_alone(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child in its own session: the terminal's Ctrl+C reaches ``up`` only, which stops the
    children in order (FEs drain first, Redis last). It still dies with ``up`` (PR_SET_PDEATHSIG)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            args,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=procs._die_with_parent,
        )


def _start_redis(state: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server keeping its data in ``state``/redis (AOF, fsync every second, plus
    RDB snapshots): users and grants survive a restart of ``up``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError(procs.REDIS_HINT)
    directory = state / "redis"
    directory.mkdir(mode=0o700, exist_ok=True)
    port = procs.free_port()
    args = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "300 1 60 1000", "--daemonize", "no",
    ]  # fmt: skip
    proc = _spawn_alone(args, state / "logs" / "redis.log")
    procs.wait_port("127.0.0.1", port, 10, proc)
    return proc, f"redis://127.0.0.1:{port}/0"


def _lock(state: Path) -> object | None:
    """One ``up`` per state directory (two Redis servers on one AOF would ruin it)."""
    handle = open(state / "up.lock", "a+")  # noqa: SIM115 - held for the life of up
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    tmp.replace(path)


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
    state = Path(args.state_dir).expanduser() if args.state_dir else default_state_dir(base.cluster)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    (state / "logs").mkdir(mode=0o700, exist_ok=True)
    lock = _lock(state)
    if lock is None:
        print(f"fecluster up: another fecluster up runs on {state} (pick another --state-dir)", file=sys.stderr)
        return 2
    logs = state / "logs"
    redis: subprocess.Popen[bytes] | None = None
    nodes: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if not base.redis_url:
            try:
                redis, url = _start_redis(state)
            except FileNotFoundError as e:
                print(f"fecluster up: {e}", file=sys.stderr)
                return 2
            base = replace(base, redis_url=url)
        base = replace(
            base,
            cluster_secret=base.cluster_secret or secrets.token_hex(16),
            backend=base.backend or f"sqlite://{state / 'data'}",  # one directory: every FE sees the same data
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
            for name in SECRET_FIELDS:
                if name in flags:
                    env[env_name(name)] = str(flags.pop(name))
            nodes.append(_spawn_alone(procs.node_command(**flags), logs / f"fe{i + 1}.log", env))
        for i, proc in enumerate(nodes):
            try:
                procs.wait_port(base.advertise_host, base.mysql_port + i, 30, proc)
                if base.http_port:
                    procs.wait_port(base.advertise_host, base.http_port + i, 30, proc)
            except (RuntimeError, TimeoutError):
                print(f"fecluster up: fe{i + 1} did not start:\n{_tail(logs / f'fe{i + 1}.log')}", file=sys.stderr)
                return 1
        fes = [
            {
                "name": f"fe{i + 1}",
                "mysql": f"{base.advertise_host}:{base.mysql_port + i}",
                "grpc": f"{base.advertise_host}:{base.grpc_port + i}",
                "http": f"http://{base.advertise_host}:{base.http_port + i}/" if base.http_port else "",
            }
            for i in range(args.nodes)
        ]
        _write_json(state / FES_FILE, {"pid": os.getpid(), "cluster": base.cluster, "fes": fes})
        where = "private Redis" if redis is not None else "Redis"
        print(f"fecluster: {args.nodes} FE(s), cluster {base.cluster!r}, {where} {_redact(base.redis_url)}")
        print(f"state (users, grants, data, logs) in {state}")
        print(f"{'FE':<4} {'MySQL':<22} {'gRPC (FE column)':<22} {'sessions page':<30} {'connect with'}")
        for i, fe_info in enumerate(fes):
            print(
                f"fe{i + 1:<2} {fe_info['mysql']:<22} {fe_info['grpc']:<22} {fe_info['http'] or '(off)':<30} "
                f"mysql -h {base.advertise_host} -P {base.mysql_port + i} -u root"
            )
        print("Ctrl+C stops everything.", flush=True)
        while not stopping:
            for i, proc in enumerate(nodes):
                if proc.poll() is not None:
                    print(
                        f"fe{i + 1} exited with {proc.returncode}:\n{_tail(logs / f'fe{i + 1}.log')}", file=sys.stderr
                    )
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        with contextlib.suppress(OSError):
            (state / FES_FILE).unlink()
        # In order: every FE drains (its running statements get --shutdown-grace) while Redis still
        # answers; Redis last, which writes its data on the way out.
        for proc in nodes:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in nodes:
            procs.stop(proc, timeout=base.shutdown_grace + 15)
        if redis is not None:
            procs.stop(redis, timeout=30)
        lock.close()  # type: ignore[attr-defined]
        print(f"fecluster: stopped; users, grants, data and logs kept in {state}", flush=True)


def _up_fes(state_dir: str) -> list[dict[str, str]]:
    """The FEs of the ``up`` running on ``state_dir``, or [] when none runs there."""
    path = (
        Path(state_dir).expanduser() if state_dir else default_state_dir(os.environ.get("FECLUSTER_CLUSTER", "default"))
    )
    try:
        data = json.loads((path / FES_FILE).read_text())
        os.kill(int(data["pid"]), 0)  # a file left by an up that died is no guide
        return list(data["fes"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"


# ---------------------------------------------------------------- admin


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from frontend.grpc_client import Client

    password = os.environ.get("FECLUSTER_PASSWORD")
    if password is None:
        password = getpass.getpass(f"Password for {args.user}: ") if args.password_prompt else ""
    fe = args.fe or os.environ.get("FECLUSTER_FE") or next((f["grpc"] for f in _up_fes(args.state_dir)), DEFAULT_FE)
    return Client(fe, args.user, password)


def _fail(e: Exception) -> int:
    import grpc

    from frontend.grpc_client import FeError

    if isinstance(e, FeError):
        print(str(e), file=sys.stderr)
        return 1
    if isinstance(e, grpc.RpcError):
        print(f"ERROR: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    raise e


DEFAULT_FE = "127.0.0.1:9020"
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
    p = argparse.ArgumentParser(
        prog="fecluster", description="A MySQL-protocol frontend tier with cluster-wide KILL and SHOW PROCESSLIST"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    node = sub.add_parser("node", help="run one FE in the foreground", description="Run one FE in the foreground.")
    add_arguments(node)
    node.set_defaults(func=cmd_node)

    up = sub.add_parser(
        "up",
        help="run a local cluster (Redis + N FEs) in the foreground",
        description="Start a redis-server (unless --redis-url is given) and N FEs; every node option below "
        "is passed to each FE. FE i listens on the given ports + i - 1. Secrets reach the FEs through their "
        "environment, never their command lines. Redis's data (users, grants), the SQLite data and the logs "
        "are kept in --state-dir, so a restart of up finds them again; up writes where its FEs are there "
        "too (fes.json), for `fecluster processlist` and `fecluster kill`. Ctrl+C or SIGTERM stops the FEs "
        "first (running statements get --shutdown-grace), Redis last.",
    )
    up.add_argument("--nodes", type=int, default=1, help="how many FEs (default: 1)")
    up.add_argument(
        "--state-dir",
        default=os.environ.get("FECLUSTER_STATE_DIR", ""),
        help="where up keeps Redis's data, the SQLite data, the logs and fes.json (default: "
        "$XDG_STATE_HOME/fecluster/CLUSTER, else ~/.local/state/fecluster/CLUSTER; env FECLUSTER_STATE_DIR)",
    )
    add_arguments(
        up,
        help_for={
            "redis_url": "Redis URL (default: start a private redis-server keeping its data in --state-dir)",
            "cluster_secret": "shared secret every Peer call must carry (default: a random one)",
            "backend": "storage behind the FEs (default: one sqlite directory in --state-dir shared by every FE)",
            "bind_host": "address the FEs' listeners bind to (0.0.0.0: every interface)",
        },
        unset=frozenset({"redis_url"}),
        defaults={"bind_host": "127.0.0.1"},
        aliases={"bind_host": ["--bind"]},
    )
    up.set_defaults(func=cmd_up)

    for name, func, help_text in (
        ("processlist", cmd_processlist, "the cluster's processlist (gRPC)"),
        ("kill", cmd_kill, "kill a connection or query anywhere in the cluster (gRPC)"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        cmd.add_argument(
            "--fe",
            default="",
            help="an FE's gRPC address (default: $FECLUSTER_FE, else the first FE of the `fecluster up` running "
            f"on --state-dir, else {DEFAULT_FE})",
        )
        cmd.add_argument(
            "--state-dir",
            default=os.environ.get("FECLUSTER_STATE_DIR", ""),
            help="the state directory of a running `fecluster up`, to find its FEs without --fe (default: "
            "as `fecluster up --state-dir`, for the cluster $FECLUSTER_CLUSTER or 'default')",
        )
        cmd.add_argument(
            "-u",
            "--user",
            default=os.environ.get("FECLUSTER_USER", "root"),
            help="the cluster user to act as (default: $FECLUSTER_USER, else root)",
        )
        cmd.add_argument(
            "-p",
            "--password-prompt",
            action="store_true",
            help="ask for the password (else $FECLUSTER_PASSWORD, else none)",
        )
        cmd.set_defaults(func=func)
        if name == "processlist":
            cmd.add_argument(
                "--full", action="store_true", help="whole statements in Info (else their first 100 characters)"
            )
            cmd.add_argument(
                "--json", action="store_true", help="one JSON object: rows, and the FEs that did not answer"
            )
        else:
            cmd.add_argument("--query", action="store_true", help="kill the running statement only (KILL QUERY)")
            cmd.add_argument("id", help="connection id, or with --query a query id (16hex-16hex) or a connection id")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
