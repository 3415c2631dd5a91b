"""frontend.wire.packets: framing, length-encoded fields, bounded reads."""

from __future__ import annotations

import asyncio
import time

import pytest

from frontend.wire.packets import (
    MAX_PACKET,
    Cursor,
    MalformedPacket,
    PacketReader,
    PacketTooLarge,
    PacketWriter,
    frame,
    lenenc_bytes,
    lenenc_int,
    split_packets,
)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (250, b"\xfa"),
        (251, b"\xfc\xfb\x00"),
        (0xFFFF, b"\xfc\xff\xff"),
        (0x10000, b"\xfd\x00\x00\x01"),
        (0xFFFFFF, b"\xfd\xff\xff\xff"),
        (0x1000000, b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00"),
        ((1 << 64) - 1, b"\xfe" + b"\xff" * 8),
    ],
)
def test_lenenc_int_round_trip(value: int, encoded: bytes) -> None:
    assert lenenc_int(value) == encoded
    cur = Cursor(encoded)
    assert cur.lenenc_int() == value
    assert cur.at_end()


@pytest.mark.parametrize("prefix", [b"\xfb", b"\xff"])
def test_lenenc_int_rejects_null_and_err_prefixes(prefix: bytes) -> None:
    with pytest.raises(MalformedPacket):
        Cursor(prefix).lenenc_int()


@pytest.mark.parametrize("encoded", [b"\xfc\x01", b"\xfd\x00\x00", b"\xfe" + b"\x00" * 7, b""])
def test_lenenc_int_truncated(encoded: bytes) -> None:
    with pytest.raises(MalformedPacket):
        Cursor(encoded).lenenc_int()


def test_lenenc_bytes() -> None:
    assert lenenc_bytes(b"foo") == b"\x03foo"
    assert lenenc_bytes(b"x" * 300)[:3] == b"\xfc\x2c\x01"
    assert Cursor(b"\x03foo").lenenc_bytes() == b"foo"
    with pytest.raises(MalformedPacket):
        Cursor(b"\x04foo").lenenc_bytes()


def test_cursor_fixed_reads_and_truncation() -> None:
    cur = Cursor(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a")
    assert cur.u8() == 1
    assert cur.u16() == 0x0302
    assert cur.u24() == 0x060504
    assert cur.u32() == 0x0A090807
    assert cur.at_end()
    for read in (cur.u8, cur.u16, cur.u24, cur.u32, cur.u64):
        with pytest.raises(MalformedPacket):
            read()
    with pytest.raises(MalformedPacket):
        Cursor(b"ab").take(3)
    with pytest.raises(MalformedPacket):
        Cursor(b"ab").take(-1)


def test_nul_string_bounded() -> None:
    cur = Cursor(b"root\x00rest")
    assert cur.nul_bytes() == b"root"
    assert cur.rest() == b"rest"
    with pytest.raises(MalformedPacket):
        Cursor(b"no terminator").nul_bytes()
    assert Cursor(b"old client").nul_bytes_or_rest() == b"old client"
    # A 512 KB name without NUL is refused at once, not scanned byte by byte.
    big = b"a" * (512 * 1024)
    start = time.perf_counter()
    with pytest.raises(MalformedPacket):
        Cursor(big).nul_bytes()
    assert time.perf_counter() - start < 0.05


def test_frame_small_payloads_one_buffer() -> None:
    data, seq = frame([b"\x01", b"abc"], 3)
    assert data == b"\x01\x00\x00\x03\x01" + b"\x03\x00\x00\x04abc"
    assert seq == 5
    assert split_packets(data) == [(3, b"\x01"), (4, b"abc")]


def test_frame_sequence_wraps() -> None:
    data, seq = frame([b"", b""], 255)
    assert data == b"\x00\x00\x00\xff" + b"\x00\x00\x00\x00"
    assert seq == 1


def test_frame_exact_max_payload_ends_with_empty_packet() -> None:
    payload = b"x" * MAX_PACKET
    data, seq = frame([payload], 0)
    packets = split_packets(data)
    assert [(s, len(p)) for s, p in packets] == [(0, MAX_PACKET), (1, 0)]
    assert seq == 2


def test_frame_long_payload_continues() -> None:
    payload = b"y" * (MAX_PACKET + 10)
    packets = split_packets(frame([payload], 7)[0])
    assert [(s, len(p)) for s, p in packets] == [(7, MAX_PACKET), (8, 10)]


def test_packet_writer_one_write_and_high_water() -> None:
    writes: list[bytes] = []
    writer = PacketWriter(writes.append, seq=1, high_water=10)
    assert writer.add(b"abc") is False
    assert writer.add(b"defgh") is True  # 7 + 9 bytes >= 10
    writer.flush()
    writer.flush()  # nothing pending: no empty write
    assert writes == [b"\x03\x00\x00\x01abc\x05\x00\x00\x02defgh"]
    assert writer.seq == 3


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_packet_reader_joins_continuations() -> None:
    payload = b"z" * MAX_PACKET + b"tail"
    data, _ = frame([payload, b"\x0e"], 0)
    reader = PacketReader(_reader(data), limit=2 * MAX_PACKET)
    assert await reader.read() == payload
    assert reader.seq == 2
    assert await reader.read() == b"\x0e"
    assert reader.seq == 3
    with pytest.raises(asyncio.IncompleteReadError):
        await reader.read()


async def test_packet_reader_caps_before_reading_body() -> None:
    reader = PacketReader(_reader(b"\x00\x00\x01\x00"), limit=65535)  # announces 65536 bytes: one over
    with pytest.raises(PacketTooLarge) as err:
        await reader.read()
    assert err.value.code == 1153
    assert err.value.size == 65536


async def test_packet_reader_caps_joined_size() -> None:
    data, _ = frame([b"q" * (MAX_PACKET + 5)], 0)
    reader = PacketReader(_reader(data), limit=MAX_PACKET)
    with pytest.raises(PacketTooLarge):
        await reader.read()


async def test_packet_reader_truncated_body() -> None:
    reader = PacketReader(_reader(b"\x05\x00\x00\x00ab"))
    with pytest.raises(asyncio.IncompleteReadError):
        await reader.read()
