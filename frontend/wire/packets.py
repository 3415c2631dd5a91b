"""MySQL packet framing and the primitive field codecs.

Framing (both directions)::

    int<3>  payload_length     little endian, 0..0xFFFFFF
    int<1>  sequence_id        0 at the start of each command, +1 per packet, wraps at 256
    bytes   payload

A payload of 0xFFFFFF bytes or more is sent as several packets: each full one
carries exactly 0xFFFFFF bytes and the last one fewer (possibly 0), so a
payload of exactly 0xFFFFFF bytes ends with an empty packet. The reader joins
them back into one logical payload.

Length-encoded integer (``int<lenenc>``)::

    < 0xFB          1 byte, the value
    0xFC + int<2>   values up to 2^16-1
    0xFD + int<3>   values up to 2^24-1
    0xFE + int<8>   values up to 2^64-1
    (0xFB is NULL in a text-protocol row; 0xFF starts an ERR packet)

Length-encoded string: ``int<lenenc>`` length, then that many bytes.
NUL-terminated string: bytes up to (not including) the first 0x00.

Every reader here is bounded: it raises ``MalformedPacket`` on truncated input
instead of looping or reading past the payload, and all scans are O(n).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterable
from typing import Any

MAX_PACKET = 0xFFFFFF
"""The largest payload one physical packet carries; longer payloads continue."""

PRE_AUTH_LIMIT = 64 * 1024
"""Payload cap before the client has authenticated: a greeting answer is small."""

DEFAULT_MAX_ALLOWED_PACKET = 64 * 1024 * 1024
"""MySQL 8's default ``max_allowed_packet``."""

ER_NET_PACKET_TOO_LARGE = 1153

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class MalformedPacket(ValueError):
    """A payload is truncated or otherwise not what the protocol allows."""


class PacketTooLarge(Exception):
    """The client sent more than the allowed payload; the answer is error 1153."""

    code = ER_NET_PACKET_TOO_LARGE
    state = "08S01"  # MySQL's SQLSTATE for ER_NET_PACKET_TOO_LARGE
    message = "Got a packet bigger than 'max_allowed_packet' bytes"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{self.message} ({size} > {limit})")
        self.size = size
        self.limit = limit


# ---------------------------------------------------------------- encoders


def lenenc_int(value: int) -> bytes:
    """``int<lenenc>`` for 0 <= value < 2^64."""
    if value < 0xFB:
        return bytes((value,))
    if value < 0x10000:
        return b"\xfc" + _U16.pack(value)
    if value < 0x1000000:
        return b"\xfd" + value.to_bytes(3, "little")
    return b"\xfe" + _U64.pack(value)


def lenenc_bytes(value: bytes) -> bytes:
    """``string<lenenc>``: the length, then the bytes."""
    n = len(value)
    if n < 0xFB:
        return bytes((n,)) + value
    return lenenc_int(n) + value


def frame(payloads: Iterable[bytes], seq: int) -> tuple[bytes, int]:
    """Frame ``payloads`` with consecutive sequence ids starting at ``seq``.

    Returns the bytes for one ``transport.write`` and the next sequence id.
    """
    parts: list[bytes | memoryview] = []
    append = parts.append
    pack = _U32.pack
    for payload in payloads:
        n = len(payload)
        if n < MAX_PACKET:
            append(pack(n | (seq << 24)))  # length (3 bytes LE) | seq << 24, packed as one uint32
            append(payload)
            seq = (seq + 1) & 0xFF
            continue
        view = memoryview(payload)
        start = 0
        while True:
            chunk = view[start : start + MAX_PACKET]
            append(pack(len(chunk) | (seq << 24)))
            append(chunk)
            seq = (seq + 1) & 0xFF
            start += MAX_PACKET
            if len(chunk) < MAX_PACKET:
                break
    return b"".join(parts), seq


class PacketWriter:
    """Collects framed packets of one answer; ``flush`` writes them in one call.

    ``add`` returns True once the buffer holds ``high_water`` bytes or more, so a
    caller streaming a large result can flush (and drain) in bounded chunks.
    """

    __slots__ = ("_buf", "_write", "high_water", "seq")

    def __init__(self, write: Callable[[bytes], object], seq: int = 0, high_water: int = 256 * 1024) -> None:
        self._write = write
        self._buf = bytearray()
        self.seq = seq
        self.high_water = high_water

    def add(self, payload: bytes) -> bool:
        n = len(payload)
        if n < MAX_PACKET:
            self._buf += _U32.pack(n | (self.seq << 24))
            self._buf += payload
            self.seq = (self.seq + 1) & 0xFF
        else:
            framed, self.seq = frame((payload,), self.seq)
            self._buf += framed
        return len(self._buf) >= self.high_water

    def extend(self, payloads: Iterable[bytes]) -> bool:
        for payload in payloads:
            self.add(payload)
        return len(self._buf) >= self.high_water

    def flush(self) -> None:
        if self._buf:
            self._write(bytes(self._buf))
            self._buf.clear()

    @property
    def pending(self) -> int:
        return len(self._buf)


