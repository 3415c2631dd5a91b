"""The FE's HTTP API (issue 15): Doris session/query REST, kills by id, auth, CSRF, hostile input."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pymysql
import pytest

from tests.support import SEED_COLUMNS, Cluster, Fe, Running, error_code, fails, stopped, wait_for, wait_running

ROOT = ("root", "")
CSRF = {"X-Requested-With": "fecluster"}


@pytest.fixture(scope="module")
def web_user(cluster3: Cluster) -> tuple[str, str]:
    """A non-admin user every FE knows."""
    name = f"web_{uuid.uuid4().hex[:6]}"
    cluster3.fes[0].query(f"CREATE USER '{name}' IDENTIFIED BY 'pw'")
    for fe in cluster3.fes:
        wait_for(lambda fe=fe: fe.query("SELECT 1", name, "pw"), 5, what=f"{name} known on {fe.name}")
    return name, "pw"


def get(fe: Fe, path: str, auth: Any = ROOT, **kw: Any) -> httpx.Response:
    return httpx.get(fe.http_url + path, auth=auth, timeout=10, **kw)


def post(fe: Fe, path: str, auth: Any = ROOT, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    return httpx.post(fe.http_url + path, auth=auth, headers=CSRF if headers is None else headers, timeout=10, **kw)


def ok_data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0 and body["msg"] == "success", body
    return body["data"]


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["code"] == status and isinstance(body["data"], str), body
    return str(body["data"])


def session_ids(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    columns = data["column_names"]
    return {int(row[columns.index("Id")]): dict(zip(columns, row, strict=True)) for row in data["rows"]}


@contextlib.contextmanager
def sleeping(fe: Fe, user: str = "root", password: str = "", seconds: int = 60) -> Iterator[tuple[Any, Running]]:
    conn = fe.connect(user, password)
    run = Running(conn, f"SELECT SLEEP({seconds})")
    try:
        yield conn, run
    finally:
        with contextlib.suppress(Exception):
            conn.close()


# ---------------------------------------------------------------- auth


def test_unauthenticated_and_wrong_passwords_get_401_with_a_challenge(cluster3: Cluster, web_user: Any) -> None:
    fe = cluster3.fes[0]
    name, _ = web_user
    for auth in (None, ("root", "wrong"), (name, "nope"), ("nobody", "x"), (name, "")):
        for path in ("/rest/v1/session", "/rest/v1/session/all", "/api/cluster", "/"):
            r = get(fe, path, auth=auth)
            error_of(r, 401)
            assert r.headers["www-authenticate"].startswith("Basic realm=")
    for header in ("Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer abc", "Basic"):
        error_of(get(fe, "/api/cluster", auth=None, headers={"Authorization": header}), 401)
    error_of(post(fe, "/api/sessions/1/kill", auth=("root", "wrong")), 401)
    # health, metrics, the API description and the page's static files need no login
    assert get(fe, "/healthz", auth=None).text == "ok\n"
    assert "fecluster_sessions" in get(fe, "/metrics", auth=None).text
    assert get(fe, "/openapi.json", auth=None).json()["openapi"].startswith("3.")
    assert get(fe, "/static/app.js", auth=None).status_code == 200
    # the right password, for a non-admin too
    assert ok_data(get(fe, "/api/cluster", auth=web_user))["user"] == name


# ---------------------------------------------------------------- sessions


def test_session_and_session_all_use_the_seed_columns_and_span_the_cluster(cluster3: Cluster) -> None:
    fe1, fe2 = cluster3.fes[0], cluster3.fes[1]
    with sleeping(fe2) as (conn, run):
        cid = conn.thread_id()
        wait_running(fe1, cid)
        everywhere = ok_data(get(fe1, "/rest/v1/session/all"))
        assert everywhere["column_names"] == SEED_COLUMNS  # Doris's test_show_processlist: 14 columns
        assert everywhere["failed_fes"] == []
        row = session_ids(everywhere)[cid]
        assert row["FE"] == fe2.address and row["Command"] == "Query" and row["User"] == "root"
        assert row["Info"] == "SELECT SLEEP(60)" and row["Id"] == str(cid) and row["CloudCluster"] is None
        here = ok_data(get(fe1, "/rest/v1/session"))
        assert here["column_names"] == SEED_COLUMNS
        assert cid not in session_ids(here)
        assert all(r["FE"] == fe1.address for r in session_ids(here).values())
        assert cid in session_ids(ok_data(get(fe2, "/rest/v1/session")))
        with contextlib.closing(fe1.connect()) as killer, killer.cursor() as cur:
            cur.execute(f"KILL QUERY {cid}")
        assert error_code(run.join()) == 1317


def test_current_queries_lists_running_statements_in_doris_columns(cluster3: Cluster) -> None:
    fe1, fe3 = cluster3.fes[0], cluster3.fes[2]
    with sleeping(fe3) as (conn, run):
        cid = conn.thread_id()
        processlist_row = wait_running(fe1, cid)
        data = ok_data(get(fe1, "/rest/v2/manager/query/current_queries?is_all_node=true"))
        assert data["column_names"] == [
            "Frontend", "QueryId", "ConnectionId", "Catalog", "Database", "User", "ExecTime", "SqlHash", "Statement",
        ]  # fmt: skip
        rows = [dict(zip(data["column_names"], r, strict=True)) for r in data["rows"]]
        mine = [r for r in rows if r["ConnectionId"] == str(cid)]
        assert len(mine) == 1
        assert mine[0]["Frontend"] == fe3.address and mine[0]["QueryId"] == processlist_row[10]
        assert mine[0]["Statement"] == "SELECT SLEEP(60)" and len(mine[0]["SqlHash"]) == 32
        local = ok_data(get(fe1, "/rest/v2/manager/query/current_queries?is_all_node=false"))
        assert str(cid) not in [r[2] for r in local["rows"]]
        error_of(get(fe1, "/rest/v2/manager/query/current_queries?is_all_node=maybe"), 400)
        ok_data(post(fe1, f"/api/sessions/{cid}/kill?kind=query"))
        assert error_code(run.join()) == 1317


def test_non_admins_see_only_their_own_sessions(cluster3: Cluster, web_user: Any) -> None:
    fe1, fe2 = cluster3.fes[0], cluster3.fes[1]
    name, pw = web_user
    with sleeping(fe2) as (root_conn, root_run), sleeping(fe2, name, pw) as (own_conn, own_run):
        rid, oid = root_conn.thread_id(), own_conn.thread_id()
        wait_running(fe1, rid)
        wait_running(fe1, oid)
        seen = session_ids(ok_data(get(fe1, "/rest/v1/session/all", auth=web_user)))
        assert oid in seen and rid not in seen and {r["User"] for r in seen.values()} == {name}
        cluster = ok_data(get(fe1, "/api/cluster", auth=web_user))
        assert cluster["is_admin"] is False and {s["user"] for s in cluster["sessions"]} == {name}
        queries = ok_data(get(fe1, "/rest/v2/manager/query/current_queries", auth=web_user))
        assert {r[5] for r in queries["rows"]} == {name}
        assert "kill audit needs ADMIN_PRIV" in error_of(get(fe1, "/api/audit", auth=web_user), 403)
        admin = session_ids(ok_data(get(fe1, "/rest/v1/session/all")))
        assert {rid, oid} <= set(admin)
        # a non-admin may not kill root's statement (the owner FE says 1095), but may kill its own
        assert error_of(post(fe1, f"/api/sessions/{rid}/kill?kind=query", auth=web_user), 403).startswith("1095")
        qid = next(s["query_id"] for s in ok_data(get(fe1, "/api/cluster"))["sessions"] if s["id"] == rid)
        assert error_of(post(fe1, f"/rest/v2/manager/query/kill/{qid}", auth=web_user), 403).startswith("1095")
        assert root_run.thread.is_alive()
        ok_data(post(fe1, f"/api/sessions/{oid}/kill?kind=query", auth=web_user))
        assert error_code(own_run.join()) == 1317
        ok_data(post(fe1, f"/api/sessions/{rid}/kill?kind=query"))
        assert error_code(root_run.join()) == 1317


# ---------------------------------------------------------------- kills


def test_kill_query_then_connection_by_connection_id_on_another_fe(cluster3: Cluster) -> None:
    fe1, fe2 = cluster3.fes[0], cluster3.fes[1]
    with sleeping(fe2) as (conn, run):
        cid = conn.thread_id()
        wait_running(fe1, cid)
        data = ok_data(post(fe1, f"/api/sessions/{cid}/kill?kind=query"))
        assert data == {"connection_id": cid, "kind": "QUERY", "owner_fe": fe2.address}
        assert error_code(run.join()) == 1317
        with conn.cursor() as cur:  # KILL QUERY leaves the connection up
            cur.execute("SELECT 1")
            assert cur.fetchall() == ((1,),)
        data = ok_data(post(fe1, f"/api/sessions/{cid}/kill"))
        assert data == {"connection_id": cid, "kind": "CONNECTION", "owner_fe": fe2.address}
        assert fails(conn, "SELECT 1")[0] in (2013, 2006)
        wait_for(lambda: cid not in session_ids(ok_data(get(fe1, "/rest/v1/session/all"))), 5, what="row gone")
        assert error_of(post(fe1, f"/api/sessions/{cid}/kill"), 404).startswith("1094")
    audit = ok_data(get(fe1, "/api/audit?limit=20"))
    kinds = {(e["kind"], e["outcome"]) for e in audit if e["target"] == str(cid)}
    assert {("QUERY", "ok"), ("CONNECTION", "ok")} <= kinds
    assert all(e["received_on"] == fe1.address for e in audit if e["target"] == str(cid))


def test_doris_kill_by_query_id(cluster3: Cluster) -> None:
    fe1, fe3 = cluster3.fes[0], cluster3.fes[2]
    with sleeping(fe3) as (conn, run):
        qid = wait_running(fe1, conn.thread_id())[10]
        # is_all_node=false: this FE only, and the query runs elsewhere
        assert error_of(post(fe1, f"/rest/v2/manager/query/kill/{qid}?is_all_node=false"), 404).startswith("1097")
        assert run.thread.is_alive()
        data = ok_data(post(fe1, f"/rest/v2/manager/query/kill/{qid}?is_all_node=true"))
        assert data == {"query_id": qid, "owner_fe": fe3.address}
        assert error_code(run.join()) == 1317
        # Doris: a live session's finished query id can be killed again, a no-op
        assert ok_data(post(fe1, f"/rest/v2/manager/query/kill/{qid}"))["query_id"] == qid
    for bad in ("not-a-query-id", "00000000000000ff-0000000000000001"):
        error_of(post(fe1, f"/rest/v2/manager/query/kill/{bad}"), 404)
    error_of(post(fe1, "/api/sessions/abc/kill"), 400)
    error_of(post(fe1, "/api/sessions/99999999999/kill"), 400)
    error_of(post(fe1, "/api/sessions/5/kill?kind=everything"), 400)
    error_of(get(fe1, "/api/sessions/5/kill"), 405)


def test_trace_id_not_found_in_dorises_shape(cluster3: Cluster) -> None:
    r = get(cluster3.fes[0], "/rest/v2/manager/query/trace_id/my-trace-1")
    assert r.status_code == 404
    assert r.json() == {"msg": "Not Found", "code": 404, "data": "not found query id", "count": 0}
    error_of(get(cluster3.fes[0], "/rest/v2/manager/query/trace_id/x", auth=("root", "bad")), 401)


def test_dorises_curl_kill_works_as_documented(cluster3: Cluster) -> None:
    """Doris's documented call, by the real curl: no extra header (it answered 403 "POST needs an
    X-Requested-With header"), a query running on another FE."""
    fe1, fe3 = cluster3.fes[0], cluster3.fes[2]
    with sleeping(fe3) as (conn, run):
        qid = wait_running(fe1, conn.thread_id())[10]
        url = f"{fe1.http_url}/rest/v2/manager/query/kill/{qid}?is_all_node=true"
        out = subprocess.run(
            ["curl", "-s", "-u", "root:", "-X", "POST", url], capture_output=True, text=True, timeout=30
        )
        body = json.loads(out.stdout)
        assert body["code"] == 0 and body["msg"] == "success", body
        assert error_code(run.join()) == 1317


