"""TLS on both listeners, and mTLS between FEs when a CA is configured."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import grpc
import pymysql
import pytest

from frontend.grpc_client import Client
from tests.support import Cluster, Running, error_code, wait_running


def _openssl(command: str, cwd: Path) -> None:
    subprocess.run(["openssl", *command.split()], cwd=cwd, check=True, capture_output=True)


def _ca(name: str, cwd: Path) -> None:
    _openssl(f"req -x509 -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.pem -days 2 -subj /CN={name}", cwd)


def _signed(name: str, ca: str, cwd: Path) -> None:
    _openssl(f"req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name}", cwd)
    (cwd / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        f"x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -out {name}.pem -days 2 "
        f"-extfile {name}.ext",
        cwd,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _ca("ca", d)
    _signed("fe", "ca", d)
    _ca("other", d)
    _signed("intruder", "other", d)  # a certificate from another CA: must not get in
    return d


@pytest.fixture(scope="module")
def tls_cluster(redis_url: str, pki: Path):  # type: ignore[no-untyped-def]
    from tests.support import new_cluster

    cluster = new_cluster(redis_url, 2, tls_cert=pki / "fe.pem", tls_key=pki / "fe.key", tls_ca=pki / "ca.pem")
    yield cluster
    cluster.stop()


def _creds(pki: Path, name: str | None) -> grpc.ChannelCredentials:
    if name is None:
        return grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes())
    return grpc.ssl_channel_credentials(
        (pki / "ca.pem").read_bytes(), (pki / f"{name}.key").read_bytes(), (pki / f"{name}.pem").read_bytes()
    )


def test_cross_fe_kill_over_mutual_tls(tls_cluster: Cluster, pki: Path) -> None:
    fe1, fe2 = tls_cluster.fes
    ssl = {"ca": str(pki / "ca.pem")}
    with contextlib.closing(fe2.connect(ssl=ssl)) as victim, contextlib.closing(fe1.connect(ssl=ssl)) as killer:
        with victim.cursor() as cur:
            cur.execute("SELECT 1")
        assert victim.get_host_info()  # the MySQL connection itself is TLS
        run = Running(victim, "SELECT SLEEP(30)")
        wait_running(fe1, victim.thread_id())
        with killer.cursor() as cur:
            cur.execute(f"KILL QUERY {victim.thread_id()}")
        assert error_code(run.join()) == 1317


def test_grpc_clients_need_a_certificate_from_the_ca(tls_cluster: Cluster, pki: Path) -> None:
    address = tls_cluster.fes[0].address
    with Client(address, credentials=_creds(pki, "fe")) as client:
        _, failures = client.processlist()
        assert failures == []
    for name in (None, "intruder"):
        with Client(address, credentials=_creds(pki, name), timeout=5) as client, pytest.raises(grpc.RpcError) as e:
            client.processlist()
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError):
        channel.unary_unary("/fecluster.v1.Frontend/ShowProcesslist")(b"", timeout=3)


def test_plain_mysql_clients_still_connect(tls_cluster: Cluster) -> None:
    with contextlib.closing(tls_cluster.fes[0].connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchall() == ((1,),)
    assert pymysql  # PyMySQL without ssl= negotiates no TLS


@pytest.fixture(scope="module")
def mysql_tls_fe(redis_url: str, pki: Path):  # type: ignore[no-untyped-def]
    from tests.support import new_cluster

    cluster = new_cluster(redis_url, 1, mysql_tls_cert=pki / "fe.pem", mysql_tls_key=pki / "fe.key")
    yield cluster.fes[0]
    cluster.stop()


def test_show_status_names_the_clients_cipher(mysql_tls_fe: Running, pki: Path) -> None:
    """libmariadb-based clients (mysqlclient) learn they are encrypted only by
    asking the server: ``SHOW SESSION STATUS LIKE 'Ssl_cipher'`` (MariaDB's answer)."""
    import MySQLdb

    def status(**tls: object) -> dict[str, str]:
        conn = MySQLdb.connect(host="127.0.0.1", port=mysql_tls_fe.mysql_port, user="root", **tls)
        try:
            cur = conn.cursor()
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl\\_%'")
            return dict(cur.fetchall())
        finally:
            conn.close()

    secure = status(ssl={"ca": str(pki / "ca.pem")})
    assert secure["Ssl_version"].startswith("TLSv1.") and secure["Ssl_cipher"], secure
    assert status(ssl_mode="DISABLED") == {"Ssl_cipher": "", "Ssl_version": ""}
