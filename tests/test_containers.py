"""The image from deploy/Dockerfile, in containers (issue 7): Redis and two FEs
on one Docker network, each FE advertising its network alias; a KILL QUERY
sent to one FE interrupts a statement on the other. Skipped when no Docker
engine answers."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from tests.conftest import DOCKER
from tests.support import Running, error_code, wait_for

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not DOCKER, reason="no Docker engine answers"),
    pytest.mark.timeout(900),  # the first build downloads the base image and the wheels
]

REPO = Path(__file__).resolve().parents[1]
# The Redis container's own port on the private Docker network (never the host's).
REDIS_IN_NETWORK = "redis://redis:" + str(6379) + "/0"
SECRET = uuid.uuid4().hex


@contextlib.contextmanager
def _fe_containers(n: int) -> Iterator[list]:  # type: ignore[type-arg]
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.image import DockerImage
    from testcontainers.core.network import Network

    with (
        DockerImage(path=REPO, dockerfile_path="deploy/Dockerfile", tag=f"fecluster:test-{SECRET[:8]}") as image,
        Network() as network,
        DockerContainer("redis:7-alpine").with_network(network).with_network_aliases("redis") as _redis,
        contextlib.ExitStack() as stack,
    ):
        fes = []
        for i in range(1, n + 1):
            name = f"fe{i}"
            container = (
                DockerContainer(str(image))
                .with_network(network)
                .with_network_aliases(name)
                .with_env("FECLUSTER_REDIS_URL", REDIS_IN_NETWORK)
                .with_env("FECLUSTER_ADVERTISE_HOST", name)
                .with_env("FECLUSTER_CLUSTER_SECRET", SECRET)
                .with_exposed_ports(9030, 9020)
            )
            fes.append(stack.enter_context(container))
        for container in fes:
            wait_for(lambda c=container: _healthy(c), 90, 0.5, what=f"{container} to be healthy (its HEALTHCHECK)")
        yield fes


def _healthy(container) -> bool:  # type: ignore[no-untyped-def]
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    state = wrapped.attrs["State"]
    if not state["Running"]:
        raise AssertionError(f"container exited: {container.get_logs()}")
    return state.get("Health", {}).get("Status") == "healthy"


def _connect(container) -> pymysql.Connection:  # type: ignore[no-untyped-def]
    return pymysql.connect(
        host=container.get_container_host_ip(),
        port=int(container.get_exposed_port(9030)),
        user="root",
        password="",
        ssl_disabled=True,
        autocommit=True,
        connect_timeout=10,
        read_timeout=60,
    )


def test_cross_fe_kill_query_between_containers() -> None:
    with (
        _fe_containers(2) as (fe1, fe2),
        contextlib.closing(_connect(fe1)) as victim,
        contextlib.closing(_connect(fe2)) as killer,
    ):
        vid = victim.thread_id()
        run = Running(victim, "SELECT SLEEP(30)")

        def running() -> bool:
            with killer.cursor() as cur:
                cur.execute("SHOW FULL PROCESSLIST")
                return any(row[1] == vid and row[7] == "Query" for row in cur.fetchall())

        wait_for(running, 20, what="the victim's SLEEP in fe2's processlist")
        with killer.cursor() as cur:
            cur.execute("SHOW PROCESSLIST")
            fe_column = {row[1]: row[12] for row in cur.fetchall()}
            assert fe_column[vid] == "fe1:9020"  # the advertised alias, what peers dial
            assert fe_column[killer.thread_id()] == "fe2:9020"
            sent = time.monotonic()
            cur.execute(f"KILL QUERY {vid}")
        assert error_code(run.join(15)) == 1317, run.outcome
        assert run.finished_at - sent < 5
