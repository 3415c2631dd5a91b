"""The MySQL listener: the project's own wire codec (``frontend.wire``) over
the session table. Everything protocol-shaped lives in ``frontend.wire``;
this module only binds it to the FE's configuration."""

from __future__ import annotations

from frontend import tls
from frontend.config import Config
from frontend.session_table import SessionTable
from frontend.throttle import LoginThrottle
from frontend.wire.server import MemoryBudget, MysqlServer


class MysqlListener:
    def __init__(
        self,
        config: Config,
        sessions: SessionTable,
        throttle: LoginThrottle | None = None,
        memory: MemoryBudget | None = None,
    ) -> None:
        self.config = config
        self.server = MysqlServer(
            sessions,
            ssl_context=tls.mysql_ssl_context(config),
            connect_timeout=config.connect_timeout,
            require_secure_transport=config.require_secure_transport,
            throttle=throttle,
            max_handshakes=config.max_handshakes,
            max_handshakes_per_address=config.max_handshakes_per_address,
            memory=memory,
        )

    async def start(self) -> None:
        await self.server.start(self.config.bind_host, self.config.mysql_port)

    async def stop_accepting(self) -> None:
        self.server.close()

    async def stop(self) -> None:
        self.server.abort_all()
