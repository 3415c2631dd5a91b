"""frontend.wire.transport: payloads out of an asyncio.Protocol, with bounded buffering."""

from __future__ import annotations

import asyncio

import pytest

from frontend.wire.packets import MAX_PACKET, PacketTooLarge, frame
from frontend.wire.transport import WireProtocol


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.paused = False
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closing


def _proto(limit: int = 1 << 20) -> tuple[WireProtocol, FakeTransport]:
    proto = WireProtocol(limit=limit)
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto, transport


async def test_packets_split_across_chunks() -> None:
    proto, _ = _proto()
    data, _ = frame([b"\x03SELECT 1", b"\x0e"], 0)
    reader = asyncio.ensure_future(proto.read())
    for i in range(len(data)):  # one byte at a time
        proto.data_received(data[i : i + 1])
        await asyncio.sleep(0)
    assert await reader == b"\x03SELECT 1"
    assert await proto.read() == b"\x0e"
    assert proto.seq == 2


async def test_continuation_packets_joined() -> None:
    proto, _ = _proto(limit=2 * MAX_PACKET)
    payload = b"a" * MAX_PACKET + b"b"
    proto.data_received(frame([payload], 0)[0])
    assert await proto.read() == payload
    assert proto.seq == 2


async def test_limit_and_eof() -> None:
    proto, _ = _proto(limit=10)
    proto.data_received(b"\x0b\x00\x00\x00")
    with pytest.raises(PacketTooLarge):
        await proto.read()
    proto, _ = _proto()
    proto.data_received(b"\x05\x00\x00\x00ab")
    proto.eof_received()
    with pytest.raises(asyncio.IncompleteReadError):
        await proto.read()


async def test_reading_pauses_while_the_buffer_is_full() -> None:
    proto, transport = _proto(limit=100)
    proto.data_received(frame([b"x" * 100] * 1000, 0)[0])
    assert transport.paused
    for _ in range(1000):
        await proto.read()
    assert not transport.paused


async def test_feed_eof_drops_buffered_commands() -> None:
    proto, _ = _proto()
    proto.data_received(frame([b"\x03SELECT 1"], 0)[0])
    proto.feed_eof()
    with pytest.raises(asyncio.IncompleteReadError):
        await proto.read()


async def test_drain_waits_for_resume_writing() -> None:
    proto, _ = _proto()
    proto.pause_writing()
    drain = asyncio.ensure_future(proto.drain())
    await asyncio.sleep(0)
    assert not drain.done()
    proto.resume_writing()
    await asyncio.wait_for(drain, 1)
