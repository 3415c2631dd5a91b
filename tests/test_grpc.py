"""gRPC clients: the Session stream, unary admin calls, the Python client and the CLI (issue 4)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from coordinator.pb import fecluster_pb2 as pb
from coordinator.pb import fecluster_pb2_grpc as pb_grpc
from frontend.grpc_client import Client, ClientSession, FeError, SessionClosed
from tests.support import REPO, Cluster, Running, error_code, wait_for, wait_running


class Background:
    def __init__(self, session: ClientSession, sql: str) -> None:
        self.outcome: Any = None
        self.finished_at = 0.0
        self.thread = threading.Thread(target=self._run, args=(session, sql), daemon=True)
        self.thread.start()

    def _run(self, session: ClientSession, sql: str) -> None:
        try:
            self.outcome = session.execute(sql)
        except Exception as e:  # noqa: BLE001
            self.outcome = e
        self.finished_at = time.monotonic()

    def join(self, timeout: float = 10) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        return self.outcome


def test_grpc_session_is_a_connection_like_any_other(cluster3: Cluster) -> None:
    fe_a, _, fe_c = cluster3.fes
    with Client(fe_a.address) as client, client.session() as session, contextlib.closing(fe_c.connect()) as mysql:
        assert session.fe == fe_a.address
        wait_for(lambda: session.connection_id in cluster3.registry_ids(), 2, what="its registry row")
        assert session.execute("SELECT 1").rows == [(1,)]
        # listed by a MySQL client on another FE, with A in the FE column
        with mysql.cursor() as cur:
            cur.execute("SHOW PROCESSLIST")
            row = next(r for r in cur.fetchall() if r[1] == session.connection_id)
        assert row[12] == fe_a.address and row[2] == "root"
        # KILL QUERY from C interrupts its SLEEP with 1317, and the stream goes on
        run = Background(session, "SELECT SLEEP(30)")
        wait_running(fe_c, session.connection_id)
        sent = time.monotonic()
        with mysql.cursor() as cur:
            cur.execute(f"KILL QUERY {session.connection_id}")
        outcome = run.join()
        assert isinstance(outcome, FeError) and outcome.code == 1317 and outcome.sqlstate == "70100"
        assert run.finished_at - sent < 1.0
        assert session.execute("SELECT 2").rows == [(2,)]
        # KILL CONNECTION from C ends the stream with ABORTED, saying who killed it
        run = Background(session, "SELECT SLEEP(30)")
        wait_running(fe_c, session.connection_id)
        with mysql.cursor() as cur:
            cur.execute(f"KILL {session.connection_id}")
        outcome = run.join()
        assert isinstance(outcome, FeError) and outcome.code == 1317
        with pytest.raises(SessionClosed) as e:
            session.execute("SELECT 1")
        assert e.value.status == grpc.StatusCode.ABORTED
        assert "by KILL CONNECTION from root@127.0.0.1 via FE" in e.value.details
        wait_for(lambda: session.connection_id not in cluster3.registry_ids(), 5, what="registry row removed")


def test_idle_grpc_session_killed_from_mysql_is_aborted(cluster3: Cluster) -> None:
    fe_a, fe_b, _ = cluster3.fes
    with Client(fe_a.address) as client:
        session = client.session()
        fe_b.query(f"KILL CONNECTION {session.connection_id}")
        with pytest.raises(SessionClosed) as e:
            session.execute("SELECT 1")
        assert e.value.status == grpc.StatusCode.ABORTED


def test_results_errors_and_types_over_grpc(cluster3: Cluster) -> None:
    db = f"g{uuid.uuid4().hex[:6]}"
    with Client(cluster3.fes[1].address) as client, client.session() as s:
        s.execute(f"CREATE DATABASE {db}")
        s.execute(f"USE {db}")
        s.execute("CREATE TABLE t (a INT, b VARCHAR(10), c DOUBLE)")
        assert s.execute("INSERT INTO t VALUES (1, 'x', 0.5), (2, NULL, NULL)").affected_rows == 2
        result = s.execute("SELECT a, b, c FROM t ORDER BY a")
        assert result.columns == ["a", "b", "c"] and result.rows == [(1, "x", 0.5), (2, None, None)]
        assert len(result.query_id) == 33
        with pytest.raises(FeError) as e:
            s.execute("SELEC 1")
        assert e.value.code == 1064 and e.value.sqlstate == "42000"
        with pytest.raises(FeError) as e:
            s.execute("KILL 12345")
        assert (e.value.code, e.value.message) == (1094, "Unknown thread id: 12345")
        s.execute(f"DROP DATABASE {db}")


def test_grpc_kill_from_b_kills_a_mysql_connection_on_c_under_the_same_rules(cluster3: Cluster) -> None:
    _, fe_b, fe_c = cluster3.fes
    name = f"dave{uuid.uuid4().hex[:6]}"
    fe_b.query(f"CREATE USER '{name}' IDENTIFIED BY 'pw'")
    with contextlib.closing(fe_c.connect()) as victim:
        run = Running(victim, "SELECT SLEEP(30)")
        wait_running(fe_b, victim.thread_id())
        with Client(fe_b.address, name, "pw") as dave:
            with pytest.raises(FeError) as e:
                dave.kill(victim.thread_id(), query=True)
            assert e.value.code == 1095
            with pytest.raises(FeError) as e:
                dave.kill(12345)
            assert e.value.code == 1094
            rows, failures = dave.processlist()
            assert failures == [] and {r.user for r in rows} <= {name}
        assert run.thread.is_alive()
        with Client(fe_b.address) as root:
            assert root.kill(victim.thread_id(), query=True) == fe_c.address
        assert error_code(run.join()) == 1317
        with Client(fe_b.address) as root:
            root.kill(victim.thread_id())
        wait_for(lambda: victim.thread_id() not in cluster3.registry_ids(), 5, what="registry row removed")


def test_unary_calls_need_user_and_password(cluster3: Cluster) -> None:
    address = cluster3.fes[0].address
    for user, password in (("root", "wrong"), ("nobody", ""), ("", "")):
        with Client(address, user, password) as client:
            for call in (client.processlist, lambda c=client: c.kill(1), lambda c=client: c.execute("SELECT 1")):
                with pytest.raises(grpc.RpcError) as e:
                    call()
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with Client(address, "root", "bad") as client, pytest.raises(SessionClosed) as e:
        client.session()
    assert e.value.status == grpc.StatusCode.UNAUTHENTICATED


def test_user_administration_over_grpc(cluster3: Cluster) -> None:
    name = f"erin{uuid.uuid4().hex[:6]}"
    with Client(cluster3.fes[2].address) as root:
        root.execute(f"CREATE USER '{name}' IDENTIFIED BY 'pw'")
        root.execute(f"GRANT ADMIN_PRIV ON *.*.* TO '{name}'")
        assert "Admin_priv" in root.execute(f"SHOW GRANTS FOR '{name}'").rows[0][4]
    with Client(cluster3.fes[0].address, name, "pw") as erin:
        assert erin.execute("SELECT 1").rows == [(1,)]
        erin.execute(f"REVOKE ADMIN_PRIV ON *.*.* FROM '{name}'")
        with pytest.raises(FeError) as e:
            erin.execute("CREATE USER nope")
        assert e.value.code == 1227


def _raw_session(address: str) -> Any:
    channel = grpc.insecure_channel(address)
    return channel, pb_grpc.FrontendStub(channel)


def test_bad_session_input_gets_the_right_status_and_disturbs_nobody(cluster3: Cluster) -> None:
    fe = cluster3.fes[0]
    with Client(fe.address) as client, client.session() as bystander:
        channel, stub = _raw_session(fe.address)
        with channel:
            cases = [
                ([pb.SessionRequest(sql="SELECT 1")], grpc.StatusCode.INVALID_ARGUMENT),  # statement before hello
                ([], grpc.StatusCode.INVALID_ARGUMENT),  # no hello at all
                (
                    [pb.SessionRequest(hello=pb.Hello(user="root")), pb.SessionRequest(hello=pb.Hello(user="root"))],
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (
                    [pb.SessionRequest(hello=pb.Hello(user="root")), pb.SessionRequest(sql="x" * (5 * 1024 * 1024))],
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                ),
            ]
            for messages, status in cases:
                with pytest.raises(grpc.RpcError) as e:
                    list(stub.Session(iter(messages), timeout=10))
                assert e.value.code() == status, (messages[:1], e.value)
            garbage = channel.stream_stream("/fecluster.v1.Frontend/Session")
            with pytest.raises(grpc.RpcError) as e:
                list(garbage(iter([b"\x0a\xff\xff\xff"]), timeout=10))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            unary = channel.unary_unary("/fecluster.v1.Frontend/Kill")
            with pytest.raises(grpc.RpcError) as e:
                unary(b"\xff\x00garbage", metadata=(("x-fecluster-user", "root"),), timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bystander.execute("SELECT 3").rows == [(3,)]
        assert fe.alive()


def test_client_that_disconnects_ends_its_session_at_once(cluster3: Cluster) -> None:
    fe = cluster3.fes[1]
    with Client(fe.address) as client:
        session = client.session()
        conn_id = session.connection_id
        wait_for(lambda: conn_id in cluster3.registry_ids(), 2, what="its registry row")
        run = Background(session, "SELECT SLEEP(30)")
        wait_running(fe, conn_id)
        session.close()  # cancels the stream mid-statement
        run.join()
        wait_for(lambda: conn_id not in cluster3.registry_ids(), 5, what="registry row removed")
        assert all(r[1] != conn_id for r in fe.query("SHOW PROCESSLIST"))


def test_stock_health_check_and_reflection(cluster3: Cluster) -> None:
    with grpc.insecure_channel(cluster3.fes[2].address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert {"fecluster.v1.Frontend", "fecluster.v1.Peer", "grpc.health.v1.Health"} <= names


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "frontend.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **env},
    )


def test_cli_processlist_and_kill_against_the_running_cluster(cluster3: Cluster) -> None:
    fe_a, fe_b, _ = cluster3.fes
    with contextlib.closing(fe_b.connect()) as victim:
        out = _cli("processlist", "--json", "--fe", fe_a.address, FECLUSTER_PASSWORD="")
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        row = next(r for r in data["rows"] if r["id"] == victim.thread_id())
        assert row["fe"] == fe_b.address and data["errors"] == []
        # as SQL shows them: Time a number, an empty CloudCluster NULL
        assert isinstance(row["time"], int) and row["cloud_cluster"] is None
        table = _cli("processlist", "--fe", fe_a.address)
        assert table.returncode == 0 and str(victim.thread_id()) in table.stdout and "FE" in table.stdout
        run = Running(victim, "SELECT SLEEP(30)")
        wait_running(fe_a, victim.thread_id())
        out = _cli("kill", "--query", str(victim.thread_id()), "--fe", fe_a.address)
        assert out.returncode == 0, out.stderr
        assert error_code(run.join()) == 1317
        out = _cli("kill", "12345", "--fe", fe_a.address)
        assert out.returncode == 1 and "ERROR 1094 (HY000): Unknown thread id: 12345" in out.stderr
        for bad in ("abc", "--query abc"):  # not an id at all: a usage error, not a 1094
            out = _cli("kill", *bad.split(), "--fe", fe_a.address)
            assert out.returncode == 2 and "ID must be" in out.stderr and "1094" not in out.stderr
        out = _cli("kill", str(victim.thread_id()), "--fe", fe_a.address, "-u", "nobody", FECLUSTER_PASSWORD="x")
        assert out.returncode == 1 and "UNAUTHENTICATED" in out.stderr
        out = _cli("kill", str(victim.thread_id()), "--fe", fe_a.address)
        assert out.returncode == 0 and fe_b.address in out.stdout
