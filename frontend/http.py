"""The FE's HTTP port: the operator's web surface.

* ``/healthz`` (503 while stopping) and Prometheus ``/metrics``, unauthenticated;
* Doris-compatible REST in Doris's envelope ``{"msg": "success", "code": 0, "data": ...}``:
  ``GET /rest/v1/session``, ``/rest/v1/session/all``,
  ``GET /rest/v2/manager/query/current_queries``, ``POST /rest/v2/manager/query/kill/{query_id}``,
  ``GET /rest/v2/manager/query/trace_id/{trace_id}``;
* our own: ``POST /api/sessions/{connection_id}/kill?kind=connection|query``, ``GET /api/cluster``
  (what the page shows) and ``GET /api/audit`` (admins);
* the sessions page at ``/`` (static files in ``frontend/web/``) and ``/openapi.json``.

Every API call and the page need HTTP basic auth against the cluster's users
(the same mysql_native_password hash check as the gRPC API). Visibility and
privileges are SQL's: the owner FE decides, through the same routing as
``KILL`` and ``SHOW PROCESSLIST``. POSTs must carry ``X-Requested-With`` (a
header no cross-site form can send, and that a cross-site ``fetch`` may only
send after a CORS preflight we never grant) and, when the browser says where
the request comes from (``Origin``, ``Sec-Fetch-Site``), come from this origin.

Why a small HTTP/1.1 server of our own on asyncio streams rather than aiohttp:
the surface is a dozen routes of GET/POST without request bodies; our own
parser keeps the FE's dependency set as it is and puts every limit that
protects the FE in one place (request line and header bytes, header count,
body size, per-request read deadline, idle keep-alive deadline, concurrent
connections), where they are easy to see and test.

The server talks to the FE only through :class:`WebOps`; :class:`FeWebOps`
builds one from the FE's parts (``frontend.node`` wires it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from coordinator.errors import NOT_OWNER, UNKNOWN_ERROR, UNKNOWN_QUERY, UNKNOWN_THREAD, SqlError
from coordinator.pb import fecluster_pb2 as pb
from coordinator.processlist import COLUMNS, format_row, row_dict
from coordinator.registry import FeRecord
from coordinator.routing import FeFailure
from coordinator.users import UserRecord

if TYPE_CHECKING:
    from coordinator.membership import Membership
    from coordinator.routing import Router
    from frontend.sessions import SessionTable

log = logging.getLogger("fecluster.http")


# ---------------------------------------------------------------- what the server needs from the node


class WebOps(Protocol):
    """Everything the HTTP server asks of the FE it runs in."""

    def address(self) -> str:
        """This FE's address (host:grpc_port, the FE column)."""
        ...

    def accepting(self) -> bool:
        """False once the FE drains (``/healthz`` answers 503)."""
        ...

    def metrics(self) -> str:
        """Prometheus text for ``/metrics``."""
        ...

    async def authenticate(self, user: str, password: str) -> UserRecord | None: ...

    async def processlist(self, requester: str, local_only: bool) -> tuple[list[pb.ProcessRow], list[FeFailure]]:
        """Rows ``requester`` may see (the owner FEs filter), plus the FEs that did not answer."""
        ...

    async def kill(self, target: pb.KillTarget, requester: str, requester_host: str = "") -> str:
        """Route a kill to the owner, which checks privileges; -> the owner's address. Raises SqlError."""
        ...

    async def members(self) -> tuple[list[FeRecord], bool]:
        """The live FEs (server-id leases), and whether the registry (Redis) answers."""
        ...

    async def audit(self, limit: int) -> list[dict[str, str]]:
        """The newest kill audit entries. Raises SqlError when the registry is away."""
        ...

    async def trace_lookup(self, trace_id: str, requester: str) -> str | None:
        """The query id of a statement tagged with ``trace_id`` that ``requester`` may see, else None."""
        ...


class HttpSettings(Protocol):
    """The settings the listener reads (``frontend.config.Config`` has them)."""

    bind_host: str
    http_port: int  # 0: off


