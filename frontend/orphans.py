"""Orphaned backend threads, found and killed without the registry (issue 21
item 4): a dead FE's backend connections, named by the MySQL/MariaDB server's
own user-level locks, never by Redis.

A session's backend connection runs on after its FE dies: MariaDB does not
notice a client gone while a statement runs (a lock wait, a long UPDATE), so
the statement holds its row locks until it ends by itself. The registry path
(``Registry.purge_dead`` -> ``Node._dead_fe_connections``) kills such threads
from the dead FE's rows; when Redis lost every row (restarted empty) that path
knows nothing. This one needs no Redis: the evidence lives on the backend.

**The marks** (two user-level locks per session connection, per host;
``fecluster:<cluster>:`` prefixes every name, so clusters sharing a server never
see each other's):

- ``o:<T>`` -- the *owner* lock, taken by the FE's **lock connection** L on that
  host (one per FE process and host, the service account, opened lazily) for
  each of its session threads T. MariaDB frees a user-level lock when the
  connection holding it ends, so "``o:<T>`` is free" means L has ended.
- ``s:<T>`` -- the *session* mark, taken by T itself, on T, right after
  ``o:<T>`` was taken. ``IS_USED_LOCK('s:<T>') = T`` proves T is a session
  connection of an FE of this cluster (only T can hold a lock for T), and it
  lasts exactly as long as T.

Order: T's greeting -> L: ``GET_LOCK('o:T', 0)`` -> T: ``GET_LOCK('s:T', 0)``
-> the session's first statement. If the owner lock is not taken (L cannot be
opened, the server has no GET_LOCK, the name is held), T is not marked: it is
never found as an orphan (and never killed by this module). When a session
ends, T is closed first and ``o:T`` released after.

**The rule** (``OrphanReaper.sweep``, every ``ttl/3`` on every FE, on every
host, as the service account)::

    SELECT ID FROM information_schema.PROCESSLIST
     WHERE IS_USED_LOCK('…s:' || ID) = ID AND IS_USED_LOCK('…o:' || ID) IS NULL

A thread is killed (``KILL CONNECTION``, its transaction rolled back) when every
sweep has listed it for at least ``ttl`` (``confirm``), with no two sweeps more
than ``2 x interval`` apart (a gap, a failed sweep, resets the evidence), and it
is not one of the sweeping FE's own. Several survivors may kill one thread: a
KILL of a gone thread is ignored.

**Why a live FE's thread is never killed.** A live session thread T is marked
only after ``o:T`` was taken, and ``o:T`` is released only after T was closed;
so a marked T whose owner lock is free has lost its L. L ends when its FE
process dies (the kernel closes the socket: SIGKILL, crash of the process), or
while the FE lives: (1) someone KILLed L, (2) the server restarted (every T
ended with it: nothing to kill), (3) the network between FE and server broke
(T broke with it), (4) L was idle longer than its ``wait_timeout``. For (1) the
FE checks L every ``interval``, and on a failure opens a new L and re-takes the
owner lock of every session thread it still holds, within ``interval`` plus a
connect; a kill needs the lock free in every sweep for ``ttl`` (= 3
intervals), so a live FE is back in time unless it cannot open a new
connection for longer than ``ttl - interval`` (below). For (4), L sets its
``wait_timeout`` to ``idle_timeout`` (10 TTLs, at least ``LOCK_IDLE_MIN_S``) and
is pinged every interval: only an FE silent that long (frozen, SIGSTOP) loses
it, and such an FE is already one the lease path may reap (docs/fencing.md:
an FE frozen past the peer timeout after its lease ran out cannot be told from
a dead one). A lock named for T counts only when T itself holds it (``s:T``)
or it is free (``o:T``): a user's session can free neither (``RELEASE_LOCK``
releases only its own locks); a user holding ``o:T`` or ``s:T`` for another
session first only leaves that session unmarked, and a session that releases
its own mark only unmarks itself. Thread ids are not reused while the server
runs (they wrap at 2^32); after a server restart an L re-taking a stale
``o:T`` can only keep another FE from marking that T (not marked: never
killed).

**Cost.** Two round trips before a session's first statement (L, then T) and
one ``RELEASE_LOCK`` on L after it closes; measured in-process against a local
MariaDB: first statement of a session (connect + ``DO 1``) p50 0.54 ms without,
1.06-1.34 ms with the marks. One sweep query per host per interval per FE.

**What it does not cover.** An FE whose *host* dies (no FIN reaches the server)
keeps its L until the server ends it (``idle_timeout``, or the server's TCP
keepalive): its orphans are killed that much later, unless the registry still
has its rows (the lease path, a few TTLs). A live FE whose L is ended (an
operator's KILL) while the server refuses it a new connection (at
``max_connections``) for ``ttl - interval`` loses its marked sessions on that
host. A backend without user-level locks (Doris, StarRocks: ``GET_LOCK``
unknown) marks nothing and sweeps nothing. Over SQLite there are no backend
threads: there is no reaper.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field

from coordinator.errors import SqlError
from frontend.mysql_backend import BackendHost, Connection, HostService, MysqlBackend

log = logging.getLogger("fecluster.orphans")

LOCK_IDLE_MIN_S = 60.0
L_TIMEOUT_S = 5.0  # a lock-connection step (connect, re-take, GET_LOCK) that takes longer fails: L is replaced
_SAFE_TAG = re.compile(r"[A-Za-z0-9_.-]{1,24}")
_NO_FUNCTION = (1305, 1064, 1235)  # no such function, syntax, not supported: no user-level locks


def lock_prefix(cluster: str) -> str:
    """``fecluster:<cluster>:`` (a long or odd cluster name: its hash), so a lock
    name stays within the server's 64 characters and needs no quoting."""
    tag = cluster if _SAFE_TAG.fullmatch(cluster) else "h" + hashlib.sha1(cluster.encode()).hexdigest()[:16]
    return f"fecluster:{tag}:"


