"""Throttled password guessing, for every door (MySQL, gRPC, HTTP basic auth).

MySQL's connection-control model: the first ``free`` failed logins of a
(user, client address) cost nothing; after them every further attempt waits
``step * (failures - free + 1)`` seconds, at most ``max_delay``. A success
forgets the pair; so does a quiet period (``forget_after`` without a
failure). The client address alone is counted too, with its own allowance
(``address_free``), so that rotating user names from one address does not
reset the cost. Concurrent attempts on one key line up behind each other
(each waits its step after the one before), so opening many connections at
once does not multiply the guessing rate.

The caller asks :meth:`delay_for` *before* it verifies anything and sleeps
that long, whatever the user: an unknown user and a wrong password take the
same path and the same delay. Memory is bounded: at most ``capacity`` keys,
the least recently used dropped first.

An operator can alert on ``fecluster.auth`` WARNINGs: one when a key reaches
its allowance, then one each time its failure count doubles.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("fecluster.auth")

FREE_FAILURES = 3  # MySQL's connection_control_failed_connections_threshold default
ADDRESS_FREE_FAILURES = 100  # one address, any user names: a NAT of many people mistyping
STEP_S = 1.0  # connection_control_min_connection_delay: 1000 ms
MAX_DELAY_S = 120.0
FORGET_AFTER_S = 900.0  # a quarter of an hour without a failure forgets the key
CAPACITY = 100_000
MAX_NAME = 128  # of a user name in a key: a hostile name must not make an entry big


@dataclass
class _Entry:
    failures: int = 0
    last_failure: float = 0.0
    next_slot: float = 0.0  # when the attempt queued last on this key may go on


class LoginThrottle:
    """Per (user, address) and per address failure counts with growing delays. Not thread-safe:
    one event loop owns it (the FE's)."""

    def __init__(
        self,
        free: int = FREE_FAILURES,
        address_free: int = ADDRESS_FREE_FAILURES,
        step: float = STEP_S,
        max_delay: float = MAX_DELAY_S,
        forget_after: float = FORGET_AFTER_S,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.address_free = address_free
        self.step = step
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.capacity = capacity
        self.clock = clock
        self._entries: OrderedDict[tuple[str | None, str], _Entry] = OrderedDict()
        self.delayed = 0  # attempts made to wait, for /metrics

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------ the API

    def delay_for(self, user: str, address: str) -> float:
        """Seconds to wait before verifying this attempt (0.0 for most). Reserves the attempt's
        place: concurrent attempts on one key get successive slots."""
        now = self.clock()
        user = user[:MAX_NAME]
        wait = 0.0
        for key, free in (((user, address), self.free), ((None, address), self.address_free)):
            entry = self._get(key, now)
            if entry is None or entry.failures < free:
                continue
            step = min(self.step * (entry.failures - free + 1), self.max_delay)
            until = min(max(now, entry.next_slot) + step, now + self.max_delay)
            entry.next_slot = until
            wait = max(wait, until - now)
        if wait > 0:
            self.delayed += 1
        return wait

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        user = user[:MAX_NAME]
        for key, free in (((user, address), self.free), ((None, address), self.address_free)):
            entry = self._get(key, now) or self._add(key)
            entry.failures += 1
            entry.last_failure = now
            n = entry.failures
            if self.step > 0 and n >= free and (n == free or n & (n - 1) == 0):  # the allowance, then doublings
                delay = min(self.step * (n - free + 1), self.max_delay)
                who = f"user {user!r}" if key[0] is not None else "any user"
                log.warning(
                    "%d failed logins for %s from %s; delaying each further attempt by %.0f s (up to %.0f s)",
                    n,
                    who,
                    address,
                    delay,
                    self.max_delay,
                )

    def succeeded(self, user: str, address: str) -> None:
        """A right password forgets the pair (not the address: another user's guesses still count)."""
        self._entries.pop((user[:MAX_NAME], address), None)

    def failures(self, user: str | None, address: str) -> int:
        entry = self._get((None if user is None else user[:MAX_NAME], address), self.clock())
        return entry.failures if entry else 0

    # ------------------------------------------------------------ the map

    def _get(self, key: tuple[str | None, str], now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now - entry.last_failure > self.forget_after and entry.next_slot <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def _add(self, key: tuple[str | None, str]) -> _Entry:
        while len(self._entries) >= self.capacity:
            self._entries.popitem(last=False)
        entry = self._entries[key] = _Entry()
        return entry
