"""`fecluster up`: the README's local cluster, and that Ctrl+C leaves nothing behind."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
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
import pymysql
import pytest

from tests.support import REPO, Running, new_cluster, wait_for


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


def _up(*args: str, env: dict[str, str] | None = None, own_group: bool = False) -> subprocess.Popen[str]:
    """``fecluster up``; ``own_group``: in a process group of its own, as a shell runs it in a
    terminal (so that a test can send the terminal's Ctrl+C to the whole group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "frontend.cli", "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=env or os.environ.copy(),
        start_new_session=own_group,
    )


def _started(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """What up printed until "Ctrl+C stops everything"."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl+C stops everything" in line:
            break
    text = "".join(lines)
    assert "Ctrl+C stops everything" in text, text
    return text


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_up_runs_a_cluster_and_stops_clean(sig: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mysql, grpc_port, http_port = _free_block(3), _free_block(3), _free_block(3)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = _up(
        "--nodes", "3", "--mysql-port", str(mysql), "--grpc-port", str(grpc_port), "--http-port", str(http_port),
        "--shutdown-grace", "3", "--state-dir", str(tmp_path / "state"), env={**os.environ, "TMPDIR": str(tmpdir)},
    )  # fmt: skip
    try:
        text = _started(proc)
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
        proc = _up("--mysql-port", str(mysql), "--grpc-port", str(grpc_port), "--http-port", "0", "--bind", "0.0.0.0")
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
    ports += ("--state-dir", str(tmp_path / "state"))
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


# ---------------------------------------------------------------- safe defaults, state, order, the CLI


def _mysql(port: int, sql: str, user: str = "root", password: str = "") -> tuple[tuple[object, ...], ...]:
    conn = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password)
    with contextlib.closing(conn), conn.cursor() as cur:
        cur.execute(sql)
        return tuple(cur.fetchall())


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "frontend.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=60, env=env
    )


def test_up_keeps_secrets_off_command_lines_binds_loopback_and_tells_the_cli_where_it_is(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mysql, grpc_port = _free_block(2), _free_block(2)
    state = tmp_path / "state"
    secret, root_pw = "s3cr3t-" + "a" * 20, "r00t-pw-xyz"
    proc = _up(
        "--nodes", "2", "--mysql-port", str(mysql), "--grpc-port", str(grpc_port), "--http-port", "0",
        "--state-dir", str(state), "--cluster-secret", secret, "--root-password", root_pw,
    )  # fmt: skip
    try:
        text = _started(proc)
        assert secret not in text and root_pw not in text
        fes = [c for c in psutil.Process(proc.pid).children() if "node" in c.cmdline()]
        assert len(fes) == 2
        for fe in fes:
            cmdline = " ".join(fe.cmdline())
            assert secret not in cmdline and root_pw not in cmdline and "redis://" not in cmdline, cmdline
            assert "--bind-host 127.0.0.1" in cmdline
            listening = {c.laddr.ip for c in fe.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
            assert listening and all(_loopback(a) for a in listening), listening
        # fes.json: where the FEs are, and nothing secret
        where = json.loads((state / "fes.json").read_text())
        assert [f["grpc"] for f in where["fes"]] == [f"127.0.0.1:{grpc_port}", f"127.0.0.1:{grpc_port + 1}"]
        assert secret not in (state / "fes.json").read_text()
        # processlist and kill without --fe find the FEs of this up
        with contextlib.closing(
            pymysql.connect(host="127.0.0.1", port=mysql + 1, user="root", password=root_pw)
        ) as victim:
            cid = victim.thread_id()
            env = {**os.environ, "FECLUSTER_STATE_DIR": str(state), "FECLUSTER_PASSWORD": root_pw}
            env.pop("FECLUSTER_FE", None)
            out = _cli("processlist", "--json", env=env)
            assert out.returncode == 0, out.stderr
            assert cid in [r["id"] for r in json.loads(out.stdout)["rows"]]
            out = _cli("kill", str(cid), env=env)
            assert out.returncode == 0 and out.stdout.strip() == f"killed connection {cid} on 127.0.0.1:{grpc_port + 1}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not (state / "fes.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_ctrl_c_drains_the_fes_before_redis_and_users_survive_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Ctrl+C reached the private redis-server too (one process group): Redis died first and a
    running statement got 1053 instead of its grace; and a restart of up lost every user."""
    state = tmp_path / "state"
    mysql, grpc_port = _free_block(1), _free_block(1)
    ports = ("--mysql-port", str(mysql), "--grpc-port", str(grpc_port), "--http-port", "0", "--state-dir", str(state))
    proc = _up(*ports, "--shutdown-grace", "20", own_group=True)
    try:
        _started(proc)
        _mysql(mysql, "CREATE USER 'kept' IDENTIFIED BY 'kept-pw'")
        _mysql(mysql, "GRANT SELECT_PRIV ON *.*.* TO 'kept'")
        conn = pymysql.connect(host="127.0.0.1", port=mysql, user="root", password="")
        run = Running(conn, "SELECT SLEEP(7)")
        wait_for(lambda: any(r[11] == "SELECT SLEEP(7)" for r in _mysql(mysql, "SHOW FULL PROCESSLIST")), 10)
        os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl+C: the whole foreground group
        outcome = run.join(30)
        assert outcome == ((0,),), outcome  # its grace, not 1053
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    proc = _up(*ports)
    try:
        _started(proc)
        assert _mysql(mysql, "SELECT CURRENT_USER()", "kept", "kept-pw") == (("kept@%",),)
        grants = _mysql(mysql, "SHOW GRANTS FOR 'kept'")
        assert "Select_priv" in str(grants), grants
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow  # seconds of real waiting: left to CI, out of the quick loop
def test_an_fe_open_to_the_network_with_rootless_password_warns(redis_url: str) -> None:
    cluster = new_cluster(redis_url, 1, bind_host="0.0.0.0", http_port=0)
    try:
        fe = cluster.fes[0]
        line = next(line for line in fe.logs().splitlines() if "empty password" in line)
        assert " WARNING fecluster.node: root has an empty password and this FE listens on 0.0.0.0" in line
    finally:
        cluster.stop()
    quiet = new_cluster(redis_url, 1, http_port=0)  # 127.0.0.1: nothing to say
    try:
        assert "empty password" not in quiet.fes[0].logs()
    finally:
        quiet.stop()


def test_every_cli_option_says_what_it_does() -> None:
    from frontend.cli import parser

    def walk(p: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    missing += walk(child, f"{path} {name}")
                continue
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        return missing

    assert walk(parser(), "fecluster") == []
    text = _cli("processlist", "--help").stdout
    assert "127.0.0.1:9020" in text and "--full" in text and "--json" in text and "fecluster up" in text
