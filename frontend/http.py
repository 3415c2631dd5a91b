"""A tiny HTTP endpoint for operators: ``/healthz`` and Prometheus ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from frontend.node import Node

log = logging.getLogger("fecluster.http")


def render_metrics(node: Node) -> str:
    by_protocol = Counter(s.protocol for s in node.sessions.values())
    running = sum(1 for s in node.sessions.values() if s.command == "Query")
    lines = [
        "# HELP fecluster_sessions Live client sessions on this FE.",
        "# TYPE fecluster_sessions gauge",
        *(f'fecluster_sessions{{protocol="{p}"}} {by_protocol.get(p, 0)}' for p in ("mysql", "grpc")),
        "# HELP fecluster_running_statements Statements running now.",
        "# TYPE fecluster_running_statements gauge",
        f"fecluster_running_statements {running}",
        "# HELP fecluster_redis_up 1 while the registry answers.",
        "# TYPE fecluster_redis_up gauge",
        f"fecluster_redis_up {int(node.membership.redis_ok)}",
        "# HELP fecluster_fenced 1 while this FE is fenced (lease renewal overdue: no sessions, no KILLs).",
        "# TYPE fecluster_fenced gauge",
        f"fecluster_fenced {int(node.membership.fenced)}",
        "# HELP fecluster_fenced_seconds_total Time spent fenced.",
        "# TYPE fecluster_fenced_seconds_total counter",
        f"fecluster_fenced_seconds_total {node.membership.fenced_seconds():.3f}",
        "# HELP fecluster_server_id This FE's leased server id.",
        "# TYPE fecluster_server_id gauge",
        f"fecluster_server_id {node.membership.server_id}",
        "# HELP fecluster_members Live FEs this FE knows of.",
        "# TYPE fecluster_members gauge",
        f"fecluster_members {len(node.membership.members)}",
        "# HELP fecluster_tasks asyncio tasks alive in this FE (a leak shows as growth).",
        "# TYPE fecluster_tasks gauge",
        f"fecluster_tasks {len(asyncio.all_tasks())}",
        "# HELP fecluster_open_fds File descriptors open in this FE process.",
        "# TYPE fecluster_open_fds gauge",
        f"fecluster_open_fds {_open_fds()}",
        "# HELP fecluster_kills_total KILL statements received here, by outcome.",
        "# TYPE fecluster_kills_total counter",
        *(f'fecluster_kills_total{{outcome="{k}"}} {v}' for k, v in sorted(node.router.outcomes.items())),
    ]
    return "\n".join(lines) + "\n"


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        return -1


class HttpListener:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        cfg = self.node.config
        if cfg.http_port:
            self.server = await asyncio.start_server(self._handle, cfg.bind_host, cfg.http_port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            request = await asyncio.wait_for(reader.readline(), 5)
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else ""
            if path == "/healthz":
                status, body = ("200 OK", "ok\n") if self.node.accepting else ("503 Service Unavailable", "stopping\n")
            elif path == "/metrics":
                status, body = "200 OK", render_metrics(self.node)
            else:
                status, body = "404 Not Found", "not found\n"
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
