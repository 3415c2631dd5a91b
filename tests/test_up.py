"""`fecluster up`: the README's local cluster, and that Ctrl+C leaves nothing behind."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.support import REPO, wait_for


def _free_block(n: int) -> int:
    for _ in range(100):
        base = random.randint(20000, 50000)
        try:
            socks = []
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


def _up(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "frontend.cli", "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=env or os.environ.copy(),
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_up_runs_a_cluster_and_stops_clean(sig: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mysql, grpc_port, http_port = _free_block(3), _free_block(3), _free_block(3)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = _up(
        "--nodes", "3", "--mysql-port", str(mysql), "--grpc-port", str(grpc_port), "--http-port", str(http_port),
        "--shutdown-grace", "3", env={**os.environ, "TMPDIR": str(tmpdir)},
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl+C stops everything" in line:
                break
        text = "".join(lines)
        assert "Ctrl+C stops everything" in text, text
        for i in range(3):
            assert f"127.0.0.1:{mysql + i}" in text and f"127.0.0.1:{grpc_port + i}" in text
            assert f"http://127.0.0.1:{http_port + i}/" in text  # the HTTP port is on in `up`
        page = httpx.get(f"http://127.0.0.1:{http_port + 2}/", timeout=10)
        assert page.status_code == 401 and page.headers["www-authenticate"].startswith("Basic")
        everywhere = httpx.get(f"http://127.0.0.1:{http_port}/rest/v1/session/all", auth=("root", ""), timeout=10)
        assert everywhere.status_code == 200 and len(everywhere.json()["data"]["column_names"]) == 14
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 4  # redis-server + 3 FEs
        out = subprocess.run(
            ["mariadb", "-h", "127.0.0.1", "-P", str(mysql + 1), "-u", "root", "--skip-ssl", "-e", "show processlist"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        header, row = out.stdout.strip().splitlines()
        assert len(header.split("\t")) == 14 and row.split("\t")[12] == f"127.0.0.1:{grpc_port + 1}"
        proc.send_signal(sig)
        assert proc.wait(30) == 0
        wait_for(
            lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
            10,
            what="every child to exit",
        )
        assert list(tmpdir.iterdir()) == []  # no fecluster-* directory left behind
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_second_up_on_busy_ports_says_so_before_starting_anything() -> None:
    """It printed the endpoint table and "Ctrl+C stops everything", then
    "fe1 exited with 1" with the cause only in a log."""
    mysql, grpc_port = _free_block(1), _free_block(1)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", mysql))
        taken.listen()
        proc = _up("--mysql-port", str(mysql), "--grpc-port", str(grpc_port), "--http-port", "0")
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert f"port(s) {mysql}" in out and "in use" in out
    assert "Ctrl+C" not in out


def test_up_without_redis_server_says_how_to_get_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bindir)}
    assert shutil.which("redis-server", path=env["PATH"]) is None
    ports = ("--mysql-port", str(_free_block(1)), "--grpc-port", str(_free_block(1)), "--http-port", "0")
    proc = _up(*ports, env=env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "redis-server not found" in out and "--redis-url" in out


def test_free_ports_are_outside_the_kernels_ephemeral_range() -> None:
    """A port from bind(0) may go to an outgoing connection before the test's
    listener binds it ("Address already in use" under a benchmark's load)."""
    from frontend.procs import _RESERVED_PORTS, _ephemeral_range, free_port

    low, _ = _ephemeral_range()
    ports = {free_port() for _ in range(50)}
    assert all(p < low and p not in _RESERVED_PORTS for p in ports), ports
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free indeed