def render_metrics(sessions: SessionTable, membership: Membership, router: Router) -> str:
    by_protocol = Counter(s.protocol for s in sessions.sessions.values())
    running = sum(1 for s in sessions.sessions.values() if s.running)
    lines = [
        "# HELP fecluster_sessions Live client sessions on this FE.",
        "# TYPE fecluster_sessions gauge",
        *(f'fecluster_sessions{{protocol="{p}"}} {by_protocol.get(p, 0)}' for p in ("mysql", "grpc")),
        "# HELP fecluster_running_statements Statements running now.",
        "# TYPE fecluster_running_statements gauge",
        f"fecluster_running_statements {running}",
        "# HELP fecluster_redis_up 1 while the registry answers.",
        "# TYPE fecluster_redis_up gauge",
        f"fecluster_redis_up {int(membership.redis_ok)}",
        "# HELP fecluster_fenced 1 while this FE is fenced (lease renewal overdue: no sessions, no KILLs).",
        "# TYPE fecluster_fenced gauge",
        f"fecluster_fenced {int(membership.fenced)}",
        "# HELP fecluster_fenced_seconds_total Time spent fenced.",
        "# TYPE fecluster_fenced_seconds_total counter",
        f"fecluster_fenced_seconds_total {membership.fenced_seconds():.3f}",
        "# HELP fecluster_server_id This FE's leased server id.",
        "# TYPE fecluster_server_id gauge",
        f"fecluster_server_id {membership.server_id}",
        "# HELP fecluster_members Live FEs this FE knows of.",
        "# TYPE fecluster_members gauge",
        f"fecluster_members {len(membership.members)}",
        "# HELP fecluster_tasks asyncio tasks alive in this FE (a leak shows as growth).",
        "# TYPE fecluster_tasks gauge",
        f"fecluster_tasks {len(asyncio.all_tasks())}",
        "# HELP fecluster_open_fds File descriptors open in this FE process.",
        "# TYPE fecluster_open_fds gauge",
        f"fecluster_open_fds {_open_fds()}",
        "# HELP fecluster_kills_total KILL statements received here, by outcome.",
        "# TYPE fecluster_kills_total counter",
        *(f'fecluster_kills_total{{outcome="{k}"}} {v}' for k, v in sorted(router.outcomes.items())),
    ]
    return "\n".join(lines) + "\n"


class FeWebOps:
    """:class:`WebOps` over the FE's parts, as ``frontend.node`` wires them."""

    def __init__(
        self,
        sessions: SessionTable,
        membership: Membership,
        router: Router,
        read_audit: Callable[[int], Awaitable[list[dict[str, str]]]],
    ) -> None:
        self.sessions = sessions
        self.membership = membership
        self.router = router
        self.read_audit = read_audit

    def address(self) -> str:
        return self.membership.record.address

    def accepting(self) -> bool:
        return self.sessions.accepting

    def metrics(self) -> str:
        return render_metrics(self.sessions, self.membership, self.router)

    async def authenticate(self, user: str, password: str) -> UserRecord | None:
        return await self.sessions.authenticate(user, password)

    async def processlist(self, requester: str, local_only: bool) -> tuple[list[pb.ProcessRow], list[FeFailure]]:
        return await self.router.processlist(requester, local_only=local_only)

    async def kill(self, target: pb.KillTarget, requester: str, requester_host: str = "") -> str:
        return (await self.router.kill(target, requester, requester_host)).owner

    async def members(self) -> tuple[list[FeRecord], bool]:
        membership = self.membership
        members = {m.server_id: m for m in membership.members.values()}
        members[membership.server_id] = membership.record
        return sorted(members.values(), key=lambda m: m.address), membership.redis_ok

    async def audit(self, limit: int) -> list[dict[str, str]]:
        return await self.read_audit(limit)

    async def trace_lookup(self, trace_id: str, requester: str) -> str | None:
        """The running statement of the session tagged ``trace_id``, among those the requester may see."""
        rows, _ = await self.router.processlist(requester, local_only=False)
        return next((r.query_id for r in rows if r.trace_id == trace_id and r.command == "Query"), None)


# ---------------------------------------------------------------- HTTP plumbing

