"""Fair workers: admission of ordinary users' statements by per-user and total
lanes, so one user's heavy statements never take every worker (issue 23).

``StatementLanes`` counts and queues (the event loop owns it);
``FairExecutor`` wraps the statement executor so a statement holds its lane
until its last row is out. The session table builds one of each."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from frontend.executor import Executor, Prepared
from frontend.result import Batches, Result
from frontend.session import Session

MAX_USER_RUNNING_STATEMENTS = 8
MAX_RUNNING_STATEMENTS = 28
"""Of the embedded backend's 32 worker threads: 28 for ordinary users, at most 8
of them one user's; the other 4, and any the ordinary users leave, are the
admins' and the FE's own lane."""
WAITING_STATE = "Waiting for a worker (max_user_running_statements)"
_ENDS_TRANSACTION = re.compile(r"^\s*(?:commit|rollback)\b", re.IGNORECASE)


class StatementLanes:
    """Admission of ordinary users' statements: at most ``per_user`` running
    per user and ``total`` for all of them (0: no bound). A statement past its
    share waits, first come first served among those that may go (a user at
    their own bound never holds up another user). Not thread-safe: the FE's
    event loop owns it."""

    def __init__(self, per_user: int = MAX_USER_RUNNING_STATEMENTS, total: int = MAX_RUNNING_STATEMENTS) -> None:
        self.per_user = per_user
        self.total = total
        self.running: dict[str, int] = {}
        self.count = 0  # ordinary statements running
        self.waited = 0  # statements that had to wait, for /metrics
        self._waiters: deque[tuple[str, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _may_run(self, user: str) -> bool:
        return (not self.total or self.count < self.total) and (
            not self.per_user or self.running.get(user, 0) < self.per_user
        )

    def _take(self, user: str) -> None:
        self.count += 1
        self.running[user] = self.running.get(user, 0) + 1

    async def acquire(self, user: str, session: Session | None = None) -> Callable[[], None]:
        """Wait for a lane; -> the release (idempotent). Cancellable while it waits (KILL, a time limit)."""
        if not self._waiters and self._may_run(user):
            self._take(user)
            return self._releaser(user)
        future = asyncio.get_running_loop().create_future()
        entry = (user, future)
        self._waiters.append(entry)
        self.waited += 1
        before = session.state if session is not None else ""
        if session is not None:
            session.state = WAITING_STATE
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(user)  # granted in the same step it was cancelled
            else:
                self._waiters.remove(entry)
                self._grant()  # it may have stood before others that can go now
            raise
        finally:
            if session is not None and session.state == WAITING_STATE:
                session.state = before
        return self._releaser(user)

    def _releaser(self, user: str) -> Callable[[], None]:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._release(user)

        return release

    def _release(self, user: str) -> None:
        self.count -= 1
        left = self.running.get(user, 1) - 1
        if left > 0:
            self.running[user] = left
        else:
            self.running.pop(user, None)
        self._grant()

    def _grant(self) -> None:
        """Let waiting statements go, oldest first, skipping users at their own bound (one linear pass)."""
        if not self._waiters or (self.total and self.count >= self.total):
            return
        kept: deque[tuple[str, asyncio.Future[None]]] = deque()
        while self._waiters:
            user, future = self._waiters.popleft()
            if future.done():
                continue
            if self._may_run(user):
                self._take(user)
                future.set_result(None)
            else:
                kept.append((user, future))
                if self.total and self.count >= self.total:
                    break
        kept.extend(self._waiters)
        self._waiters = kept


class FairExecutor(Executor):
    """The executor with an ordinary user's statements admitted through ``StatementLanes``:
    the lane is held until the statement's last row is out (a streamed result's
    batches use worker threads too). Admins, COMMIT and ROLLBACK (a transaction
    must be able to end) take no lane."""

    def __init__(self, inner: Executor, lanes: StatementLanes, is_admin: Callable[[str], bool]) -> None:
        self.__dict__.update(inner.__dict__)  # the same services and handlers
        self.lanes = lanes
        self._is_admin = is_admin

    async def run(
        self, session: Session, sql: str, prepared: Prepared | None = None, text: str | None = None
    ) -> Result:
        lanes = self.lanes
        if (not lanes.per_user and not lanes.total) or self._is_admin(session.user) or _ENDS_TRANSACTION.match(sql):
            return await super().run(session, sql, prepared, text)
        release = await lanes.acquire(session.user, session)
        try:
            result = await super().run(session, sql, prepared, text)
        except BaseException:
            release()
            raise
        if result.more is None:
            release()
        else:
            result.more = _Releasing(result.more, release)
        return result


class _Releasing:
    """A streamed result's batches; the lane goes back when they end, fail or are closed
    (also when the reader closes it before the first batch)."""

    def __init__(self, more: Batches, release: Callable[[], None]) -> None:
        self._more = more
        self._release = release

    def __aiter__(self) -> _Releasing:
        return self

    async def __anext__(self) -> list[tuple[Any, ...]]:
        try:
            return await anext(self._more)
        except BaseException:
            self._release()
            raise

    async def aclose(self) -> None:
        try:
            await self._more.aclose()
        finally:
            self._release()
