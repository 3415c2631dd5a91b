"""The kill audit: every KILL, kept where nobody can wipe it.

- **Retention** by age (``RETENTION_S``) and by count **per requester**
  (``PER_REQUESTER``): each requester has a stream of their own, so one user's
  flood of KILLs evicts only that user's oldest entries, never root's.
- **Repeated denials are aggregated**: the same requester refused (1095) on the
  same target (and target user) again within ``DENIAL_WINDOW_S`` of the first
  is one more entry, with a ``count``, at the window's end.
- **Redis away**: entries wait in a bounded backlog (``BACKLOG``, oldest dropped
  first, with a count of what was dropped) and are written once Redis answers.

Reading (``entries``) merges the requesters' streams, newest first.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from coordinator.redis_client import REDIS_ERRORS
from coordinator.registry import Registry

log = logging.getLogger("fecluster.audit")

RETENTION_S = 30 * 24 * 3600
PER_REQUESTER = 10_000
DENIAL_WINDOW_S = 10.0
BACKLOG = 10_000
BATCH_DELAY_S = 0.01


class KillAudit:
    def __init__(self, registry: Registry, redis_ok: Callable[[], bool], timeout: float = 1.0) -> None:
        self.registry = registry
        self._redis_ok = redis_ok
        self.timeout = timeout
        self._backlog: deque[dict[str, str]] = deque(maxlen=BACKLOG)
        self.dropped = 0  # entries the backlog had to let go while Redis was away
        self._denials: dict[tuple[str, str, str, str], dict[str, str]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def record(self, entry: dict[str, Any]) -> None:
        """Queue one KILL's entry (never blocks the KILL)."""
        entry = {k: str(v) for k, v in entry.items()}
        entry.setdefault("count", "1")
        if entry.get("outcome", "").startswith("1095"):
            # The first denial is written at once; the same denial again within
            # the window is one more entry at its end, with how many there were.
            key = (entry["requester"], entry["target"], entry.get("target_user", ""), entry["outcome"][:4])
            window = self._denials.get(key)
            if window is None:
                self._denials[key] = {"count": "0"}
                asyncio.get_running_loop().call_later(DENIAL_WINDOW_S, self._release_denial, key)
            else:
                self._denials[key] = entry | {"count": str(int(window["count"]) + 1)}
                return
        self._queue(entry)

    def _release_denial(self, key: tuple[str, str, str, str]) -> None:
        window = self._denials.pop(key, None)
        if window is not None and int(window["count"]):
            self._queue(window)

    def _queue(self, entry: dict[str, str]) -> None:
        if len(self._backlog) == self._backlog.maxlen:
            self.dropped += 1
        self._backlog.append(entry)
        self._wake.set()

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever(), name="kill-audit")

    async def stop(self) -> None:
        for key in list(self._denials):
            self._release_denial(key)
        await self.flush()
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.wait([self._flusher], timeout=1)

    async def flush(self) -> None:
        """Write what is queued, oldest first; keep it if Redis does not answer."""
        while self._backlog and self._redis_ok():
            batch = list(self._backlog)
            try:
                async with asyncio.timeout(self.timeout):
                    await self.registry.audit_kills(batch, PER_REQUESTER, RETENTION_S)
            except REDIS_ERRORS as e:
                log.warning("kill audit kept in memory (%d entries), Redis is away: %r", len(self._backlog), e)
                return
            for _ in batch:
                self._backlog.popleft()

    async def _flush_forever(self) -> None:
        while True:
            try:
                async with asyncio.timeout(1.0):  # also retry a backlog once Redis is back
                    await self._wake.wait()
                # Let the KILL's own work go first (the victim's answer, the
                # killer's OK), and gather a burst of kills into one write.
                await asyncio.sleep(BATCH_DELAY_S)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def entries(self, count: int) -> list[dict[str, str]]:
        return await self.registry.audit_entries(count)