MAX_HEAD = 16 * 1024  # request line + headers, bytes
MAX_HEADERS = 64
MAX_BODY = 64 * 1024
MAX_TARGET = 8192
READ_DEADLINE = 5.0  # seconds for one request's head and body (a slow client is cut off)
IDLE_DEADLINE = 15.0  # seconds a kept-alive connection may sit between requests
MAX_CONNECTIONS = 256
MAX_REQUESTS_PER_CONNECTION = 1000
WEB_DIR = Path(__file__).resolve().parent / "web"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'",
}
CSRF_HEADER = "x-requested-with"
# What any request can get for breaking a limit or for bad framing (and 503 for an FE-side failure).
LIMIT_CODES = (400, 405, 408, 413, 414, 431, 503)
QUERY_ID_RE = re.compile(r"^[0-9a-fA-F]{16}-[0-9a-fA-F]{16}$")
CURRENT_QUERY_COLUMNS = (
    "Frontend", "QueryId", "ConnectionId", "Catalog", "Database", "User", "ExecTime", "SqlHash", "Statement",
)  # fmt: skip


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    close: bool = False
    peer: str = ""  # the client's address, for kill reasons and logs

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def envelope(data: Any, status: int = 200, msg: str = "success") -> Response:
    """Doris's answer: code 0 and "success", or the HTTP status and its reason."""
    code = 0 if status == 200 else status
    body = {"msg": msg if status == 200 else REASONS.get(status, "Error"), "code": code, "data": data, "count": 0}
    return Response(status, json.dumps(body, separators=(",", ":")).encode(), headers={"Cache-Control": "no-store"})


def _error_response(e: HttpError) -> Response:
    response = envelope(e.message, e.status)
    response.headers.update(e.headers)
    return response


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


Handler = Callable[[Request, UserRecord, dict[str, str]], Awaitable[Response]]


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        return -1


