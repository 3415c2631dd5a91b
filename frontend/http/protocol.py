"""HTTP/1.1 framing: the limits, reading one request off a stream, writing one response.

Why our own small parser rather than aiohttp or h11: the surface is a dozen
routes of GET/POST without request bodies, and every limit that protects the
FE sits here in one place (request line and header bytes, header count, body
size, read deadlines), easy to see and to test."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEAD = 16 * 1024  # request line + headers, bytes
MAX_HEADERS = 64
MAX_BODY = 64 * 1024
MAX_TARGET = 8192
WRITE_DEADLINE = 5.0  # seconds for a response to leave (a client that never reads is cut off)
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
# What any request can get for breaking a limit or for bad framing (and 503 for an FE-side failure).
LIMIT_CODES = (400, 405, 408, 413, 414, 431, 503)


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
    peer: str = ""  # the client's address, for kill reasons, throttling and logs
    conn: Any = None  # the server's record of the connection (frontend.http.admission.Conn)

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


def error_response(e: HttpError) -> Response:
    response = envelope(e.message, e.status)
    response.headers.update(e.headers)
    return response


async def read_head(reader: asyncio.StreamReader, first: bytes) -> Request | None:
    """The rest of a request whose first byte has come; None when the client went away.
    The caller bounds it in time (the connection's head deadline)."""
    try:
        head = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request head too large") from None
    except asyncio.IncompleteReadError:
        return None
    if len(head) > MAX_HEAD:
        raise HttpError(431, "request head too large")
    return parse_head(head)


async def read_body(reader: asyncio.StreamReader, request: Request) -> None:
    length = request.headers.get("content-length")
    if length is None:
        return
    if not length.isdigit() or len(length) > 12:
        raise HttpError(400, "bad Content-Length")
    if int(length) > MAX_BODY:
        raise HttpError(413, f"request body over {MAX_BODY} bytes")
    request.body = await reader.readexactly(int(length))


def parse_head(head: bytes) -> Request:
    text = head.decode("latin-1")  # decodes any byte: bad bytes fail the checks below
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
            if key in ("content-length", "host", "authorization", "transfer-encoding", "origin", "sec-fetch-site"):
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


async def write_response(writer: asyncio.StreamWriter, response: Response, method: str, close: bool) -> None:
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
    async with asyncio.timeout(WRITE_DEADLINE):
        await writer.drain()
