"""Who may hold a connection to the HTTP port, so that idle sockets cannot starve the operators.

A connection is *waiting* while nothing is asked of the FE on it: just
accepted, kept alive between requests, part way through its request head, or
held back by login throttling. Waiting connections are bounded per client
address and in total; when a new connection arrives past a bound, the
**oldest waiting** connection (of that address first) is closed to make room:
a fresh ``/healthz`` probe or an admin's kill always gets in, and 1,000 idle
sockets cost their owner the oldest of them instead of costing everyone else
their requests. Only connections that are being served (*busy*) are never
closed for room; when every slot is busy a newcomer is refused.

Under pressure (half the waiting bound in use) the deadlines shorten: a
connection gets ``PRESSED_IDLE_S`` instead of ``IDLE_S`` to start a request
and ``PRESSED_HEAD_S`` instead of ``HEAD_S`` to finish its head, and those
already waiting have theirs cut to the same at the moment pressure begins.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

MAX_CONNECTIONS = 512  # busy + waiting
MAX_WAITING = 256
MAX_WAITING_PER_ADDRESS = 64
IDLE_S = 15.0  # to start a request (the first byte), fresh or kept alive
HEAD_S = 5.0  # to send the rest of a request's head and its body
PRESSED_IDLE_S = 1.0
PRESSED_HEAD_S = 2.0


@dataclass(eq=False)
class Conn:
    peer: str
    transport: asyncio.WriteTransport
    waiting: bool = False
    closed: bool = False
    timer: asyncio.Timeout | None = field(default=None, repr=False)  # the deadline of the wait under way


class Admission:
    def __init__(
        self,
        max_connections: int = MAX_CONNECTIONS,
        max_waiting: int = MAX_WAITING,
        max_waiting_per_address: int = MAX_WAITING_PER_ADDRESS,
    ) -> None:
        self.max_connections = max_connections
        self.max_waiting = max_waiting
        self.max_waiting_per_address = max_waiting_per_address
        self.connections: set[Conn] = set()
        self._waiting: OrderedDict[Conn, None] = OrderedDict()  # oldest first
        self._by_peer: dict[str, OrderedDict[Conn, None]] = {}
        self._pressed = False
        self.evicted = 0  # connections closed to make room, for /metrics
        self.refused = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def admit(self, peer: str, transport: asyncio.WriteTransport) -> Conn | None:
        """A new connection, waiting; None when every slot is busy (the caller closes it)."""
        mine = self._by_peer.get(peer)
        if mine is not None and len(mine) >= self.max_waiting_per_address:
            self._evict(next(iter(mine)))
        if len(self._waiting) >= self.max_waiting or len(self.connections) >= self.max_connections:
            if not self._waiting:
                self.refused += 1
                return None
            self._evict(next(iter(self._waiting)))
        conn = Conn(peer, transport)
        self.connections.add(conn)
        self.wait(conn)
        return conn

    def wait(self, conn: Conn) -> None:
        """``conn`` asks nothing of the FE now: it may be closed to make room (newest last)."""
        if conn.closed or conn.waiting:
            return
        conn.waiting = True
        self._waiting[conn] = None
        self._by_peer.setdefault(conn.peer, OrderedDict())[conn] = None
        if not self._pressed and self.pressed():
            self._pressed = True
            self._shorten_deadlines()
        elif self._pressed and not self.pressed():
            self._pressed = False

    def busy(self, conn: Conn) -> None:
        """``conn`` is being served: never closed to make room."""
        if not conn.waiting:
            return
        conn.waiting = False
        self._waiting.pop(conn, None)
        mine = self._by_peer.get(conn.peer)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self._by_peer[conn.peer]

    def leave(self, conn: Conn) -> None:
        self.busy(conn)
        conn.closed = True
        self.connections.discard(conn)

    def pressed(self) -> bool:
        return len(self._waiting) * 2 >= self.max_waiting

    def idle_deadline(self) -> float:
        return PRESSED_IDLE_S if self.pressed() else IDLE_S

    def head_deadline(self) -> float:
        return PRESSED_HEAD_S if self.pressed() else HEAD_S

    def _evict(self, conn: Conn) -> None:
        self.evicted += 1
        self.leave(conn)
        conn.transport.abort()  # the reader sees the end of the stream; its task finishes by itself

    def _shorten_deadlines(self) -> None:
        """Pressure begins: every waiting connection's deadline comes in (once per episode: linear)."""
        loop = asyncio.get_running_loop()
        soon = loop.time() + PRESSED_IDLE_S
        for conn in self._waiting:
            timer = conn.timer
            if timer is not None and not timer.expired():
                when = timer.when()
                if when is None or when > soon:
                    timer.reschedule(soon)