class HttpListener:
    def __init__(self, config: HttpSettings, ops: WebOps) -> None:
        self.config = config
        self.ops = ops
        self.server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
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

    @property
    def port(self) -> int | None:
        if self.server is None or not self.server.sockets:
            return None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self.config.http_port:
            self.server = await asyncio.start_server(
                self._serve, self.config.bind_host, self.config.http_port, limit=MAX_HEAD
            )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=1)

    # ------------------------------------------------------------ connection loop

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        if task is not None:
            self._connections.add(task)
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                try:
                    request = await self._read_request(reader)
                except HttpError as e:
                    await self._write(writer, _error_response(e), "GET", close=True)
                    return
                if request is None:
                    return
                request.peer = (writer.get_extra_info("peername") or ("",))[0]
                response = await self._respond(request)
                await self._write(writer, response, request.method, close=request.close)
                if request.close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("HTTP connection failed")
        finally:
            if task is not None:
                self._connections.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> Request | None:
        # Wait for the first byte with the idle deadline; then the whole request has READ_DEADLINE.
        try:
            async with asyncio.timeout(IDLE_DEADLINE):
                first = await reader.read(1)
        except TimeoutError:
            return None
        if not first:
            return None
        try:
            async with asyncio.timeout(READ_DEADLINE):
                try:
                    head = first + await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    raise HttpError(431, "request head too large") from None
                except asyncio.IncompleteReadError:
                    return None
                if len(head) > MAX_HEAD:
                    raise HttpError(431, "request head too large")
                request = self._parse_head(head)
                length = request.headers.get("content-length")
                if length is not None:
                    if not length.isdigit() or len(length) > 12:
                        raise HttpError(400, "bad Content-Length")
                    if int(length) > MAX_BODY:
                        raise HttpError(413, f"request body over {MAX_BODY} bytes")
                    request.body = await reader.readexactly(int(length))
                return request
        except TimeoutError:
            raise HttpError(408, "request not received in time") from None

    def _parse_head(self, head: bytes) -> Request:
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
            raise HttpError(400, "bad request") from None
        lines = text[:-4].split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, "bad request line")
        method, target, version = parts
        if len(target) > MAX_TARGET:
            raise HttpError(414, "request target too long")
        if len(lines) - 1 > MAX_HEADERS:
            raise HttpError(431, "too many header fields")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or any(c in name for c in ' \t()<>@,;\\"/[]?={}'):
                raise HttpError(400, "bad header field")
            key = name.lower()
            value = value.strip()
            if key in headers:
                if key in ("content-length", "host", "authorization", "transfer-encoding"):
                    raise HttpError(400, f"repeated {name} header")
                headers[key] += ", " + value
            else:
                headers[key] = value
        if "transfer-encoding" in headers:
            raise HttpError(400, "Transfer-Encoding is not supported: send a Content-Length")
        if not target.startswith("/"):
            raise HttpError(400, "request target must be an absolute path")
        split = urlsplit(target)
        try:
            path = unquote(split.path, errors="strict")
            query = parse_qs(split.query, keep_blank_values=True, errors="strict", max_num_fields=32)
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "bad request target") from None
        connection = headers.get("connection", "").lower()
        close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        return Request(method.upper(), path, query, headers, close=close)

    async def _write(self, writer: asyncio.StreamWriter, response: Response, method: str, close: bool) -> None:
        headers = {
            "Content-Type": response.content_type,
            "Content-Length": str(len(response.body)),
            **SECURITY_HEADERS,
            **response.headers,
        }
        if close:
            headers["Connection"] = "close"
        head = f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else response.body))
        async with asyncio.timeout(READ_DEADLINE):
            await writer.drain()

    # ------------------------------------------------------------ dispatch

    async def _respond(self, request: Request) -> Response:
        try:
            return await self._dispatch(request)
        except HttpError as e:
            return _error_response(e)
        except Exception:
            log.exception("HTTP %s %s failed", request.method, request.path)
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
            return Response(200, self.ops.metrics().encode(), "text/plain; version=0.0.4")
        if path == "/openapi.json":
            self._allow(method, "GET")
            return Response(200, json.dumps(openapi()).encode())
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
            user = await self._authenticate(request)
            if method == "POST":
                self._check_same_origin(request)
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
        challenge = {"WWW-Authenticate": 'Basic realm="fecluster", charset="UTF-8"'}
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            raise HttpError(401, "authentication required (HTTP basic, a cluster user)", challenge)
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise HttpError(401, "malformed basic credentials", challenge) from None
        name, sep, password = decoded.partition(":")
        if not sep or not name:
            raise HttpError(401, "malformed basic credentials", challenge)
        user = await self.ops.authenticate(name, password)
        if user is None:
            raise HttpError(401, f"access denied for user {name!r}", challenge)
        return user

    @staticmethod
    def _check_same_origin(request: Request) -> None:
        """State-changing calls: a header a cross-site form cannot send, and the browser's own word on origin."""
        if not request.headers.get(CSRF_HEADER):
            raise HttpError(403, "POST needs an X-Requested-With header (cross-site request protection)")
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise HttpError(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            host = request.headers.get("host", "")
            if urlsplit(origin).netloc != host:
                raise HttpError(403, "cross-origin request refused (Origin does not match Host)")
        elif origin == "null":
            raise HttpError(403, "cross-origin request refused (Origin: null)")

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


# ---------------------------------------------------------------- OpenAPI


def openapi() -> dict[str, Any]:
    def env_schema(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["msg", "code", "data"],
            "properties": {
                "msg": {"type": "string"},
                "code": {"type": "integer"},
                "data": data,
                "count": {"type": "integer"},
            },
        }

    error = {"$ref": "#/components/schemas/Error"}
    failed = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["fe", "message"],
            "properties": {"fe": {"type": "string"}, "message": {"type": "string"}},
        },
    }
    table = env_schema(
        {
            "type": "object",
            "required": ["column_names", "rows", "failed_fes"],
            "properties": {
                "column_names": {"type": "array", "items": {"type": "string"}},
                "rows": {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "string", "nullable": True}},
                },
                "failed_fes": failed,
            },
        }
    )

    def responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
        out: dict[str, Any] = {"200": {"description": "success", "content": {"application/json": {"schema": ok}}}}
        out["401"] = {
            "description": "no or wrong credentials",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            "content": {"application/json": {"schema": error}},
        }
        for code in sorted({*LIMIT_CODES, *codes}):
            out[str(code)] = {"description": REASONS[code], "content": {"application/json": {"schema": error}}}
        return out

    def plain(*codes: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            str(code): {"description": REASONS[code], "content": {"text/plain": {"schema": {"type": "string"}}}}
            for code in codes
        }
        for code in LIMIT_CODES:
            out[str(code)] = {"description": REASONS[code], "content": {"application/json": {"schema": error}}}
        return out

    is_all_node = {
        "name": "is_all_node",
        "in": "query",
        "required": False,
        "schema": {"type": "boolean", "default": True},
        "description": "every FE (true) or this FE only (false)",
    }
    csrf = {
        "name": "X-Requested-With",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9]+$", "example": "fecluster"},
        "description": "any value: cross-site request protection",
    }
    security = [{"basic": []}]
    session_row = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "user": {"type": "string"},
            "host": {"type": "string"},
            "login_time": {"type": "string"},
            "catalog": {"type": "string"},
            "db": {"type": "string"},
            "command": {"type": "string"},
            "time": {"type": "integer"},
            "state": {"type": "string"},
            "query_id": {"type": "string"},
            "info": {"type": "string"},
            "fe": {"type": "string"},
            "cloud_cluster": {"type": "string", "nullable": True},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "fecluster FE HTTP API",
            "version": "0.1.0",
            "description": "Doris-compatible session and query REST, cluster-wide kills, the sessions page's data.",
        },
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "Error": env_schema({"type": "string"}),
            },
        },
        "paths": {
            "/healthz": {"get": {"summary": "200 while serving, 503 while draining", "responses": plain(200, 503)}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": plain(200)}},
            "/rest/v1/session": {
                "get": {
                    "summary": "sessions on this FE (Doris)",
                    "security": security,
                    "responses": responses(table),
                }
            },
            "/rest/v1/session/all": {
                "get": {
                    "summary": "sessions on every FE (Doris); FEs that did not answer are in failed_fes",
                    "security": security,
                    "responses": responses(table),
                }
            },
            "/rest/v2/manager/query/current_queries": {
                "get": {
                    "summary": "running statements (Doris)",
                    "security": security,
                    "parameters": [is_all_node],
                    "responses": responses(table),
                }
            },
            "/rest/v2/manager/query/kill/{query_id}": {
                "post": {
                    "summary": "KILL QUERY '<query_id>' (Doris); routed to the owner FE, which checks privileges",
                    "security": security,
                    "parameters": [
                        {"name": "query_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        is_all_node,
                        csrf,
                    ],
                    "responses": responses(
                        env_schema(
                            {
                                "type": "object",
                                "required": ["query_id", "owner_fe"],
                                "properties": {"query_id": {"type": "string"}, "owner_fe": {"type": "string"}},
                            }
                        ),
                        403,
                        404,
                        503,
                    ),
                }
            },
            "/rest/v2/manager/query/trace_id/{trace_id}": {
                "get": {
                    "summary": "the query id of a trace id (Doris)",
                    "security": security,
                    "parameters": [
                        {"name": "trace_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        is_all_node,
                    ],
                    "responses": responses(env_schema({"type": "string"}), 404),
                }
            },
            "/api/sessions/{connection_id}/kill": {
                "post": {
                    "summary": "KILL [CONNECTION] or KILL QUERY by connection id, routed to the owner FE",
                    "security": security,
                    "parameters": [
                        {
                            "name": "connection_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 0, "maximum": 4294967295},
                        },
                        {
                            "name": "kind",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["connection", "query"], "default": "connection"},
                        },
                        csrf,
                    ],
                    "responses": responses(
                        env_schema(
                            {
                                "type": "object",
                                "required": ["connection_id", "kind", "owner_fe"],
                                "properties": {
                                    "connection_id": {"type": "integer"},
                                    "kind": {"type": "string", "enum": ["CONNECTION", "QUERY"]},
                                    "owner_fe": {"type": "string"},
                                },
                            }
                        ),
                        403,
                        404,
                        503,
                    ),
                }
            },
            "/api/cluster": {
                "get": {
                    "summary": "what the sessions page shows: every session, the FEs and their health",
                    "security": security,
                    "responses": responses(
                        env_schema(
                            {
                                "type": "object",
                                "required": ["fe", "user", "is_admin", "sessions", "failed_fes", "members"],
                                "properties": {
                                    "fe": {"type": "string"},
                                    "user": {"type": "string"},
                                    "is_admin": {"type": "boolean"},
                                    "redis_ok": {"type": "boolean"},
                                    "time": {"type": "string"},
                                    "sessions": {"type": "array", "items": session_row},
                                    "failed_fes": failed,
                                    "members": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "address": {"type": "string"},
                                                "mysql_address": {"type": "string"},
                                                "server_id": {"type": "integer"},
                                                "version": {"type": "string"},
                                                "started_at": {"type": "string"},
                                                "status": {"type": "string", "enum": ["up", "not answering"]},
                                                "this_fe": {"type": "boolean"},
                                            },
                                        },
                                    },
                                },
                            }
                        )
                    ),
                }
            },
            "/api/audit": {
                "get": {
                    "summary": "the newest kill audit entries (ADMIN_PRIV)",
                    "security": security,
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                        }
                    ],
                    "responses": responses(
                        env_schema(
                            {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "string"}}}
                        ),
                        403,
                        503,
                    ),
                }
            },
        },
    }
