"""The composition root of an FE: it builds the parts, wires them, and runs
them ``startup()`` -> ``serve()`` -> ``shutdown()``. Nothing but the CLI and
the tests imports this module; the parts know each other only through what
they are handed here.

    Registry (Redis) <- Accounts, Membership, ConnectionWriter
    Membership <- Router (routing, peers) <- Executor's Services
    SessionTable (sessions, ids, owner side of KILL) <- the listeners
    MySQL / gRPC / HTTP listeners: protocol adapters over the SessionTable
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import resource
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from coordinator import errors
from coordinator.accounts import Accounts
from coordinator.audit import KillAudit
from coordinator.cluster_variables import ClusterVariables
from coordinator.errors import SqlError
from coordinator.membership import Membership
from coordinator.peers import PeerChannels
from coordinator.redis_client import REDIS_ERRORS, connect
from coordinator.registry import ConnectionRecord, ConnectionWriter, FeRecord, Registry
from coordinator.routing import Router
from frontend import tls, variables
from frontend.backend_accounts import BackendAccounts
from frontend.backend_url import open_backend, redact_url
from frontend.config import Config
from frontend.executor import Executor
from frontend.grpc_api import GrpcListener
from frontend.http import FeWebOps, HttpListener
from frontend.http.server import throttle_for
from frontend.lanes import StatementLanes
from frontend.mysql_backend import MysqlBackend
from frontend.mysql_listener import MysqlListener
from frontend.orphans import OrphanReaper
from frontend.session_table import SessionTable
from frontend.statements import Services
from frontend.wire.server import MemoryBudget

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger("fecluster.node")

__version__ = "0.1.0"
T = TypeVar("T")
REGISTRY_COALESCE_S = 0.01
ACCOUNT_SYNC_S = 60.0  # how often the backend's accounts are compared with the cluster's user table
"""How long connects and disconnects gather before one pipeline writes them."""
BURST_CHECK_S = 0.5
BURST_SESSIONS = 200
"""A burst is over when the live sessions fell by at least BURST_SESSIONS and to
at most half their high-water mark since the last hand-back (checked every
BURST_CHECK_S): then the FE returns its free heap pages to the OS."""


class Node:
    def __init__(self, config: Config, redis: aioredis.Redis | None = None) -> None:
        self.config = config
        self._stopping = asyncio.Event()
        self._tmp = None if config.backend else tempfile.TemporaryDirectory(prefix="fecluster-")
        cfg = config
        self.registry = Registry(
            redis or connect(cfg.redis_url, timeout=cfg.redis_timeout, cluster=cfg.redis_cluster), cfg.cluster
        )
        # Late-bound lambdas close the loops between parts built one after another.
        self.accounts = Accounts(
            self.registry,
            cfg.root_password,
            cfg.redis_timeout,
            redis_ok=lambda: self.membership.redis_ok,
            on_redis_error=lambda: self.membership.mark_dirty(),
        )
        self.membership = Membership(
            self.registry,
            FeRecord(0, cfg.address, cfg.mysql_address, time.time(), __version__),
            lease_ttl=cfg.lease_ttl,
            live_connections=lambda: self.sessions.sessions,
            on_server_id_lost=lambda old, new: self.sessions.server_id_lost(old, new),
            on_registry_event=self._registry_event,
            on_registry_lost=self.accounts.restore,
            on_fenced=lambda: self.sessions.fenced(),
        )
        self.cluster_variables = ClusterVariables(self.registry, cfg.redis_timeout)
        self.audit = KillAudit(self.registry, lambda: self.membership.redis_ok, cfg.redis_timeout)
        # Rows wait up to REGISTRY_COALESCE_S to be written together, after the
        # handshakes that queued them (a trace id is flushed at once).
        self.writer = ConnectionWriter(self.registry, self._registry_write_failed, coalesce=REGISTRY_COALESCE_S)
        self.backend = open_backend(cfg.backend, Path(self._tmp.name) if self._tmp else Path())
        self._backend_kills: set[asyncio.Task[None]] = set()
        self.registry.on_purged = self._dead_fe_connections
        self.backend_accounts = BackendAccounts(self.backend) if isinstance(self.backend, MysqlBackend) else None
        # A dead FE's backend threads, found on the backend itself when the registry lost its rows.
        self.orphans = (
            OrphanReaper(self.backend, cfg.cluster, cfg.lease_ttl) if isinstance(self.backend, MysqlBackend) else None
        )
        self._account_sync: asyncio.Task[None] | None = None
        self._after_bursts: asyncio.Task[None] | None = None
        services = Services(
            kill=lambda target, requester, host: self.router.kill(target, requester, host),
            processlist=lambda requester, local, where: self.router.processlist(
                requester, local_only=local, where=where
            ),
            accounts=self.accounts,
            backend=self.backend,
            read_audit=lambda limit: self._registry_read(self.audit.entries(limit)),
            set_global=self.cluster_variables.set,
            backend_accounts=self.backend_accounts,
        )
        self.sessions = SessionTable(
            self.membership,
            self.accounts,
            self.writer,
            Executor(services),
            self.backend,
            variables.schema(cfg.cloud_cluster),
            cfg.cloud_cluster,
            self.cluster_variables.values,
            cfg.redis_timeout,
            cfg.max_connections,
            admin_connections=cfg.admin_connections,
            max_handshakes=cfg.max_handshakes,
            lanes=StatementLanes(cfg.max_user_running_statements, cfg.max_running_statements),
        )
        self.router = Router(
            self.membership,
            self.sessions,
            PeerChannels(tls.channel_credentials(cfg), cfg.cluster_secret),
            peer_timeout=cfg.peer_timeout,
            audit=self.audit.record,
        )
        # Fencing (docs/fencing.md): before fencing itself, the FE asks its peers whether Redis answers them.
        self.membership.witness = self.router.peers_reach_redis
        self.membership.peer_timeout = cfg.peer_timeout
        # One login throttle for every door: guesses over MySQL, gRPC and HTTP add up.
        self.throttle = throttle_for(cfg)
        self.memory = self.sessions.memory = MemoryBudget(cfg.memory_budget)
        self.mysql = MysqlListener(cfg, self.sessions, self.throttle if cfg.login_delay > 0 else None, self.memory)
        self.grpc = GrpcListener(cfg, self.sessions, self.router, self.throttle if cfg.login_delay > 0 else None)
        read_audit = services.read_audit
        self.http = HttpListener(
            cfg, FeWebOps(self.sessions, self.membership, self.router, read_audit), throttle=self.throttle
        )
        self.started = False

    # ------------------------------------------------------------ lifecycle

    async def startup(self) -> None:
        cfg = self.config
        raise_fd_limit()
        await self.membership.start(timeout=30)
        self.sessions.new_id_space()
        self.writer.start()
        self.audit.start()
        await self.accounts.start()
        await self.cluster_variables.reload()
        await self.backend.start()
        if self.orphans is not None:
            self.orphans.start()
        if self.backend_accounts is not None:
            await self._sync_backend_accounts()
            self._account_sync = asyncio.get_running_loop().create_task(self._sync_backend_accounts_forever())
        self.sessions.start()
        await self.grpc.start()
        await self.mysql.start()
        await self.http.start()
        self.started = True
        # Startup's objects live as long as the process: keep them out of every
        # future collection (a full collection of them alone took ~25 ms).
        gc.collect()
        gc.freeze()
        self._after_bursts = asyncio.get_running_loop().create_task(self._give_back_after_bursts())
        log.info(
            "FE %s up: server id %d, MySQL on %s, gRPC on %s, cluster %r, backend %s",
            cfg.address,
            self.membership.server_id,
            cfg.mysql_address,
            cfg.address,
            cfg.cluster,
            redact_url(cfg.backend) or "sqlite (temporary directory)",
        )

    async def serve(self) -> None:
        await self._stopping.wait()

    def request_stop(self) -> None:
        self._stopping.set()

    async def shutdown(self) -> None:
        """Stop in an order that never strands a peer: sessions drained first,
        then the registry (rows, then lease) while the listeners still answer
        (peers get real 1094s from us, not 1105), the listeners last."""
        grace = self.config.shutdown_grace
        log.info("FE %s stopping: %d sessions, grace %.1fs", self.config.address, len(self.sessions.sessions), grace)
        self.sessions.accepting = False
        await self.mysql.stop_accepting()
        await self.grpc.stop_accepting()
        await self.sessions.drain(grace)
        await self.sessions.stop()
        if self._account_sync is not None:
            self._account_sync.cancel()
        if self._after_bursts is not None:
            self._after_bursts.cancel()
        await self.writer.close()  # before the purge, so no late row outlives it
        await self.audit.stop()
        await self.membership.stop()
        await self.grpc.stop()
        await self.mysql.stop()
        await self.http.stop()
        await self.router.close()
        await self.registry.close()
        if self.orphans is not None:
            await self.orphans.stop()
        self.backend.shutdown()
        if self._tmp is not None:
            self._tmp.cleanup()
        log.info("FE %s stopped", self.config.address)

    async def abort_startup(self) -> None:
        """A half-started node (a port taken, Redis never answered): release
        what it holds, within a bound."""
        try:
            async with asyncio.timeout(5):
                await self.membership.stop()
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            log.warning("releasing the lease after a failed start: %r", e)
        if self._tmp is not None:
            self._tmp.cleanup()

    # ------------------------------------------------------------ memory after a burst

    async def _give_back_after_bursts(self) -> None:
        """Once a burst of sessions has gone, hand glibc's free heap pages back
        to the OS (``malloc_trim``, in a thread: it takes the allocator's lock,
        not the loop). Without it a burst of 5,000 idle connections kept
        ~15 MiB more resident after they closed."""
        peak = len(self.sessions.sessions)
        while True:
            await asyncio.sleep(BURST_CHECK_S)
            live = len(self.sessions.sessions)
            peak = max(peak, live)
            if peak - live < BURST_SESSIONS or live > peak // 2:
                continue
            if _MALLOC_TRIM is not None:
                started = time.perf_counter()
                await _in_own_thread(_MALLOC_TRIM)
                log.info(
                    "sessions %d -> %d: heap trimmed in %.0f ms", peak, live, (time.perf_counter() - started) * 1000
                )
            peak = live

    # ------------------------------------------------------------ backend accounts

    async def _sync_backend_accounts(self) -> None:
        """Make the backend's accounts match the cluster's user table (drift
        from outside the FEs, a user made before the backend relayed)."""
        assert self.backend_accounts is not None
        try:
            users = await self.registry.users()
            await self.backend_accounts.reconcile(users.values(), fresh=self.accounts.fresh)
        except (SqlError, OSError, TimeoutError, *REDIS_ERRORS) as e:
            log.warning("backend accounts: sync failed (%s); next try in %.0fs", e, ACCOUNT_SYNC_S)

    async def _sync_backend_accounts_forever(self) -> None:
        while True:
            await asyncio.sleep(ACCOUNT_SYNC_S)
            await self._sync_backend_accounts()

    # ------------------------------------------------------------ registry

    async def _registry_event(self, event: str) -> None:
        """What another FE changed (pub/sub), or "" for "anything may have changed"."""
        if event in ("", "users"):
            await self.accounts.reload()
        if event in ("", "globals"):
            await self.cluster_variables.reload()

    def _dead_fe_connections(self, records: list[ConnectionRecord]) -> None:
        """A dead FE's rows were purged: kill its backend connections, whose
        statements would otherwise run on with nobody to answer."""
        threads = [(r.backend_host, r.backend_thread) for r in records if r.backend_thread]
        if not threads:
            return
        task = asyncio.get_running_loop().create_task(self.backend.kill_threads(threads))
        self._backend_kills.add(task)
        task.add_done_callback(self._backend_kills.discard)

    def _registry_write_failed(self, e: BaseException) -> None:
        log.warning("registry write failed, will re-sync: %r", e)
        self.membership.mark_dirty()

    async def _registry_read(self, read: Awaitable[T]) -> T:
        """A registry read for a statement (SHOW KILL AUDIT): bounded, and a clear error."""
        try:
            async with asyncio.timeout(self.config.redis_timeout):
                return await read
        except REDIS_ERRORS as e:
            raise errors.SqlError(errors.UNKNOWN_ERROR, f"registry unavailable (Redis): {e!r}") from e


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim(size_t pad)``, or None on another C library."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
        return trim
    return None


_MALLOC_TRIM = _malloc_trim()


async def _in_own_thread(trim: Callable[[int], int]) -> None:
    """``trim(0)`` in a thread that ends with it (a pool's idle worker would stay for good)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def finished() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        try:
            trim(0)
        finally:
            loop.call_soon_threadsafe(finished)

    threading.Thread(target=run, name="malloc-trim", daemon=True).start()
    await asyncio.shield(done)


def raise_fd_limit() -> None:
    """Lift the soft limit on open files to the hard one: every client, idle or
    not, holds a descriptor, and the usual soft default (1,024) is below
    --max-connections plus --max-handshakes."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        log.warning("could not raise the open-files limit: %r", e)
