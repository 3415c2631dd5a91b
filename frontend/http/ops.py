"""What the HTTP server needs from the FE it runs in (:class:`WebOps`), and that seam over the
FE's parts (:class:`FeWebOps`, wired by ``frontend.node``), with the FE's Prometheus text."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from coordinator.pb import fecluster_pb2 as pb
from coordinator.registry import FeRecord
from coordinator.routing import FeFailure
from coordinator.users import UserRecord

if TYPE_CHECKING:
    from coordinator.membership import Membership
    from coordinator.routing import Router
    from frontend.session_table import SessionTable


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
        *_capacity_metrics(sessions),
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


def _capacity_metrics(sessions: SessionTable) -> list[str]:
    """The memory budget (--memory-budget) and the fair-worker lanes (issue 23)."""
    lines = []
    memory = getattr(sessions, "memory", None)
    if memory is not None:
        lines += [
            "# HELP fecluster_memory_budget_bytes What this FE may hold for its sessions (--memory-budget; 0: none).",
            "# TYPE fecluster_memory_budget_bytes gauge",
            f"fecluster_memory_budget_bytes {memory.budget}",
            "# HELP fecluster_memory_used_bytes Held now: prepared statements, FE-built results being sent.",
            "# TYPE fecluster_memory_used_bytes gauge",
            f"fecluster_memory_used_bytes {memory.used}",
            "# HELP fecluster_memory_refusals_total Statements refused with 1041 (the budget would be passed).",
            "# TYPE fecluster_memory_refusals_total counter",
            f"fecluster_memory_refusals_total {memory.refused}",
        ]
    lanes = getattr(sessions, "lanes", None)
    if lanes is not None:
        lines += [
            "# HELP fecluster_statements_waiting Statements waiting for a worker (a user past its share).",
            "# TYPE fecluster_statements_waiting gauge",
            f"fecluster_statements_waiting {lanes.waiting}",
        ]
    return lines


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
        # Trace ids are users' names (two users may hold one): the requester's own session first.
        found = [r for r in rows if r.trace_id == trace_id and r.command == "Query"]
        found.sort(key=lambda r: r.user != requester)
        return found[0].query_id if found else None


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        return -1
