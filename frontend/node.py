"""An FE node: ``Node.startup()`` -> ``serve()`` -> ``shutdown()``.

It owns the local sessions (whatever protocol carries them) and implements
the ``LocalSessions`` side of routing: the owner's privilege check and
teardown happen here, for local and forwarded kills alike.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import tempfile
import time
from pathlib import Path

from mysql_mimic.variables import SYSTEM_VARIABLES, VariableSchema

from coordinator import errors
from coordinator.accounts import Accounts
from coordinator.connections import connect
from coordinator.ids import ConnectionIds, QueryIds, server_id_of, server_id_of_query
from coordinator.membership import REDIS_ERRORS, Membership
from coordinator.pb import fecluster_pb2 as pb
from coordinator.registry import ConnectionWriter, FeRecord, Registry
from coordinator.routing import PeerChannels, Router
from coordinator.users import UserRecord, may_kill, native_password_hash
from frontend import tls
from frontend.backend import SqliteBackend
from frontend.config import Config
from frontend.executor import VERSION, VERSION_COMMENT, Executor
from frontend.session import Session

log = logging.getLogger("fecluster.node")

__version__ = "0.1.0"


def variable_schema(config: Config) -> dict[str, VariableSchema]:
    schema = dict(SYSTEM_VARIABLES)
    schema.update(
        {
            "version": (str, VERSION, False),
            "version_comment": (str, VERSION_COMMENT, False),
            "sql_mode": (str, "", True),
            "show_all_fe_connection": (bool, True, True),
            "default_storage_engine": (str, "sqlite", True),
            "default_tmp_storage_engine": (str, "sqlite", True),
            "transaction_isolation": (str, "REPEATABLE-READ", True),
            "tx_isolation": (str, "REPEATABLE-READ", True),
            "cloud_cluster": (str, config.cloud_cluster, False),
        }
    )
    return schema


class Node:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.variable_schema = variable_schema(config)
        self.sessions: dict[int, Session] = {}
        self._reserved: set[int] = set()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._stopping = asyncio.Event()
        self.accepting = True
        self.executor = Executor(self)

    # ------------------------------------------------------------ lifecycle

    async def startup(self) -> None:
        cfg = self.config
        self.redis = connect(cfg.redis_url, timeout=cfg.redis_timeout, cluster=cfg.redis_cluster)
        self.registry = Registry(self.redis, cfg.cluster)
        self.users = Accounts(
            self.registry,
            cfg.root_password,
            cfg.redis_timeout,
            redis_ok=lambda: self.membership.redis_ok,
            on_redis_error=lambda: self.membership.mark_dirty(),
        )
        record = FeRecord(0, cfg.address, cfg.mysql_address, time.time(), __version__)
        self.membership = Membership(
            self.registry,
            record,
            lease_ttl=cfg.lease_ttl,
            live_connections=lambda: self.sessions,
            on_server_id_lost=self._server_id_lost,
            on_users_changed=self.users.reload,
            on_registry_lost=self.users.restore,
            on_fenced=self._fenced,
        )
        await self.membership.start(timeout=30)
        self.writer = ConnectionWriter(self.registry, self._registry_write_failed)
        await self.users.start()
        self._new_id_space()
        data = cfg.data_path
        if data is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fecluster-")
            data = Path(self._tmp.name)
        self.backend = SqliteBackend(data)
        self.router = Router(
            self.membership,
            self,
            PeerChannels(tls.channel_credentials(cfg), cfg.cluster_secret),
            peer_timeout=cfg.peer_timeout,
            audit=self.registry.audit_kill,
        )
        self.membership.witness = self._peers_see_redis
        self.membership.peer_timeout = cfg.peer_timeout
        # Imported here: the listeners depend on the node, not the other way round.
        from frontend.grpc_api import GrpcListener
        from frontend.http import HttpListener
        from frontend.mysql import MysqlListener

        self.grpc = GrpcListener(self)
        await self.grpc.start()
        self.mysql = MysqlListener(self)
        await self.mysql.start()
        self.http = HttpListener(self)
        await self.http.start()
        # Startup's objects live as long as the process: keep them out of every
        # future collection (a full collection of them alone took ~25 ms).
        gc.collect()
        gc.freeze()
        log.info(
            "FE %s up: server id %d, MySQL on %s, gRPC on %s, cluster %r",
            cfg.address,
            self.membership.server_id,
            cfg.mysql_address,
            cfg.address,
            cfg.cluster,
        )

    async def serve(self) -> None:
        await self._stopping.wait()

    def request_stop(self) -> None:
        self._stopping.set()

    async def shutdown(self) -> None:
        grace = self.config.shutdown_grace
        log.info("FE %s stopping: %d sessions, grace %.1fs", self.config.address, len(self.sessions), grace)
        self.accepting = False
        await self.mysql.stop_accepting()
        await self.grpc.stop_accepting()
        deadline = time.monotonic() + grace
        while any(s.command == "Query" for s in self.sessions.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.sessions.values()):
            session.kill_connection(by="shutdown")
        deadline = time.monotonic() + 2
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # Registry first (rows, then lease), listeners last: while the lease is
        # being released peers still get real answers (1094) from us, not 1105.
        await self.writer.close()  # before the purge, so no late row outlives it
        await self.membership.stop()
        await self.grpc.stop()
        await self.mysql.stop()
        await self.http.stop()
        await self.router.close()
        await self.redis.aclose()
        self.backend.shutdown()
        if self._tmp is not None:
            self._tmp.cleanup()
        log.info("FE %s stopped", self.config.address)

    # ------------------------------------------------------------ identity

    def _new_id_space(self) -> None:
        sid = self.membership.server_id
        self.conn_ids = ConnectionIds(sid)
        self.query_ids = QueryIds(sid)

    async def _server_id_lost(self, old: int, new: int) -> None:
        self._reserved.clear()
        for session in list(self.sessions.values()):
            session.kill_connection(by=f"server id {old} was taken over by another FE")
        self._new_id_space()

    # ------------------------------------------------------------ fencing (docs/fencing.md)

    async def _fenced(self) -> None:
        """The lease may be gone: end every session (their ids may soon name another FE's)."""
        for session in list(self.sessions.values()):
            session.kill_connection(by="fencing: this FE lost its registry lease")

    def _check_fence(self) -> None:
        if self.membership.fenced:
            raise errors.SqlError(errors.SERVER_SHUTDOWN, "this FE lost its registry lease; reconnect")

    def _check_owner(self, target: pb.KillTarget) -> None:
        """Act only on ids of this FE's current, unfenced server id; anything else is not ours."""
        if target.WhichOneof("target") == "query_id":
            if self.membership.fenced or server_id_of_query(target.query_id) != self.membership.server_id:
                raise errors.unknown_query(target.query_id)
        elif self.membership.fenced or server_id_of(target.connection_id) != self.membership.server_id:
            raise errors.unknown_thread(target.connection_id)

    async def _peers_see_redis(self) -> bool | None:
        """True if Redis answers some peer now, False if it answers none of the peers that
        answered (Redis is away for all), None if no peer answered."""
        me = self.membership.server_id
        peers = [m.address for sid, m in self.membership.members.items() if sid != me]
        answers = await asyncio.gather(
            *(self.router.channels.reaches_redis(a, self.config.peer_timeout) for a in peers)
        )
        if any(a is True for a in answers):
            return True
        return False if any(a is False for a in answers) else None

    async def authenticate(self, name: str, password: str) -> UserRecord | None:
        """Password check for gRPC callers (MySQL clients use the native scramble)."""
        user = await self.users.get(name)
        if user is None:
            return None
        if not hmac.compare_digest(user.auth_string, native_password_hash(password)):
            return None
        return user

    # ------------------------------------------------------------ sessions

    def reserve_id(self) -> int:
        conn_id = self.conn_ids.allocate(_InUse(self.sessions, self._reserved))
        self._reserved.add(conn_id)
        return conn_id

    def release_id(self, conn_id: int) -> None:
        self._reserved.discard(conn_id)

    def open_session(self, session: Session) -> None:
        """Make a new authenticated session live: local table now, the registry
        in the background (routing never needs the row: the id names the owner)."""
        self._reserved.discard(session.id)
        self._check_fence()
        if server_id_of(session.id) != self.membership.server_id:
            # Its handshake began under a server id this FE has lost since.
            raise errors.SqlError(errors.UNKNOWN_ERROR, "this FE changed its server id during login: reconnect")
        self.sessions[session.id] = session
        self._writer_add(session)

    async def close_session(self, session: Session) -> None:
        try:
            await session.close()
        finally:
            if self.sessions.pop(session.id, None) is not None and self.membership.redis_ok:
                self.writer.remove(session.id)

    def registry_update(self, session: Session) -> None:
        """Rewrite a session's record (after USE), without delaying the statement."""
        self._writer_add(session)

    def _writer_add(self, session: Session) -> None:
        if self.membership.redis_ok:
            self.writer.add(session.record())
        # else: the re-sync after Redis returns writes every live session

    def _registry_write_failed(self, e: BaseException) -> None:
        log.warning("registry write failed, will re-sync: %r", e)
        self.membership.mark_dirty()

    async def registry_read(self, coro):  # type: ignore[no-untyped-def]
        """A registry read for a statement (SHOW KILL AUDIT): bounded, and a clear error."""
        try:
            async with asyncio.timeout(self.config.redis_timeout):
                return await coro
        except REDIS_ERRORS as e:
            raise errors.SqlError(errors.UNKNOWN_ERROR, f"registry unavailable (Redis): {e!r}") from e

    # ------------------------------------------------------------ LocalSessions

    def _find(self, target: pb.KillTarget) -> Session:
        if target.WhichOneof("target") == "query_id":
            for session in self.sessions.values():
                if session.query_id == target.query_id and session.command == "Query":
                    return session
            raise errors.unknown_query(target.query_id)
        session = self.sessions.get(target.connection_id)
        if session is None:
            raise errors.unknown_thread(target.connection_id)
        return session

    async def kill_local(self, target: pb.KillTarget, requester: str, requester_fe: str) -> None:
        self._check_owner(target)
        session = self._find(target)
        # The owner decides. Killing your own user's session needs no lookup;
        # anyone else needs ADMIN_PRIV, read from the user table now (not from
        # the cache), so a REVOKE on any FE takes effect at once.
        if requester != session.user:
            allowed = may_kill(await self.users.fresh(requester), session.user)
            if not allowed:
                log.info("refused KILL of %d by %s (from %s): not owner", session.id, requester, requester_fe)
                raise errors.not_owner(session.id)
            if self._find(target) is not session:  # the query ended while we looked the user up
                raise errors.unknown_query(target.query_id)
        if target.kind == pb.KILL_QUERY:
            session.kill_query()
        else:
            session.kill_connection(by=f"{requester} from FE {requester_fe}")
        await asyncio.sleep(0)  # let the victim's 1317 go out before our own answer and log line
        how = "QUERY" if target.kind == pb.KILL_QUERY else "CONNECTION"
        log.info("KILL %s %d (user %s) by %s from %s", how, session.id, session.user, requester, requester_fe)

    async def list_local(self, requester: str) -> list[pb.ProcessRow]:
        user = await self.users.fresh(requester)
        return [s.process_row() for s in self.sessions.values() if may_kill(user, s.user)]  # you see what you may kill


class _InUse:
    """Ids taken: live sessions and handshakes in progress."""

    def __init__(self, sessions: dict[int, Session], reserved: set[int]) -> None:
        self.sessions = sessions
        self.reserved = reserved

    def __contains__(self, conn_id: object) -> bool:
        return conn_id in self.sessions or conn_id in self.reserved
