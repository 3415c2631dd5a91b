"""The session table: this FE's live sessions, whatever protocol carries them.

It owns everything about a session's life outside its statements:

- **ids**: a connection id is reserved for each handshake and given back if
  the handshake never becomes a session; ids come from this FE's server id,
  and a new id space starts when the server id changes.
- **registration**, one entry point for every protocol: ``open`` checks that
  the FE accepts sessions and still holds the id's server id, applies the
  initial database, then makes the session live here and queues its registry
  row (routing never needs the row: the id names the owner). ``close`` is the
  mirror image. Nothing else adds or removes sessions.
- **the owner's side of KILL** (``kill_local``: by connection, query id,
  trace id or user) and of the processlist (``list_local``): the owner checks
  privileges itself, for local and forwarded requests alike.
- **idle timeouts**: a sweep every second closes sessions idle past
  ``wait_timeout`` (``interactive_timeout`` for interactive clients) with 4031.
- **authentication** against the cluster's user table.
- **capacity**: ``--max-connections`` sessions, and ``--admin-connections``
  more for users with ADMIN_PRIV (MySQL's extra connection for CONNECTION
  ADMIN), counted at login, after the password: handshakes in progress are
  the listener's to bound, never sessions. And **fair workers**
  (``StatementLanes``): the statements the FE runs itself or on its embedded
  backend take a lane, at most ``--max-user-running-statements`` per user and
  ``--max-running-statements`` for all ordinary users together; admins and the
  FE's own work (processlist fan-in, metadata for peers) take none, so the
  worker threads past that share are theirs. A statement over its user's
  share waits its turn (its processlist State says so; KILL and time limits
  act on it while it waits), as in Doris's workload-group queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from coordinator import errors
from coordinator.accounts import Accounts
from coordinator.ids import ConnectionIds, IdsExhausted, QueryIds, server_id_of, server_id_of_query
from coordinator.membership import Membership
from coordinator.pb import fecluster_pb2 as pb
from coordinator.privileges import may_see_database
from coordinator.processlist import SCHEMA_COLUMNS, narrowing, schema_row
from coordinator.redis_client import REDIS_ERRORS
from coordinator.registry import ConnectionWriter, FeRecord
from coordinator.users import UserRecord, connection_limit, may_kill, native_password_hash
from frontend.backend import Backend, BackendLogin
from frontend.executor import Executor
from frontend.lanes import FairExecutor, StatementLanes
from frontend.session import Session
from frontend.sqlparse import ByteBoundedCache
from frontend.variables import Schema, Variables

log = logging.getLogger("fecluster.sessions")

FENCED_MESSAGE = "this FE lost its registry lease; reconnect"
_NO_SUCH_HASH = "*" + "0" * 40  # no password hashes to it


_FILTERS: ByteBoundedCache[str, exp.Select] = ByteBoundedCache(256 * 1024, 4096, len)


def _filter_query(where: str) -> exp.Select:
    """``SELECT ID FROM processlist WHERE <where>``, parsed once per condition (cached: not to be changed)."""

    def parse() -> exp.Select:
        try:
            query = sqlglot.parse_one(f"SELECT ID FROM processlist WHERE {where}", read="mysql")
        except ParseError as e:
            raise errors.SqlError(errors.PARSE_ERROR, f"bad processlist filter: {where[:60]}") from e
        if not isinstance(query, exp.Select) or query.args.get("where") is None:
            raise errors.SqlError(errors.PARSE_ERROR, f"bad processlist filter: {where[:60]}")
        return query

    return _FILTERS.get(where, parse)


class SessionTable:
    def __init__(
        self,
        membership: Membership,
        accounts: Accounts,
        writer: ConnectionWriter,
        executor: Executor,
        backend: Backend,
        variable_schema: Schema,
        cloud_cluster: str = "",
        cluster_variables: Mapping[str, Any] | None = None,
        redis_timeout: float = 1.0,
        max_connections: int = 1024,
        admin_connections: int = 10,
        max_handshakes: int = 512,
        lanes: StatementLanes | None = None,
    ) -> None:
        self.membership = membership
        self.accounts = accounts
        self.executor = executor
        self.backend = backend
        self.variable_schema = variable_schema
        self.cloud_cluster = cloud_cluster
        self.cluster_variables: Mapping[str, Any] = cluster_variables if cluster_variables is not None else {}
        self.redis_timeout = redis_timeout
        self.max_connections = max_connections
        self.admin_connections = admin_connections
        # Ids outstanding at most: sessions (the admins' reserve included) and handshakes in progress.
        self.max_ids = max_connections + admin_connections + max_handshakes
        self.lanes = lanes if lanes is not None else StatementLanes()
        self.memory: Any = None  # the FE's MemoryBudget (frontend.wire.server), for /metrics
        if not isinstance(executor, FairExecutor):
            executor = FairExecutor(executor, self.lanes, self._is_admin)
        self.executor = executor
        self._sweeper: asyncio.Task[None] | None = None
        self.accepting = True
        self.sessions: dict[int, Session] = {}
        self._writer = writer
        self._reserved: set[int] = set()
        self._answers: dict[int, asyncio.Future[None]] = {}  # sessions a KILL waits to see answered
        self._conn_ids = ConnectionIds(membership.server_id or 1)
        self._query_ids = QueryIds(membership.server_id or 1)

    # ------------------------------------------------------------ SessionHost

    @property
    def fe(self) -> FeRecord:
        return self.membership.record

    def next_query_id(self) -> str:
        return self._query_ids.next()

    def record_changed(self, session: Session) -> None:
        """Rewrite a live session's registry row (after USE), without delaying the statement."""
        if session.id in self.sessions:
            self._queue_row(session, new=False)

    def user_record(self, name: str) -> UserRecord | None:
        return self.accounts.cached(name)

    def may_use(self, user: str, database: str) -> bool:
        return may_see_database(self.accounts.cached(user), database, self.backend.names_fold_case)

    async def trace_changed(self, session: Session, old: str) -> None:
        """A trace id must be findable from any FE once SET answers: write it now (bounded)."""
        if session.id not in self.sessions or not self.membership.redis_ok:
            return  # the re-sync after Redis returns writes it
        if old:
            self._writer.drop_trace(old, session.id)
        self._queue_row(session, new=False)
        await self._writer.flush(self.redis_timeout)

    # ------------------------------------------------------------ ids

    def new_id_space(self) -> None:
        """After the server id is leased or changes: ids and query ids carry the new one."""
        sid = self.membership.server_id
        self._reserved.clear()
        self._conn_ids = ConnectionIds(sid)
        self._query_ids = QueryIds(sid)

    def reserve_id(self) -> int:
        """An id for a handshake in progress; ``IdsExhausted`` (1040) when
        sessions and handshakes together reach every bound there is (the
        listeners bound handshakes; ``open`` bounds sessions), or ids run out."""
        if len(self.sessions) + len(self._reserved) >= self.max_ids:
            raise IdsExhausted(f"{self.max_ids} connections and handshakes")
        conn_id = self._conn_ids.allocate(_InUse(self.sessions, self._reserved))
        self._reserved.add(conn_id)
        return conn_id

    def release_id(self, conn_id: int) -> None:
        """The handshake ended without a session: the id goes back to the pool."""
        if conn_id in self._reserved:
            self._reserved.discard(conn_id)
            self._conn_ids.give_back(conn_id)

    # ------------------------------------------------------------ authentication

    async def user(self, name: str) -> UserRecord | None:
        """For a login: the cached user table, then Redis for a user not seen yet."""
        return await self.accounts.get(name)

    async def authenticate(self, name: str, password: str) -> UserRecord | None:
        """A clear-text password check (gRPC and HTTP callers; MySQL clients send a scramble)."""
        user = await self.accounts.get(name)
        # The same work for an unknown user as for a wrong password.
        expected = user.auth_string if user is not None else _NO_SUCH_HASH
        if not hmac.compare_digest(expected, native_password_hash(password)) or user is None:
            return None
        return user

    # ------------------------------------------------------------ open / close

    def refusal(self) -> errors.SqlError | None:
        """Why no session may open now (draining, or fenced), else None."""
        if not self.accepting:
            return errors.SqlError(errors.SERVER_SHUTDOWN, "Server shutdown in progress")
        if self.membership.fenced:
            return errors.SqlError(errors.SERVER_SHUTDOWN, FENCED_MESSAGE)
        return None

    def new_variables(self) -> Variables:
        return Variables(self.variable_schema, self.cluster_variables)

    async def open(
        self,
        conn_id: int,
        user: UserRecord,
        peer: str,
        protocol: str,
        close_transport: Callable[[errors.SqlError | None], None],
        *,
        database: str | None = None,
        variables: Variables | None = None,
        interactive: bool = False,
        login: BackendLogin | None = None,
    ) -> Session:
        """Make an authenticated session live, or raise SqlError (the id is then given back)."""
        try:
            refusal = self.refusal()
            if refusal is not None:
                raise refusal
            if server_id_of(conn_id) != self.membership.server_id:
                # Its handshake began under a server id this FE has lost since.
                raise errors.SqlError(errors.UNKNOWN_ERROR, "this FE changed its server id during login: reconnect")
            session = Session(
                self,
                conn_id,
                user,
                peer,
                protocol,
                close_transport,
                variables or self.new_variables(),
                interactive,
                login,
            )
            self._check_capacity(user)
            if database:
                await session.use(database)
            await self._admit(session, user)
        except BaseException:
            self.release_id(conn_id)
            raise
        self._reserved.discard(conn_id)
        self.sessions[conn_id] = session
        self._queue_row(session)
        return session

    def _check_capacity(self, user: UserRecord) -> None:
        """1040 past ``--max-connections`` sessions; an admin may use ``--admin-connections`` more."""
        limit = self.max_connections + (self.admin_connections if user.is_admin else 0)
        if len(self.sessions) >= limit:
            raise errors.SqlError(errors.TOO_MANY_CONNECTIONS, "Too many connections")

    def _is_admin(self, name: str) -> bool:
        user = self.accounts.cached(name)
        return user is not None and user.is_admin

    async def _admit(self, session: Session, user: UserRecord) -> None:
        """Per-user connection limits, counted across the cluster in Redis
        (atomically: exact under concurrent logins on every FE). While Redis is
        away an FE admits a limited user only while its own sessions of that
        user are fewer than its share, ceil(limit / live FEs): nobody is locked
        out, and the cluster stays below 2 x limit + the number of FEs."""
        limit = connection_limit(user, int(self.cluster_variables.get("max_user_connections") or 0))
        if not limit:
            return
        if self.membership.redis_ok:
            try:
                async with asyncio.timeout(self.redis_timeout):
                    if await self.membership.registry.admit_connection(user.name, session.id, limit):
                        session.counted = True  # its slot is in Redis now: the close must free it
                        return
                raise errors.too_many_user_connections(user.name)
            except REDIS_ERRORS as e:
                log.warning("connection limit of %s checked locally, Redis is away: %r", user.name, e)
                self.membership.mark_dirty()
        share = -(-limit // max(1, len({*self.membership.members, self.membership.server_id})))
        if sum(1 for s in self.sessions.values() if s.user == user.name) >= share:
            raise errors.too_many_user_connections(user.name)

    def answered(self, session: Session) -> None:
        """The listener has written the answer of ``session``'s statement (or is
        about to, in this loop step): a KILL waiting for it may answer now."""
        waiter = self._answers.pop(session.id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _until_answered(self, hit: list[Session]) -> None:
        """Wait (at most ``ANSWER_WAIT_S``) until the statements a KILL QUERY
        interrupted have answered their clients: the KILL's own answer (the
        killer's OK, or the reply to a peer) then never goes out ahead of the
        victim's 1317, nor takes the event loop while the victim's backend
        thread lets go. Not when the KILL hit its own statement: it ends here."""
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            return
        loop = asyncio.get_running_loop()
        waiters = []
        for session in hit:
            if session.running and session.id in self.sessions:
                waiter = self._answers.get(session.id)
                if waiter is None or waiter.done():
                    waiter = self._answers[session.id] = loop.create_future()
                waiters.append(waiter)
        if waiters:
            await asyncio.wait(waiters, timeout=ANSWER_WAIT_S)

    async def close(self, session: Session) -> None:
        self.answered(session)
        try:
            await session.close()
        finally:
            if self.sessions.pop(session.id, None) is not None and self.membership.redis_ok:
                self._writer.remove(session, written=session.counted)

    def _queue_row(self, session: Session, new: bool = True) -> None:
        if self.membership.redis_ok:
            self._writer.add(session, new, urgent=session.counted)
        # else: the re-sync after Redis returns writes every live session

    # ------------------------------------------------------------ the owner's side of KILL

    def _targets(self, target: pb.KillTarget) -> list[Session]:
        which = target.WhichOneof("target")
        if which == "user":
            return [s for s in self.sessions.values() if s.user == target.user and s.id != target.spare_connection_id]
        if which == "query_id":
            # The statement a live session runs now, or its last (as in Doris: a KILL of a
            # finished one is a no-op: OK, nothing stopped).
            found = [s for s in self.sessions.values() if target.query_id in (s.query_id, s.previous_query_id)]
            if not found:
                raise errors.unknown_query(target.query_id)
            return found
        if which == "trace_id":  # none is no error: every FE is asked, the router sums up
            return [s for s in self.sessions.values() if s.trace_id == target.trace_id]
        session = self.sessions.get(target.connection_id)
        if session is None:
            raise errors.unknown_thread(target.connection_id)
        return [session]

    def _check_owner(self, target: pb.KillTarget) -> None:
        """Act only on ids of this FE's current server id, and never while fenced:
        the id may name another FE's session by now (docs/fencing.md)."""
        which = target.WhichOneof("target")
        mine = self.membership.server_id
        if which == "query_id":
            if self.membership.fenced or server_id_of_query(target.query_id) != mine:
                raise errors.unknown_query(target.query_id)
        elif which == "connection_id" and (self.membership.fenced or server_id_of(target.connection_id) != mine):
            raise errors.unknown_thread(target.connection_id)
        elif which == "trace_id" and self.membership.fenced:
            raise errors.unknown_query(target.trace_id)

    async def kill_local(self, request: pb.PeerKillRequest) -> pb.KillResult:
        """Carry out a KILL aimed at this FE: the owner's answer, the same whether
        the KILL arrived here or was forwarded. ``killed``: how many sessions (or,
        for KILL QUERY, running statements) it hit; ``target_user``: whose they
        are, also when refused; ``error``: 1094/1095/1097."""
        reply = pb.KillResult(owner_fe=self.fe.address)
        try:
            reply.killed = await self._kill(request, reply)
        except errors.SqlError as e:
            reply.error.CopyFrom(pb.SqlError(code=e.code, sqlstate=e.sqlstate, message=e.message))
        return reply

    async def _kill(self, request: pb.PeerKillRequest, reply: pb.KillResult) -> int:
        target = request.target
        if target.WhichOneof("target") == "user":
            reply.target_user = target.user
            if self.membership.fenced:
                return 0
        if target.WhichOneof("target") == "trace_id":
            return await self._kill_trace(request, reply)
        self._check_owner(target)
        victims = self._targets(target)
        if target.WhichOneof("target") != "user":
            reply.target_user = ",".join(sorted({v.user for v in victims}))
        # The owner decides. Killing your own user's sessions needs no lookup;
        # anyone else needs ADMIN_PRIV, read from the user table now (not from
        # the cache), so a REVOKE on any FE takes effect at once.
        if any(v.user != request.requester for v in victims) or (
            target.WhichOneof("target") == "user" and target.user != request.requester
        ):
            requester = await self.accounts.fresh(request.requester)
            if requester is None or not requester.is_admin:
                log.info(
                    "refused KILL of %s by %s (from %s): not owner",
                    _name(target),
                    request.requester,
                    request.requester_fe,
                )
                raise errors.not_owner(_name(target))
            victims = [v for v in self._targets(target) if v in victims]  # what ended while we looked the user up
            if not victims and target.WhichOneof("target") != "user":
                raise errors.unknown_query(target.query_id or target.trace_id)
        return await self._carry_out(request, victims)

    async def _kill_trace(self, request: pb.PeerKillRequest, reply: pb.KillResult) -> int:
        """A trace id is a name users choose, so two users may hold the same one:
        a user's KILL acts on that user's own sessions holding it (others' are
        not seen, never a 1095); an admin's on every session holding it. The
        router asks every FE and sums up; ``target_user`` names whose sessions
        held it here (empty: none, which alone is no error)."""
        target = request.target
        if self.membership.fenced:
            return 0
        victims = self._targets(target)
        if any(v.user != request.requester for v in victims):
            requester = await self.accounts.fresh(request.requester)  # now, not cached: a REVOKE counts at once
            if requester is None or not requester.is_admin:
                victims = [v for v in self._targets(target) if v.user == request.requester]
            else:
                victims = [v for v in self._targets(target) if v in victims]
        reply.target_user = ",".join(sorted({v.user for v in victims}))
        return await self._carry_out(request, victims)

    async def _carry_out(self, request: pb.PeerKillRequest, victims: list[Session]) -> int:
        target = request.target
        query = target.kind == pb.KILL_QUERY
        how = "QUERY" if query else "CONNECTION"
        who = f"{request.requester}@{request.requester_host or '?'}"
        reason = f"by KILL {how} from {who} via FE {request.requester_fe}"
        killed = 0
        interrupted = []
        for victim in victims:
            if query and target.query_id and (victim.query_id != target.query_id or not victim.running):
                continue  # its statement has ended: nothing to stop, never the next one
            if query:
                if victim.kill_query(reason, request.issued_at_us or None):
                    interrupted.append(victim)
            else:
                killed += victim.kill_connection(reason)
            _log_after_answers("KILL %s %d (user %s) %s", how, victim.id, victim.user, reason)
        if interrupted:
            await self._until_answered(interrupted)
        return killed + len(interrupted)

    async def list_local(self, requester: str, where: str = "") -> list[pb.ProcessRow]:
        """This FE's sessions the requester may see (those it may kill), filtered
        by ``where`` (an information_schema.processlist condition) if given."""
        user = await self.accounts.fresh(requester)
        if not where:
            return [s.process_row() for s in self.sessions.values() if may_kill(user, s.user)]
        query = _filter_query(where)
        narrow = narrowing(query.args["where"].this)
        rows = [
            s.process_row() for s in self.sessions.values() if narrow.admits(s.id, s.user) and may_kill(user, s.user)
        ]
        if narrow.complete or not rows:
            return rows
        table = [schema_row(r, 0) for r in rows]
        matching = {r[0] for r in (await self.backend.query_rows(query, "processlist", SCHEMA_COLUMNS, table)).rows}
        return [r for r in rows if r.id in matching]

    # ------------------------------------------------------------ whole-table events

    def kill_all(self, by: str, error: errors.SqlError | None = None) -> None:
        for session in list(self.sessions.values()):
            session.kill_connection(by, error)

    # ------------------------------------------------------------ idle timeouts

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_idle(), name="idle-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    def close_idle(self) -> int:
        """Close every session idle past its wait_timeout (interactive_timeout
        for interactive clients), telling the client why (4031)."""
        closed = 0
        for session in list(self.sessions.values()):
            name = "interactive_timeout" if session.interactive else "wait_timeout"
            limit = int(session.variables.get(name) or 0)
            if limit > 0 and session.idle_seconds() >= limit:
                reason = f"by {name} = {limit} s"
                if session.kill_connection(reason, errors.idle_timeout(f"{name} = {limit} s")):
                    log.info("closed idle connection %d (user %s) %s", session.id, session.user, reason)
                    closed += 1
        return closed

    async def _sweep_idle(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.close_idle()
            except Exception:  # never let one bad session stop the sweep
                log.exception("idle sweep failed")

    async def fenced(self) -> None:
        """The lease may be gone: end every session (their ids may soon name another FE's)."""
        self.kill_all(
            "by fencing: this FE lost its registry lease", errors.SqlError(errors.SERVER_SHUTDOWN, FENCED_MESSAGE)
        )

    async def server_id_lost(self, old: int, new: int) -> None:
        self.kill_all(by=f"because server id {old} was taken over by another FE")
        self.new_id_space()

    async def drain(self, grace: float) -> None:
        """Shutdown: no new sessions; running statements get ``grace`` seconds,
        then every session is closed (bounded)."""
        self.accepting = False
        deadline = time.monotonic() + grace
        while any(s.running for s in self.sessions.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.kill_all("by server shutdown", errors.SqlError(errors.SERVER_SHUTDOWN, "Server shutdown in progress"))
        deadline = time.monotonic() + 2
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


LOG_DELAY_S = 0.01
ANSWER_WAIT_S = 0.05
"""How long a KILL QUERY waits for the statements it interrupted to answer before it answers itself."""


def _log_after_answers(msg: str, *args: object) -> None:
    """Log a KILL carried out, stamped now but written ``LOG_DELAY_S`` later:
    the line's formatting and write are not paid between the cancel and the
    victim's answer (nor the killer's OK)."""
    if log.isEnabledFor(logging.INFO):
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, msg, args, None)
        asyncio.get_running_loop().call_later(LOG_DELAY_S, log.handle, record)


def _name(target: pb.KillTarget) -> str:
    which = target.WhichOneof("target")
    return str(getattr(target, which)) if which else "?"


class _InUse:
    """Ids taken: live sessions and handshakes in progress."""

    def __init__(self, sessions: dict[int, Session], reserved: set[int]) -> None:
        self.sessions = sessions
        self.reserved = reserved

    def __contains__(self, conn_id: object) -> bool:
        return conn_id in self.sessions or conn_id in self.reserved
