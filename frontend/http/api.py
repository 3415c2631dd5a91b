"""The routes of the HTTP port and their handlers: Doris's REST, our own kill and page data,
the sessions page's files; HTTP basic auth (throttled) and the cross-site check.

Every API call and the page need HTTP basic auth against the cluster's users
(the same password check as the gRPC API); failed logins cost growing delays
(``frontend.throttle``). Visibility and privileges are SQL's: the owner FE
decides, through the same routing as ``KILL`` and ``SHOW PROCESSLIST``.

Cross-site requests: a browser says where a request comes from (``Origin``
on every cross-origin request and every POST, ``Sec-Fetch-Site`` on every
request of a current browser). A state-changing request is refused when the
browser says it comes from another origin (``Origin`` not this ``Host``, or
``Sec-Fetch-Site`` other than ``same-origin``/``none``), and accepted when it
carries neither: curl and scripts, as Doris's documentation calls its REST
kill (``curl -u root: -X POST .../rest/v2/manager/query/kill/<id>``). The
refusal comes before authentication, so a cross-site page cannot even make
the browser try its saved credentials.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from coordinator.errors import NOT_OWNER, UNKNOWN_ERROR, UNKNOWN_QUERY, UNKNOWN_THREAD, SqlError
from coordinator.pb import fecluster_pb2 as pb
from coordinator.processlist import COLUMNS, format_row, row_dict
from coordinator.users import UserRecord
from frontend.http.openapi import openapi
from frontend.http.ops import WebOps
from frontend.http.protocol import HttpError, Request, Response, envelope, error_response
from frontend.throttle import LoginThrottle

log = logging.getLogger("fecluster.http")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
QUERY_ID_RE = re.compile(r"^[0-9a-fA-F]{16}-[0-9a-fA-F]{16}$")
CURRENT_QUERY_COLUMNS = (
    "Frontend", "QueryId", "ConnectionId", "Catalog", "Database", "User", "ExecTime", "SqlHash", "Statement",
)  # fmt: skip
CHALLENGE = {"WWW-Authenticate": 'Basic realm="fecluster", charset="UTF-8"'}

Handler = Callable[[Request, UserRecord, dict[str, str]], Awaitable[Response]]
Pause = Callable[[Request, float], Awaitable[None]]


def _bool_arg(request: Request, name: str, default: bool) -> bool:
    value = request.arg(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise HttpError(400, f"{name} must be true or false")


def _int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.arg(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer") from None
    if not low <= number <= high:
        raise HttpError(400, f"{name} must be between {low} and {high}")
    return number


def _kill_error(e: SqlError) -> HttpError:
    status = {UNKNOWN_THREAD: 404, UNKNOWN_QUERY: 404, NOT_OWNER: 403}.get(e.code, 503)
    return HttpError(status, f"{e.code}: {e.message}")


def _cell(value: Any) -> str | None:
    return None if value is None else str(value)


def check_same_origin(request: Request) -> None:
    """A state-changing request: refused when the browser says it comes from another origin."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise HttpError(403, f"cross-site request refused (Sec-Fetch-Site: {site[:40]})")
    origin = request.headers.get("origin")
    if origin is None:
        return
    if origin == "null":
        raise HttpError(403, "cross-origin request refused (Origin: null)")
    if urlsplit(origin).netloc != request.headers.get("host", ""):
        raise HttpError(403, "cross-origin request refused (Origin does not match Host)")


async def _no_pause(request: Request, seconds: float) -> None:
    await asyncio.sleep(seconds)