# ---------------------------------------------------------------- decoders


class Cursor:
    """Bounds-checked sequential reads over one payload.

    Every method raises ``MalformedPacket`` when the payload ends early.
    """

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self.end

    def _need(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > self.end:
            raise MalformedPacket(f"payload truncated: need {n} bytes at offset {start}, have {self.end - start}")
        self.pos = start + n
        return start

    def u8(self) -> int:
        if self.pos >= self.end:
            raise MalformedPacket(f"payload truncated at offset {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        return _U16.unpack_from(self.data, self._need(2))[0]  # type: ignore[no-any-return]

    def u24(self) -> int:
        start = self._need(3)
        return int.from_bytes(self.data[start : start + 3], "little")

    def u32(self) -> int:
        return _U32.unpack_from(self.data, self._need(4))[0]  # type: ignore[no-any-return]

    def u64(self) -> int:
        return _U64.unpack_from(self.data, self._need(8))[0]  # type: ignore[no-any-return]

    def unpack(self, fmt: struct.Struct) -> tuple[Any, ...]:
        return fmt.unpack_from(self.data, self._need(fmt.size))

    def take(self, n: int) -> bytes:
        start = self._need(n)
        return self.data[start : start + n]

    def skip(self, n: int) -> None:
        self._need(n)

    def lenenc_int(self) -> int:
        first = self.u8()
        if first < 0xFB:
            return first
        if first == 0xFC:
            return self.u16()
        if first == 0xFD:
            return self.u24()
        if first == 0xFE:
            return self.u64()
        raise MalformedPacket(f"invalid length-encoded integer prefix 0x{first:02x}")

    def lenenc_bytes(self) -> bytes:
        return self.take(self.lenenc_int())

    def nul_bytes(self) -> bytes:
        """Bytes up to the next NUL, which is consumed; no NUL is malformed."""
        end = self.data.find(b"\x00", self.pos, self.end)  # one C-level scan: O(n), bounded
        if end < 0:
            raise MalformedPacket(f"missing NUL terminator after offset {self.pos}")
        value = self.data[self.pos : end]
        self.pos = end + 1
        return value

    def nul_bytes_or_rest(self) -> bytes:
        """Bytes up to the next NUL or the end of the payload (old clients omit the NUL)."""
        end = self.data.find(b"\x00", self.pos, self.end)
        if end < 0:
            value = self.data[self.pos : self.end]
            self.pos = self.end
            return value
        value = self.data[self.pos : end]
        self.pos = end + 1
        return value

    def rest(self) -> bytes:
        value = self.data[self.pos : self.end]
        self.pos = self.end
        return value


# ---------------------------------------------------------------- stream reader


class PacketReader:
    """Reads logical payloads from an ``asyncio.StreamReader``.

    ``limit`` caps the joined payload size; it starts small (``PRE_AUTH_LIMIT``)
    and the connection raises it to ``max_allowed_packet`` after authentication.
    A payload over the cap raises ``PacketTooLarge`` before its body is read.
    ``seq`` is the sequence id the next packet sent back should carry.
    """

    __slots__ = ("limit", "reader", "seq")

    def __init__(self, reader: asyncio.StreamReader, limit: int = PRE_AUTH_LIMIT) -> None:
        self.reader = reader
        self.limit = limit
        self.seq = 0

    async def read(self) -> bytes:
        """One logical payload. Raises ``asyncio.IncompleteReadError`` on EOF."""
        header = await self.reader.readexactly(4)
        (word,) = _U32.unpack(header)
        length = word & MAX_PACKET
        self.seq = ((word >> 24) + 1) & 0xFF
        if length > self.limit:
            raise PacketTooLarge(length, self.limit)
        if length < MAX_PACKET:
            return await self.reader.readexactly(length) if length else b""
        parts = [await self.reader.readexactly(length)]
        total = length
        while length == MAX_PACKET:
            header = await self.reader.readexactly(4)
            (word,) = _U32.unpack(header)
            length = word & MAX_PACKET
            self.seq = ((word >> 24) + 1) & 0xFF
            total += length
            if total > self.limit:
                raise PacketTooLarge(total, self.limit)
            if length:
                parts.append(await self.reader.readexactly(length))
        return b"".join(parts)


def split_packets(data: bytes) -> list[tuple[int, bytes]]:
    """Parse framed bytes into ``(seq, payload)`` pairs (tests and tooling; no joining)."""
    out = []
    cur = Cursor(data)
    while not cur.at_end():
        length = cur.u24()
        seq = cur.u8()
        out.append((seq, cur.take(length)))
    return out
