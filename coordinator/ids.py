"""Cluster-unique connection ids and query ids.

Connection ids are the unsigned 32-bit value of the MySQL handshake (and what
the mysql client's Ctrl+C sends back in ``KILL QUERY <id>``). Layout, after
TiDB's 32-bit ``globalconn``::

    bit 31      0 (keeps ids positive for clients that read a signed int)
    bits 30..20 server id, 1..2047 (the FE's lease in Redis)
    bits 19..0  local sequence, 1..1048575

Server id >= 1 makes every id > 0. The owner of any id is therefore known
without Redis: ``server_id_of(conn_id)``.

Query ids are Doris style, ``16hex-16hex``; the first half starts with the
server id so ``KILL QUERY '<qid>'`` is routed in one call.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Container

SERVER_ID_BITS = 11
LOCAL_BITS = 20
MAX_SERVER_ID = (1 << SERVER_ID_BITS) - 1  # 2047
MAX_LOCAL = (1 << LOCAL_BITS) - 1  # 1048575
MAX_CONNECTION_ID = (MAX_SERVER_ID << LOCAL_BITS) | MAX_LOCAL

_QUERY_ID = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{16}$")


class IdsExhausted(Exception):
    """Every local sequence number of this FE is in use."""


def make_connection_id(server_id: int, local: int) -> int:
    if not 1 <= server_id <= MAX_SERVER_ID:
        raise ValueError(f"server id {server_id} outside 1..{MAX_SERVER_ID}")
    if not 1 <= local <= MAX_LOCAL:
        raise ValueError(f"local sequence {local} outside 1..{MAX_LOCAL}")
    return (server_id << LOCAL_BITS) | local


def server_id_of(connection_id: int) -> int | None:
    """The owner's server id, or None when the value cannot be one of our ids."""
    if not 0 < connection_id <= MAX_CONNECTION_ID:
        return None
    server_id = connection_id >> LOCAL_BITS
    if server_id == 0 or connection_id & MAX_LOCAL == 0:
        return None
    return server_id


class ConnectionIds:
    """Allocates connection ids for one FE, skipping ids still in use.

    An id handed to a handshake that never became a session is given back and
    reused first, so connecting without logging in cannot cycle the sequence
    (and bring a recently closed id back to life) from outside."""

    def __init__(self, server_id: int) -> None:
        self.server_id = server_id
        self._seq = itertools.count(1)
        self._returned: list[int] = []

    def give_back(self, conn_id: int) -> None:
        if server_id_of(conn_id) == self.server_id:
            self._returned.append(conn_id)

    def allocate(self, in_use: Container[int]) -> int:
        while self._returned:
            conn_id = self._returned.pop()
            if conn_id not in in_use:
                return conn_id
        for _ in range(MAX_LOCAL):
            local = (next(self._seq) - 1) % MAX_LOCAL + 1
            conn_id = make_connection_id(self.server_id, local)
            if conn_id not in in_use:
                return conn_id
        raise IdsExhausted(f"all {MAX_LOCAL} connection ids of server {self.server_id} are in use")


class QueryIds:
    """``SSSS tttttttttttt - rrrrrrrr cccccccc``: server id (16 bits), ms clock
    (48 bits), then per-process random (32 bits) and a counter (32 bits)."""

    def __init__(self, server_id: int) -> None:
        self.server_id = server_id
        self._nonce = secrets.randbits(32) << 32
        self._seq = itertools.count(1)

    def next(self) -> str:
        hi = (self.server_id << 48) | (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF)
        lo = self._nonce | (next(self._seq) & 0xFFFF_FFFF)
        return f"{hi:016x}-{lo:016x}"


def is_query_id(text: str) -> bool:
    return _QUERY_ID.match(text) is not None


def server_id_of_query(query_id: str) -> int | None:
    if not is_query_id(query_id):
        return None
    server_id = int(query_id[:4], 16)
    return server_id if 1 <= server_id <= MAX_SERVER_ID else None