class Api:
    """Dispatch one parsed request to its answer."""

    def __init__(self, ops: WebOps, throttle: LoginThrottle, pause: Pause = _no_pause) -> None:
        self.ops = ops
        self.throttle = throttle
        self.pause = pause  # the server's sleep: the connection may be closed for room meanwhile
        self.extra_metrics: Callable[[], str] = str
        self._openapi = json.dumps(openapi()).encode()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"^/rest/v1/session$"), self._session_local),
            ("GET", re.compile(r"^/rest/v1/session/all$"), self._session_all),
            ("GET", re.compile(r"^/rest/v2/manager/query/current_queries$"), self._current_queries),
            ("POST", re.compile(r"^/rest/v2/manager/query/kill/(?P<query_id>[^/]+)$"), self._kill_query_id),
            ("GET", re.compile(r"^/rest/v2/manager/query/trace_id/(?P<trace_id>[^/]+)$"), self._trace_id),
            ("POST", re.compile(r"^/api/sessions/(?P<conn_id>[^/]+)/kill$"), self._kill_connection),
            ("GET", re.compile(r"^/api/cluster$"), self._cluster),
            ("GET", re.compile(r"^/api/audit$"), self._audit),
        ]

    async def respond(self, request: Request) -> Response:
        try:
            return await self._dispatch(request)
        except HttpError as e:
            return error_response(e)
        except ConnectionError:
            raise  # the client is gone (or was closed for room): nothing to answer
        except Exception:
            log.exception("HTTP %s %s failed", request.method, request.path[:200])
            return envelope("internal error (see the FE's log)", 503)

    async def _dispatch(self, request: Request) -> Response:
        path, method = request.path, request.method
        if method == "HEAD":
            method = "GET"
        if path == "/healthz":
            self._allow(method, "GET")
            ok = self.ops.accepting()
            return Response(200 if ok else 503, b"ok\n" if ok else b"stopping\n", "text/plain; charset=utf-8")
        if path == "/metrics":
            self._allow(method, "GET")
            return Response(200, (self.ops.metrics() + self.extra_metrics()).encode(), "text/plain; version=0.0.4")
        if path == "/openapi.json":
            self._allow(method, "GET")
            return Response(200, self._openapi)
        if path == "/favicon.ico":  # browsers ask for it whatever the page says: no 404 in their console
            self._allow(method, "GET")
            return Response(204, b"", "image/x-icon", {"Cache-Control": "max-age=86400"})
        if path.startswith("/static/"):
            self._allow(method, "GET")
            return self._static(path.removeprefix("/static/"))
        if path in ("/", "/index.html"):
            self._allow(method, "GET")
            await self._authenticate(request)
            response = self._static("index.html")
            response.headers["Cache-Control"] = "no-store"
            return response
        matched_path = False
        for route_method, pattern, handler in self._routes:
            match = pattern.match(path)
            if match is None:
                continue
            matched_path = True
            if route_method != method:
                continue
            if method == "POST":
                check_same_origin(request)
            user = await self._authenticate(request)
            return await handler(request, user, match.groupdict())
        if matched_path:
            allowed = ", ".join(sorted({m for m, p, _ in self._routes if p.match(path)}))
            raise HttpError(405, f"method {request.method} not allowed", {"Allow": allowed})
        raise HttpError(404, f"no such resource: {path[:200]}")

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method != allowed:
            raise HttpError(405, f"method {method} not allowed", {"Allow": allowed})

    def _static(self, name: str) -> Response:
        if not re.fullmatch(r"[A-Za-z0-9_-]+\.[a-z]+", name):
            raise HttpError(404, "no such file")
        file = WEB_DIR / name
        kind = STATIC_TYPES.get(file.suffix)
        if kind is None or not file.is_file():
            raise HttpError(404, "no such file")
        return Response(200, file.read_bytes(), kind, {"Cache-Control": "no-cache"})

    async def _authenticate(self, request: Request) -> UserRecord:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            raise HttpError(401, "authentication required (HTTP basic, a cluster user)", CHALLENGE)
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise HttpError(401, "malformed basic credentials", CHALLENGE) from None
        name, sep, password = decoded.partition(":")
        if not sep or not name:
            raise HttpError(401, "malformed basic credentials", CHALLENGE)
        # The same path for every name, known or not: wait, verify, count.
        delay = self.throttle.delay_for(name, request.peer)
        if delay > 0:
            await self.pause(request, delay)
        user = await self.ops.authenticate(name, password)
        if user is None:
            self.throttle.failed(name, request.peer)
            raise HttpError(401, f"access denied for user {name[:128]!r}", CHALLENGE)
        self.throttle.succeeded(name, request.peer)
        return user

    # ------------------------------------------------------------ REST handlers

    async def _session_rows(self, user: UserRecord, local_only: bool) -> Response:
        rows, failures = await self.ops.processlist(user.name, local_only)
        data = {
            "column_names": list(COLUMNS),
            "rows": [[_cell(v) for v in format_row(row, -1, True)] for row in rows],
            "failed_fes": [{"fe": f.fe, "message": f.message} for f in failures],
        }
        return envelope(data)

    async def _session_local(self, request: Request, user: UserRecord, params: dict[str, str]) -> Response:
        return await self._session_rows(user, local_only=True)

    async def _session_all(self, request: Request, user: UserRecord, params: dict[str, str]) -> Response:
        return await self._session_rows(user, local_only=False)

    async def _current_queries(self, request: Request, user: UserRecord, params: dict[str, str]) -> Response:
        all_nodes = _bool_arg(request, "is_all_node", True)
        rows, failures = await self.ops.processlist(user.name, not all_nodes)
        queries = [
            [
                row.fe,
                row.query_id,
                str(row.id),
                row.catalog,
                row.db,
                row.user,
                str(row.time * 1000),
                hashlib.md5(row.info.encode(), usedforsecurity=False).hexdigest(),
                row.info,
            ]
            for row in rows
            if row.command == "Query"
        ]
        data = {
            "column_names": list(CURRENT_QUERY_COLUMNS),
            "rows": queries,
            "failed_fes": [{"fe": f.fe, "message": f.message} for f in failures],
        }
        return envelope(data)

    async def _kill_query_id(self, request: Request, user: UserRecord, params: dict[str, str]) -> Response:
        query_id = params["query_id"]
        all_nodes = _bool_arg(request, "is_all_node", True)
        if not QUERY_ID_RE.match(query_id):
            raise HttpError(404, f"{UNKNOWN_QUERY}: Unknown query id: {query_id}")
        if not all_nodes:
            rows, _ = await self.ops.processlist(user.name, True)
            if not any(r.query_id == query_id and r.command == "Query" for r in rows):
                raise HttpError(404, f"{UNKNOWN_QUERY}: Unknown query id on this FE: {query_id}")
        target = pb.KillTarget(query_id=query_id, kind=pb.KILL_QUERY)
        owner = await self._route_kill(target, user, request.peer)
        return envelope({"query_id": query_id, "owner_fe": owner})

    async def _kill_connection(self, request: Request, user: UserRecord, params: dict[str, str]) -> Response:
        raw = params["conn_id"]
        if not raw.isdigit() or len(raw) > 10 or int(raw) > 0xFFFFFFFF:
            raise HttpError(400, "connection id must be an unsigned 32-bit integer")
        kind = (request.arg("kind") or "connection").lower()
        if kind not in ("connection", "query"):
            raise HttpError(400, "kind must be connection or query")
        target = pb.KillTarget(connection_id=int(raw), kind=pb.KILL_QUERY if kind == "query" else pb.KILL_CONNECTION)
        owner = await self._route_kill(target, user, request.peer)
        return envelope({"connection_id": int(raw), "kind": kind.upper(), "owner_fe": owner})

    async def _route_kill(self, target: pb.KillTarget, user: UserRecord, peer: str) -> str:
        try:
            return await self.ops.kill(target, user.name, peer)
        except SqlError as e:
            raise _kill_error(e) from None

    async def _trace_id(self, request: Request, user: UserRecord, params: dict[str, str]) -> Response:
        _bool_arg(request, "is_all_node", True)
        trace_id = params["trace_id"]
        if len(trace_id) > 256:
            raise HttpError(400, "trace id too long")
        query_id = await self.ops.trace_lookup(trace_id, user.name)
        if not query_id:
            raise HttpError(404, "not found query id")
        return envelope(query_id)

    async def _cluster(self, request: Request, user: UserRecord, params: dict[str, str]) -> Response:
        (rows, failures), (members, redis_ok) = await asyncio.gather(
            self.ops.processlist(user.name, False), self.ops.members()
        )
        failed = {f.fe for f in failures}
        data = {
            "fe": self.ops.address(),
            "user": user.name,
            "is_admin": user.is_admin,
            "redis_ok": redis_ok,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "sessions": [row_dict(r) for r in rows],
            "failed_fes": [{"fe": f.fe, "message": f.message} for f in failures],
            "members": [
                {
                    "address": m.address,
                    "mysql_address": m.mysql_address,
                    "server_id": m.server_id,
                    "version": m.version,
                    "started_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.started_at)),
                    "status": "not answering" if m.address in failed else "up",
                    "this_fe": m.address == self.ops.address(),
                }
                for m in members
            ],
        }
        return envelope(data)

    async def _audit(self, request: Request, user: UserRecord, params: dict[str, str]) -> Response:
        limit = _int_arg(request, "limit", 50, 1, 1000)
        if not user.is_admin:
            raise HttpError(403, "the kill audit needs ADMIN_PRIV")
        try:
            entries = await self.ops.audit(limit)
        except SqlError as e:
            raise HttpError(503, f"{UNKNOWN_ERROR}: {e.message}") from None
        keys = ("entry_id", "time", "requester", "received_on", "kind", "target", "target_user", "owner", "outcome")
        return envelope([{k: str(entry.get(k, "")) for k in keys} for entry in entries])