def owner_lock(prefix: str, thread_id: int) -> str:
    return f"{prefix}o:{int(thread_id)}"


def session_lock(prefix: str, thread_id: int) -> str:
    return f"{prefix}s:{int(thread_id)}"


def _first(row_value: object) -> int | None:
    if row_value is None:
        return None
    text = row_value.decode() if isinstance(row_value, (bytes, bytearray)) else str(row_value)
    return int(text) if text.lstrip("-").isdigit() else None


@dataclass
class _Host:
    """One backend host as this FE's reaper sees it."""

    host: BackendHost
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: Connection | None = None  # L: holds this FE's owner locks on the host
    owned: set[int] = field(default_factory=set)  # session threads whose owner lock L holds
    unsupported: bool = False  # no GET_LOCK on this server
    suspects: dict[int, float] = field(default_factory=dict)  # thread -> first sweep that listed it
    last_sweep: float = 0.0


class OrphanReaper:
    """Marks this FE's session connections (``MysqlBackend.marker``) and sweeps
    every host for marked connections whose FE has gone (module docstring)."""

    def __init__(self, backend: MysqlBackend, cluster: str, ttl: float) -> None:
        self.backend = backend
        self.prefix = lock_prefix(cluster)
        self.confirm = ttl
        self.interval = ttl / 3
        self.idle_timeout = int(max(LOCK_IDLE_MIN_S, 10 * ttl))
        self._hosts = {h.name: _Host(h) for h in backend.hosts}
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.killed = 0
        backend.marker = self

    # ------------------------------------------------------------ marking (the session's side)

    async def mark(self, host: BackendHost, conn: Connection) -> None:
        """Mark a new session connection: the owner lock on L first, then the
        session's own mark on it. Raises only for ``conn``'s own failure (the
        session's connection is then unusable anyway)."""
        h = self._hosts.get(host.name)
        if h is None or h.unsupported or not conn.thread_id:
            return
        claim = asyncio.get_running_loop().create_task(self._claim(h, conn.thread_id))
        # A cancelled caller (a KILL while connecting) must not cut L's answer in half.
        if not await asyncio.shield(claim):
            return
        result = await conn.query(f"SELECT GET_LOCK('{session_lock(self.prefix, conn.thread_id)}', 0)")
        if _first(result.rows[0][0] if result.rows else None) != 1:
            log.warning(
                "backend thread %d on %s: its session mark is taken; it is not marked", conn.thread_id, host.name
            )

    def unmark(self, host: BackendHost, thread_id: int) -> None:
        """The session's connection was closed: release its owner lock (after it)."""
        h = self._hosts.get(host.name)
        if h is None or not thread_id:
            return
        task = asyncio.get_running_loop().create_task(self._release(h, thread_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _claim(self, h: _Host, thread_id: int) -> bool:
        async with h.lock:
            for attempt in (1, 2):  # an L the server ended unseen fails once: then a new one
                try:
                    async with asyncio.timeout(L_TIMEOUT_S):
                        conn = await self._lock_connection(h)
                        if conn is None:
                            return False
                        if await self._take(conn, thread_id):
                            h.owned.add(thread_id)
                            return True
                    log.warning("owner lock of backend thread %d on %s is held elsewhere", thread_id, h.host.name)
                    return False
                except (SqlError, OSError, TimeoutError) as e:
                    self._failed(h, e)
                    if h.unsupported or attempt == 2:
                        return False
            return False

    async def _release(self, h: _Host, thread_id: int) -> None:
        async with h.lock:
            if thread_id not in h.owned:
                return
            h.owned.discard(thread_id)
            conn = h.conn
            if conn is None or conn.broken:
                return
            try:
                async with asyncio.timeout(L_TIMEOUT_S):
                    await conn.query(f"DO RELEASE_LOCK('{owner_lock(self.prefix, thread_id)}')")
            except (SqlError, OSError, TimeoutError) as e:
                self._failed(h, e)

    async def _take(self, conn: Connection, thread_id: int) -> bool:
        result = await conn.query(f"SELECT GET_LOCK('{owner_lock(self.prefix, thread_id)}', 0)")
        return _first(result.rows[0][0] if result.rows else None) == 1

    async def _lock_connection(self, h: _Host) -> Connection | None:
        """L on ``h`` (the caller holds ``h.lock``): opened if need be, and then
        every owned thread's owner lock re-taken (a KILLed L, a restarted server)."""
        if h.conn is not None and not h.conn.broken:
            return h.conn
        if h.conn is not None:
            h.conn = None
        try:
            conn = await self.backend.connect(host=h.host)
        except SqlError as e:
            log.warning("orphan marks on %s: no lock connection (%s)", h.host.name, e.message)
            return None
        try:
            await conn.query(f"SET SESSION wait_timeout = {self.idle_timeout}")
            retaken = 0
            for thread_id in sorted(h.owned):
                if await self._take(conn, thread_id):
                    retaken += 1
                else:
                    h.owned.discard(thread_id)
        except BaseException:
            conn.close()
            raise
        h.conn = conn
        if h.owned:
            log.warning("orphan marks on %s: new lock connection %d, %d owner locks re-taken",
                        h.host.name, conn.thread_id, retaken)  # fmt: skip
        return conn

    def _failed(self, h: _Host, e: BaseException) -> None:
        """L failed: it is closed (its owner locks go with it; the next use opens
        a new L and re-takes them), or, if the server has no user-level locks,
        the host is left unmarked for good."""
        if h.conn is not None:
            h.conn.close()
            h.conn = None
        if isinstance(e, SqlError) and e.code in _NO_FUNCTION:
            h.unsupported = True
            log.warning("backend %s has no user-level locks (%s): orphans are not marked there", h.host.name, e)
        else:
            log.warning("orphan marks on %s: lock connection lost (%r); re-taking", h.host.name, e)

    async def _keep_alive(self, h: _Host) -> None:
        """Ping L (its wait_timeout never fires while the FE lives); a lost L is
        replaced at once, with every owner lock re-taken."""
        async with h.lock:
            for _attempt in (1, 2):  # a lost L is replaced in this round, not the next
                if h.unsupported or not h.owned:
                    return
                try:
                    async with asyncio.timeout(L_TIMEOUT_S):
                        conn = await self._lock_connection(h)
                        if conn is not None:
                            await conn.query("DO 1")
                    return
                except (SqlError, OSError, TimeoutError) as e:
                    self._failed(h, e)

    # ------------------------------------------------------------ the sweep (the survivor's side)

    async def sweep(self, h: _Host) -> list[int]:
        """List ``h``'s orphans, and kill those listed by every sweep for ``confirm``. Returns the killed."""
        if h.unsupported:
            return []
        now = time.monotonic()
        if now - h.last_sweep > 2 * self.interval:
            h.suspects.clear()  # a gap in the evidence: start again
        h.last_sweep = now
        p = self.prefix
        sql = (
            "SELECT ID FROM information_schema.PROCESSLIST"
            f" WHERE IS_USED_LOCK(CONCAT('{p}s:', ID)) = ID AND IS_USED_LOCK(CONCAT('{p}o:', ID)) IS NULL"
        )
        try:
            async with asyncio.timeout(self.interval):
                result = await HostService(self.backend, h.host).service_query(sql)
        except SqlError as e:
            h.suspects.clear()
            if e.code in _NO_FUNCTION:
                h.unsupported = True
            return []
        except (OSError, TimeoutError):
            h.suspects.clear()
            return []
        listed = {t for row in result.rows if (t := _first(row[0]))} - h.owned
        h.suspects = {t: h.suspects.get(t, now) for t in listed}
        due = [t for t, first in h.suspects.items() if now - first >= self.confirm]
        for thread_id in due:
            log.warning(
                "killing backend thread %d on %s: marked by an FE whose lock connection has been gone for %.1fs",
                thread_id,
                h.host.name,
                now - h.suspects.pop(thread_id),
            )
            await self.backend.kill(thread_id, query=False, host=h.host)
            self.killed += 1
        return due

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            for h in self._hosts.values():
                try:
                    await self._keep_alive(h)
                    await self.sweep(h)
                except Exception:  # the next round tries again
                    log.exception("orphan sweep on %s failed", h.host.name)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """Shutdown, after the sessions closed: the lock connections go (with their owner locks)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._pending):
            task.cancel()
        for h in self._hosts.values():
            if h.conn is not None:
                h.conn.close()
                h.conn = None