def test_posts_are_protected_against_cross_site_requests(cluster3: Cluster) -> None:
    fe = cluster3.fes[0]
    host = f"127.0.0.1:{fe.http_port}"
    for headers in (
        {"Origin": "http://evil.example"},  # what a cross-site <form> or fetch sends
        {**CSRF, "Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": f"http://{host}", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of this host is the same site, not the same origin
    ):
        assert "cross" in error_of(post(fe, "/api/sessions/1/kill", headers=headers), 403).lower()
        message = error_of(
            post(fe, "/rest/v2/manager/query/kill/0000000000000001-0000000000000001", headers=headers), 403
        )
        assert "cross" in message.lower()
        # refused before the credentials are even looked at
        assert "cross" in error_of(post(fe, "/api/sessions/1/kill", auth=None, headers=headers), 403).lower()
    # same origin, or no word from a browser at all (curl, scripts), passes the check (and finds no connection 1)
    for headers in ({"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}, {}, {"Sec-Fetch-Site": "none"}):
        error_of(post(fe, "/api/sessions/1/kill", headers=headers), 404)
    # a CORS preflight is never granted
    r = httpx.options(fe.http_url + "/api/sessions/1/kill", headers={"Origin": "http://evil.example"})
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers


# ---------------------------------------------------------------- an FE that does not answer


@pytest.mark.slow
def test_a_stopped_fe_is_listed_not_hidden(make_cluster) -> None:  # type: ignore[no-untyped-def]
    # Its own cluster with a long lease: fe3 stays stopped for three peer deadlines
    # (about 7 s on a busy machine), and an FE stopped for 5/6 of its lease fences
    # itself on waking (docs/fencing.md), which would end the session this test kills.
    cluster3 = make_cluster(3, lease_ttl=30.0)
    fe1, fe3 = cluster3.fes[0], cluster3.fes[2]
    with sleeping(fe3) as (conn, run):
        cid = conn.thread_id()
        wait_running(fe1, cid)
        with stopped(fe3):
            started = time.monotonic()
            data = ok_data(get(fe1, "/rest/v1/session/all"))
            assert time.monotonic() - started < 5  # the peer deadline (2 s), not a hang
            assert [f["fe"] for f in data["failed_fes"]] == [fe3.address]
            assert fe3.address in data["failed_fes"][0]["message"]
            assert cid not in session_ids(data)
            cluster = ok_data(get(fe1, "/api/cluster"))
            status = {m["address"]: m["status"] for m in cluster["members"]}
            assert status[fe3.address] == "not answering" and status[fe1.address] == "up"
            assert [f["fe"] for f in cluster["failed_fes"]] == [fe3.address]
            # a kill for it says who did not answer, as a 503 (not our bad input, not a hang)
            message = error_of(post(fe1, f"/api/sessions/{cid}/kill?kind=query"), 503)
            assert message.startswith("1105") and fe3.address in message
        wait_for(lambda: not ok_data(get(fe1, "/rest/v1/session/all"))["failed_fes"], 10, what="fe3 answers again")
        ok_data(post(fe1, f"/api/sessions/{cid}/kill?kind=query"))
        assert error_code(run.join()) == 1317


# ---------------------------------------------------------------- the page and hostile input


def test_page_and_static_files(cluster3: Cluster) -> None:
    fe = cluster3.fes[0]
    page = get(fe, "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert '<table id="sessions">' in page.text and "/static/app.js" in page.text
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        r = get(fe, f"/static/{name}", auth=None)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    for path in ("/static/../http.py", "/static/%2e%2e/http.py", "/static/nope.js", "/static/", "/nothing"):
        error_of(get(fe, path), 404)
    error_of(httpx.put(fe.http_url + "/healthz"), 405)


def raw(fe: Fe, data: bytes, wait: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", fe.http_port), timeout=wait) as s:
        s.sendall(data)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.slow
def test_hostile_requests_get_4xx_and_the_fe_keeps_serving(cluster3: Cluster) -> None:
    fe = cluster3.fes[0]
    cases = {
        b"GARBAGE\r\n\r\n": 400,
        b"GET / HTTP/2.0\r\n\r\n": 400,
        b"GET nothing HTTP/1.1\r\n\r\n": 400,
        b"G\x00T / HTTP/1.1\r\n\r\n": 400,
        b"GET /rest/v1/session HTTP/1.1\r\nbad header\r\n\r\n": 400,
        b"GET /%ff%fe HTTP/1.1\r\n\r\n": 400,
        b"GET /x HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(100)) + b"\r\n": 431,
        b"GET /x HTTP/1.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n": 431,
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n": 414,
        b"POST /api/sessions/1/kill HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n": 413,
        b"POST /api/sessions/1/kill HTTP/1.1\r\nContent-Length: -1\r\n\r\n": 400,
        b"POST /api/sessions/1/kill HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n": 400,
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n": 400,
        b"DELETE /api/cluster HTTP/1.1\r\nConnection: close\r\n\r\n": 405,
    }
    for request, status in cases.items():
        answer = raw(fe, request)
        assert status_of(answer) == status, (request[:60], answer[:200])
    # a client that never finishes its request is cut off after the read deadline
    started = time.monotonic()
    answer = raw(fe, b"GET /api/cluster HTTP/1.1\r\nHost: x\r\n", wait=15)
    assert status_of(answer) == 408 and time.monotonic() - started < 8
    # keep-alive: two requests on one connection
    two = raw(fe, b"GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert two.count(b"HTTP/1.1 200 OK") == 2
    assert get(fe, "/healthz").text == "ok\n"
    with contextlib.closing(fe.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")


def test_metrics_and_healthz_unchanged(cluster3: Cluster) -> None:
    fe = cluster3.fes[0]
    with contextlib.closing(fe.connect()) as conn:
        with conn.cursor() as cur, contextlib.suppress(pymysql.err.MySQLError):
            cur.execute("KILL 12345")
        text = get(fe, "/metrics", auth=None).text
    assert "fecluster_redis_up 1" in text and 'fecluster_kills_total{outcome="1094"}' in text
