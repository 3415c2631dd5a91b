from __future__ import annotations

import contextlib
import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from frontend import procs
from tests.mariadb import MariaDB, install_db_binary, mariadbd_binary
from tests.support import Cluster, Fe, new_cluster

log = logging.getLogger(__name__)


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean "no"
        return False


DOCKER = _docker_answers()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis on a free port: a testcontainers container when Docker
    answers, the local redis-server binary otherwise."""
    if DOCKER:
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    server = procs.start_redis()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_server() -> Iterator[procs.RedisServer]:
    """A private redis-server process that a test may stop and restart."""
    server = procs.start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cluster3(redis_url: str) -> Iterator[Cluster]:
    """Three FEs sharing one Redis, reused by the tests that leave it as they found it.
    No login throttle here: many tests send wrong passwords on purpose, and the
    delays would add up over the session (the throttle has tests of its own)."""
    cluster = new_cluster(redis_url, 3, login_delay=0)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def fe(cluster3: Cluster):  # type: ignore[no-untyped-def]
    return cluster3.fes[0]


@pytest.fixture
def db(fe: Fe) -> Iterator[str]:
    """An empty database of its own on ``fe``, dropped afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}"
    fe.query(f"CREATE DATABASE {name}")
    yield name
    fe.query(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def make_cluster(redis_url: str) -> Iterator:  # type: ignore[type-arg]
    clusters: list[Cluster] = []

    def make(n: int, url: str | None = None, **extra: object) -> Cluster:
        cluster = new_cluster(url or redis_url, n, **extra)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        with contextlib.suppress(Exception):
            cluster.stop()


def _openssl(command: str, cwd: Path) -> None:
    subprocess.run(["openssl", *command.split()], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def server_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA (ca.pem) and a server certificate for 127.0.0.1/localhost signed by it
    (server.pem, server.key), for MySQL-protocol servers offering TLS."""
    d = tmp_path_factory.mktemp("server-pki")
    _openssl("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca", d)
    _openssl("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost", d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext",
        d,
    )
    return d


@pytest.fixture(scope="session")
def mariadb(server_pki: Path) -> Iterator[MariaDB]:
    """A private MariaDB (the machine's mariadbd, temp datadir, free port, TLS on
    with ``server_pki``): root without a password and ``alice``/``s3cret``.
    The reference server: a driver cell must pass here before fecluster is held to it."""
    if mariadbd_binary() is None or install_db_binary() is None:
        pytest.skip("no mariadbd binary on this machine (Debian: apt-get install mariadb-server)")
    server = MariaDB(tls=(server_pki / "server.pem", server_pki / "server.key"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def backend_mariadb() -> Iterator[MariaDB]:
    """A private MariaDB (the machine's mariadbd on a free port, never 3306) for FEs to use as their backend."""
    try:
        server = MariaDB("fesvc", "svc-pw")
    except FileNotFoundError as e:
        pytest.skip(f"no MariaDB server binary: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def netlab() -> Iterator:  # type: ignore[type-arg]
    """Network namespaces for this test (tests/netns.py); removed afterwards, even on failure."""
    from tests import netns

    reason = netns.unavailable()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    lab = netns.Lab()
    try:
        lab.start()
        yield lab
    finally:
        lab.close()
    assert not lab.leftovers(), f"namespaces left behind: {lab.leftovers()}"


@pytest.fixture
def net_cluster(netlab) -> Iterator:  # type: ignore[no-untyped-def,type-arg]
    """``make(n, **flags)``: Redis and n FEs, each in its own namespace."""
    from tests.netns import NetCluster

    clusters: list[NetCluster] = []

    def make(n: int, **extra: object) -> NetCluster:
        cluster = NetCluster(netlab, **extra)
        clusters.append(cluster)
        for _ in range(n):
            cluster.start_fe(wait=False)
        for fe in cluster.fes:
            cluster.wait_ready(fe)
        return cluster

    yield make
    for cluster in clusters:
        with contextlib.suppress(Exception):
            cluster.stop()


@pytest.fixture(scope="session")
def mysql_backend_fe(redis_url: str, backend_mariadb: MariaDB) -> Iterator[Fe]:
    """One FE over ``backend_mariadb`` (``--backend mysql://...``)."""
    cluster = new_cluster(redis_url, 1, backend=f"mysql://fesvc:svc-pw@127.0.0.1:{backend_mariadb.port}")
    try:
        yield cluster.fes[0]
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "mysql"])
def any_fe(request: pytest.FixtureRequest) -> Fe:
    """The same test over the embedded backend (``fe``) and over a MariaDB backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("cluster3").fes[0]  # type: ignore[no-any-return]
    return request.getfixturevalue("mysql_backend_fe")  # type: ignore[no-any-return]
