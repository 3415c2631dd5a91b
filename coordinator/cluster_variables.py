"""``SET GLOBAL``: variables in force on every FE of the cluster.

Values live in Redis (``Registry.cluster_variables``); every FE caches them
and reloads on each change (pub/sub, the same channel as the user table) and
on every membership tick, so a ``SET GLOBAL`` on one FE is in force on the
others within a moment (well under the renew interval even if a message is
lost). A session's own ``SET`` shadows the cluster's value; a session that
set nothing follows it, including for statements already connected.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.redis_client import REDIS_ERRORS
from coordinator.registry import Registry

log = logging.getLogger("fecluster.cluster_variables")


class ClusterVariables:
    def __init__(self, registry: Registry, timeout: float) -> None:
        self.registry = registry
        self.timeout = timeout
        self.values: dict[str, Any] = {}

    async def reload(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                values = await self.registry.cluster_variables()
        except REDIS_ERRORS as e:
            log.warning("could not reload cluster variables, keeping the cached ones: %s", e)
            return
        # In place: every session's Variables holds this very dict.
        self.values.clear()
        self.values.update(values)

    async def set(self, name: str, value: Any) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.registry.set_cluster_variable(name, value)
        except REDIS_ERRORS as e:
            raise SqlError(errors.UNKNOWN_ERROR, f"SET GLOBAL needs the registry (Redis): {e}") from e
        self.values[name] = value
