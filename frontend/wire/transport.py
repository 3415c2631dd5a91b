"""The connection's I/O: an ``asyncio.Protocol`` that hands out whole MySQL payloads.

Cheaper than ``StreamReader``/``StreamWriter`` per packet and per connection:
bytes are appended to one buffer, a payload is cut out once it is complete,
and the command loop awaits a future only when the buffer holds no whole
packet. Framing and limits are those of ``frontend.wire.packets``: ``limit``
caps the joined payload (``PacketTooLarge`` before the body is buffered), and
``seq`` is the sequence id the next answer must carry.

Memory stays bounded: reading from the socket pauses while more than
``limit`` + 64 KiB wait in the buffer, and ``drain`` waits while the
transport's write buffer is above its high-water mark.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import cast

from frontend.wire.answer import Answer, scan
from frontend.wire.packets import MAX_PACKET, PRE_AUTH_LIMIT, PacketTooLarge

_U32 = struct.Struct("<I")
_SLACK = 64 * 1024


class WireProtocol(asyncio.Protocol):
    transport: asyncio.Transport

    def __init__(
        self,
        on_made: Callable[[WireProtocol], None] | None = None,
        limit: int = PRE_AUTH_LIMIT,
        buffer_limit: int | None = None,
    ) -> None:
        self._on_made = on_made
        self.limit = limit
        # Reading pauses past this many buffered bytes (default: ``limit``): a
        # client side reading a large answer keeps its buffer small.
        self.buffer_limit = buffer_limit
        self.seq = 0
        self._buf = bytearray()
        self._eof = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.on_lost: Callable[[], None] | None = None  # the client closed or vanished

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > (self.buffer_limit or self.limit) + _SLACK and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        self._lost()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        self._lost()
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _lost(self) -> None:
        callback, self.on_lost = self.on_lost, None
        if callback is not None:
            callback()

    # ------------------------------------------------------------ reading

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed_eof(self) -> None:
        """Make the reader see the end (KILL CONNECTION): buffered commands are dropped."""
        self._eof = True
        self._buf.clear()
        self._wake()

    async def _fill(self, n: int) -> None:
        """Wait until ``n`` bytes are buffered; IncompleteReadError at EOF."""
        while len(self._buf) < n:
            if self._eof:
                raise asyncio.IncompleteReadError(bytes(self._buf), n)
            if self._paused:
                self._paused = False
                self.transport.resume_reading()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def read(self) -> bytes:
        """One logical payload (continuation packets joined), at most ``limit`` bytes."""
        buf = self._buf
        if len(buf) < 4:
            await self._fill(4)
        (word,) = _U32.unpack_from(buf)
        length = word & MAX_PACKET
        self.seq = ((word >> 24) + 1) & 0xFF
        if length > self.limit:
            raise PacketTooLarge(length, self.limit)
        if len(buf) < 4 + length:
            await self._fill(4 + length)
        payload = bytes(buf[4 : 4 + length])
        del buf[: 4 + length]
        if length < MAX_PACKET:
            self._resume_if_drained()
            return payload
        parts = [payload]
        total = length
        while length == MAX_PACKET:
            await self._fill(4)
            (word,) = _U32.unpack_from(buf)
            length = word & MAX_PACKET
            self.seq = ((word >> 24) + 1) & 0xFF
            total += length
            if total > self.limit:
                raise PacketTooLarge(total, self.limit)
            await self._fill(4 + length)
            parts.append(bytes(buf[4 : 4 + length]))
            del buf[: 4 + length]
        self._resume_if_drained()
        return b"".join(parts)

    async def read_answer(self, answer: Answer, chunk: int = 256 * 1024) -> tuple[bytes, bool]:
        """The next whole packets of ``answer``, framed as they came (about
        ``chunk`` bytes at most, or one packet if larger), and whether the
        answer's last is among them. For a relay: sequence ids are kept."""
        buf = self._buf
        while True:
            taken, seq, done = scan(answer, buf, chunk)
            if taken:
                data = bytes(buf[:taken])
                del buf[:taken]
                self.seq = seq
                self._resume_if_drained()
                return data, done
            if len(buf) >= 4:
                length = (buf[0] | buf[1] << 8 | buf[2] << 16) + 4
                if length > self.limit + 4:
                    raise PacketTooLarge(length - 4, self.limit)
                await self._fill(length)
            else:
                await self._fill(4)

    def _resume_if_drained(self) -> None:
        if self._paused and len(self._buf) <= (self.buffer_limit or self.limit):
            self._paused = False
            self.transport.resume_reading()

    # ------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    @property
    def write_paused(self) -> bool:
        """The transport's write buffer is over its high-water mark: ``drain`` before writing more."""
        return self._write_paused

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        while self._write_paused and not self.transport.is_closing():
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
