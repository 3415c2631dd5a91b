"""The HTTP server against a fake WebOps, in process: the seam the node is reached through,
and the paths a real cluster cannot reach yet (a trace id that is found) or only by breaking it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest

from coordinator.errors import SqlError
from coordinator.pb import fecluster_pb2 as pb
from coordinator.registry import FeRecord
from coordinator.routing import FeFailure
from coordinator.users import ADMIN_PRIV, UserRecord
from frontend import procs
from frontend.http import HttpListener, WebOps

ROOT = ("root", "pw")
ME = "10.0.0.1:9020"


class FakeOps:
    def __init__(self) -> None:
        self.killed: list[tuple[pb.KillTarget, str]] = []
        self.broken = False

    def address(self) -> str:
        return ME

    def accepting(self) -> bool:
        return True

    def metrics(self) -> str:
        return "fake 1\n"

    async def authenticate(self, user: str, password: str) -> UserRecord | None:
        if (user, password) == ROOT:
            return UserRecord("root", "", frozenset({ADMIN_PRIV}))
        return UserRecord("dev") if (user, password) == ("dev", "pw") else None

    async def processlist(self, requester: str, local_only: bool) -> tuple[list[pb.ProcessRow], list[FeFailure]]:
        if self.broken:
            raise RuntimeError("boom")
        row = pb.ProcessRow(id=7, user="dev", command="Query", info="SELECT 1", fe=ME, query_id="q")
        return [row], [] if local_only else [FeFailure("10.0.0.2:9020", "FE 10.0.0.2:9020 did not answer")]

    async def kill(self, target: pb.KillTarget, requester: str, requester_host: str = "") -> str:
        self.killed.append((target, requester))
        return ME

    async def members(self) -> tuple[list[FeRecord], bool]:
        return [FeRecord(1, ME, "10.0.0.1:9030", 0.0, "0.1.0"), FeRecord(2, "10.0.0.2:9020", "x", 0.0, "0.1.0")], True

    async def audit(self, limit: int) -> list[dict[str, str]]:
        raise SqlError(1105, "registry unavailable (Redis)")

    async def trace_lookup(self, trace_id: str, requester: str) -> str | None:
        return "00000000000000aa-0000000000000001" if trace_id == "known" else None


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeOps, httpx.AsyncClient]]:
    ops = FakeOps()
    typed: WebOps = ops  # the fake satisfies the Protocol (checked by type checkers)
    listener = HttpListener(SimpleNamespace(bind_host="127.0.0.1", http_port=procs.free_port()), typed)
    await listener.start()
    auth = "Basic " + base64.b64encode(b"root:pw").decode()
    headers = {"Authorization": auth, "X-Requested-With": "test"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener.port}", headers=headers) as client:
        yield ops, client
    await listener.stop()


async def test_found_trace_id_answers_the_query_id(served: tuple[FakeOps, httpx.AsyncClient]) -> None:
    _, client = served
    r = await client.get("/rest/v2/manager/query/trace_id/known")
    assert r.json() == {"msg": "success", "code": 0, "data": "00000000000000aa-0000000000000001", "count": 0}
    assert (await client.get("/rest/v2/manager/query/trace_id/unknown")).status_code == 404


async def test_failures_are_listed_and_the_fes_health_follows(served: tuple[FakeOps, httpx.AsyncClient]) -> None:
    _, client = served
    data = (await client.get("/api/cluster")).json()["data"]
    assert data["failed_fes"] == [{"fe": "10.0.0.2:9020", "message": "FE 10.0.0.2:9020 did not answer"}]
    assert {m["address"]: m["status"] for m in data["members"]} == {ME: "up", "10.0.0.2:9020": "not answering"}
    assert data["sessions"][0]["id"] == 7 and data["is_admin"] is True
    rows = (await client.get("/rest/v1/session/all")).json()["data"]
    assert rows["rows"][0][1] == "7" and rows["failed_fes"][0]["fe"] == "10.0.0.2:9020"


async def test_kill_carries_the_authenticated_user(served: tuple[FakeOps, httpx.AsyncClient]) -> None:
    ops, client = served
    r = await client.post("/api/sessions/7/kill?kind=query")
    assert r.json()["data"] == {"connection_id": 7, "kind": "QUERY", "owner_fe": ME}
    dev = "Basic " + base64.b64encode(b"dev:pw").decode()
    await client.post("/api/sessions/7/kill", headers={"Authorization": dev})
    assert [(t.connection_id, t.kind, who) for t, who in ops.killed] == [
        (7, pb.KILL_QUERY, "root"),
        (7, pb.KILL_CONNECTION, "dev"),
    ]


async def test_a_failing_node_is_a_503_not_a_dead_server(served: tuple[FakeOps, httpx.AsyncClient]) -> None:
    ops, client = served
    r = await client.get("/api/audit")
    assert r.status_code == 503 and r.json()["data"].startswith("1105")
    ops.broken = True
    r = await client.get("/rest/v1/session")
    assert r.status_code == 503 and r.json()["code"] == 503
    ops.broken = False
    assert (await client.get("/rest/v1/session")).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert metrics.startswith("fake 1\n")  # the FE's own, then the HTTP port's
    assert 'fecluster_http_connections{state="busy"} 1' in metrics and "fecluster_login_delays_total 0" in metrics
