"""Local processes for ``fecluster up`` and the tests: a private redis-server
and FE node subprocesses that die with their parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REDIS_HINT = (
    "redis-server not found on PATH. Install it (Debian/Ubuntu: apt-get install redis-server; "
    "macOS: brew install redis) or pass --redis-url to use a running Redis."
)


# Ports a local cluster never takes: the defaults of MySQL, Redis and the FE.
_RESERVED_PORTS = frozenset({3306, 6379, 8030, 9020, 9030, 16379, 16380})


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range: a port
    the kernel handed out and took back (bind to 0) may go to the next
    outgoing connection before our listener binds it (seen with a benchmark's
    20,000 connections beside the tests)."""
    low, _ = _ephemeral_range()
    for port in random.sample(range(10_000, low), min(200, max(low - 10_000, 0))):
        if port in _RESERVED_PORTS:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # no room below the ephemeral range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def _die_with_parent() -> None:
    """Linux: SIGTERM this child when the parent dies, so nothing is left behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(
    args: Sequence[str], *, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        list(args), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    dir: Path
    extra: list[str] = field(default_factory=list)
    owns_dir: bool = False  # made by start_redis: removed by stop()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop(self.proc, 5)
        if self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> None:
        """Start again, empty, on the same port."""
        stop(self.proc, 5)
        started = start_redis(self.port, self.dir, self.extra)
        self.proc = started.proc


def start_redis(port: int | None = None, directory: Path | None = None, extra: Sequence[str] = ()) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError(REDIS_HINT)
    port = port or free_port()
    owns_dir = directory is None
    directory = directory or Path(tempfile.mkdtemp(prefix="fecluster-redis-"))
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        "--daemonize",
        "no",
        *extra,
    ]
    proc = spawn(args, log=directory / "redis.log")
    wait_port("127.0.0.1", port, 10, proc)
    return RedisServer(port, proc, directory, list(extra), owns_dir)


def node_command(**flags: object) -> list[str]:
    args = [sys.executable, "-m", "frontend.cli", "node"]
    for name, value in flags.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FECLUSTER_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env
