"""The user table as each FE sees it: a cache of Redis, refreshed when any FE
changes a user (pub/sub) and read through on a miss, so authentication needs
no Redis round trip and keeps working while Redis is away.

A change answers only once it is in force everywhere: every write bumps the
table's version in the same step, each FE acknowledges the version it has
loaded, and the writer waits until every live FE has (or is fenced or dead)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.privileges import Scope, granted, revoked
from coordinator.redis_client import REDIS_ERRORS
from coordinator.registry import FeRecord, Registry
from coordinator.users import ROOT, UserRecord, native_password_hash, root_user

log = logging.getLogger("fecluster.accounts")

ACK_POLL_S = (0.001, 0.002, 0.005, 0.01, 0.02)
"""How often the writer looks for the other FEs' acknowledgements (then every 20 ms)."""
ACK_WAIT_CAP_S = 30.0
"""Never wait longer than this for an FE, whatever its lease says."""


def _unavailable(e: BaseException) -> SqlError:
    return SqlError(errors.UNKNOWN_ERROR, f"user table unavailable (Redis): {e}")


class Accounts:
    def __init__(
        self,
        registry: Registry,
        root_password: str,
        timeout: float,
        redis_ok: Callable[[], bool] = lambda: True,
        on_redis_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.registry = registry
        self.timeout = timeout
        self._redis_ok = redis_ok
        self._on_redis_error = on_redis_error
        self._root = root_user(root_password)
        self._users: dict[str, UserRecord] = {ROOT: self._root}
        # Reads of Redis finish out of order; a read that began before the
        # latest applied reload must not put an older record back (a revoked
        # privilege would come back until the next change).
        self._reloads_started = 0
        self._reloads_applied = 0

    async def start(self) -> None:
        await self.registry.put_user(self._root, only_new=True)
        await self.reload()

    async def reload(self) -> None:
        self._reloads_started += 1
        ticket = self._reloads_started
        try:
            async with asyncio.timeout(self.timeout):
                users, version = await self.registry.users_versioned()
            if not users:
                # Every cluster's table holds root from the first start on: an
                # empty one means Redis lost its data. Write ours back instead
                # of forgetting every account.
                await self.restore()
                return
        except REDIS_ERRORS as e:
            log.warning("could not reload users, keeping the cached table: %s", e)
            return
        users.setdefault(ROOT, self._root)
        if ticket > self._reloads_applied:
            self._reloads_applied = ticket
            self._users = users
        # Applied (or superseded by a newer read, applied already): tell the writers.
        try:
            async with asyncio.timeout(self.timeout):
                await self.registry.ack_users(version)
        except REDIS_ERRORS as e:
            log.warning("could not acknowledge user table version %d: %s", version, e)

    async def restore(self) -> None:
        """Redis came back empty: write back every user this FE knows, so a
        Redis restart loses no accounts (HSETNX: a newer write elsewhere wins)."""
        for user in list(self._users.values()):
            await self.registry.put_user(user, only_new=True)

    async def get(self, name: str) -> UserRecord | None:
        """For authentication: the cache, then Redis for a user not seen yet."""
        user = self._users.get(name)
        if user is None:
            user = await self.fresh(name)
        return user

    def cached(self, name: str) -> UserRecord | None:
        """For the data-privilege check on every statement: no Redis read. A change
        answers OK only once every live FE has loaded it (``_in_force``), so a GRANT
        or REVOKE counts here for the very next statement (tests/test_grant_propagation.py)."""
        return self._users.get(name)

    async def fresh(self, name: str) -> UserRecord | None:
        """For privilege checks on the owner: Redis first, the cache if it is away."""
        if not self._redis_ok():
            return self._users.get(name)
        started = self._reloads_started
        try:
            async with asyncio.timeout(self.timeout):
                user = await self.registry.user(name)
        except REDIS_ERRORS:
            self._on_redis_error()  # the next check goes straight to the cache
            return self._users.get(name)
        if user is None:
            return self._root if name == ROOT else None
        if self._reloads_started == started:  # no change announced meanwhile: this read is the newest
            self._users[name] = user
        return user

    # ------------------------------------------------------------ administration

    async def _write(self, user: UserRecord, *, only_new: bool = False) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                version = await self.registry.put_user(user, only_new=only_new)
        except REDIS_ERRORS as e:
            raise _unavailable(e) from e
        if version:
            self._users[user.name] = user
            await self._in_force(version)
        return bool(version)

    async def _in_force(self, version: int) -> None:
        """Return once the user table of ``version`` is loaded on every live FE, so the
        change counts for the very next statement anywhere. This FE reloads itself; the
        others are told by pub/sub (and, a message lost, by their next renew tick) and
        acknowledge. An FE that has not, by the time its lease runs out, is fenced or dead
        (docs/fencing.md): the wait ends then, or when Redis fails, and is logged."""
        started = time.monotonic()
        await self.reload()
        polls = iter(ACK_POLL_S)
        deadline: float | None = None
        behind: dict[int, tuple[FeRecord, int]] = {}
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    behind = await self.registry.users_not_loaded(version)
            except REDIS_ERRORS as e:
                log.warning("user table version %d: could not read the acknowledgements: %s", version, e)
                return
            if not behind:
                return
            now = time.monotonic()
            if deadline is None:  # the leases as they were when the change was made
                deadline = now + min(max(ms for _, ms in behind.values()) / 1000, ACK_WAIT_CAP_S)
            if now >= deadline:
                break
            await asyncio.sleep(min(next(polls, ACK_POLL_S[-1]), max(0.0, deadline - now)))
        log.warning(
            "user table version %d: not acknowledged after %.2fs by %s (their leases ran out meanwhile: "
            "they are fenced or dead)",
            version,
            time.monotonic() - started,
            ", ".join(f"server id {sid} ({record.address})" for sid, (record, _) in sorted(behind.items())),
        )

    async def create(
        self,
        name: str,
        password: str,
        if_not_exists: bool,
        auth_string: str | None = None,
        max_user_connections: int = 0,
    ) -> None:
        stored = native_password_hash(password) if auth_string is None else auth_string
        record = UserRecord(name, stored, max_user_connections=max_user_connections)
        created = await self._write(record, only_new=True)
        if not created and not if_not_exists:
            raise SqlError(errors.CANNOT_USER, f"Operation CREATE USER failed for '{name}'@'%'")

    async def drop(self, name: str, if_exists: bool) -> None:
        if name == ROOT:
            raise SqlError(errors.CANNOT_USER, "Operation DROP USER failed for 'root'@'%': root cannot be dropped")
        try:
            async with asyncio.timeout(self.timeout):
                version = await self.registry.delete_user(name)
        except REDIS_ERRORS as e:
            raise _unavailable(e) from e
        self._users.pop(name, None)
        if not version and not if_exists:
            raise SqlError(errors.CANNOT_USER, f"Operation DROP USER failed for '{name}'@'%'")
        if version:
            await self._in_force(version)

    async def _existing(self, name: str) -> UserRecord:
        user = await self.fresh(name)
        if user is None:
            raise SqlError(errors.NO_SUCH_USER, f"Can't find any matching row in the user table for '{name}'")
        return user

    async def grant(self, name: str, privileges: frozenset[str], scope: Scope = Scope()) -> None:
        user = await self._existing(name)
        await self._write(granted(user, scope, privileges))

    async def revoke(self, name: str, privileges: frozenset[str], scope: Scope = Scope()) -> None:
        user = await self._existing(name)
        if name == ROOT:
            raise SqlError(errors.CANNOT_USER, "root's privileges cannot be revoked")
        await self._write(revoked(user, scope, privileges))

    async def set_password(self, name: str, password: str) -> None:
        user = await self._existing(name)
        await self._write(replace(user, auth_string=native_password_hash(password)))

    async def set_max_user_connections(self, name: str, limit: int) -> None:
        user = await self._existing(name)
        await self._write(replace(user, max_user_connections=limit))
