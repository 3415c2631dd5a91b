"""Property tests: the parsers answer any input with a value or MalformedPacket, never anything else."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.errors import SqlError
from frontend.wire import commands, sqltext
from frontend.wire import handshake as hs
from frontend.wire import prepared as ps
from frontend.wire import results as r
from frontend.wire.packets import Cursor, MalformedPacket, frame, lenenc_bytes, lenenc_int, split_packets

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_HEAD = st.builds(
    lambda flags, charset: struct.pack("<IIB23x", flags | hs.CLIENT_PROTOCOL_41, 1 << 24, charset),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 255),
)


@FAST
@given(_HEAD, st.binary(max_size=300))
def test_handshake_response_never_crashes(head: bytes, tail: bytes) -> None:
    try:
        resp = hs.parse_handshake_response(head + tail)
    except MalformedPacket:
        return
    assert isinstance(resp.user, str) and isinstance(resp.auth_response, bytes)


@FAST
@given(st.binary(max_size=200), st.integers(0, 0xFFFFFFFF))
def test_change_user_never_crashes(tail: bytes, caps: int) -> None:
    try:
        commands.parse_change_user(b"\x11" + tail, caps)
    except MalformedPacket:
        pass


@FAST
@given(st.integers(0, 20), st.binary(max_size=200))
def test_execute_never_crashes(params: int, tail: bytes) -> None:
    reg = ps.StatementRegistry()
    stmt = reg.prepare("SELECT " + ", ".join("?" * params) if params else "SELECT 1")
    try:
        reg.parse_execute(struct.pack("<BIBI", 0x17, stmt.id, 0, 1) + tail)
    except (MalformedPacket, SqlError):
        pass


_PARAM = st.one_of(
    st.tuples(st.just(r.LONGLONG), st.integers(-(1 << 63), (1 << 63) - 1)),
    st.tuples(st.just(r.VAR_STRING), st.text(max_size=20)),
    st.tuples(st.just(r.BLOB), st.binary(max_size=20)),
    st.tuples(st.just(r.DOUBLE), st.floats(allow_nan=False)),
    st.tuples(st.just(r.NULL), st.none()),
)


@FAST
@given(st.lists(_PARAM, min_size=1, max_size=10))
def test_execute_round_trip(params: list[tuple[int, object]]) -> None:
    reg = ps.StatementRegistry()
    stmt = reg.prepare("SELECT " + ", ".join("?" * len(params)))
    bitmap = bytearray((len(params) + 7) // 8)
    values = b""
    for i, (kind, value) in enumerate(params):
        if value is None:
            bitmap[i // 8] |= 1 << (i % 8)
        elif kind == r.LONGLONG:
            values += struct.pack("<q", value)
        elif kind == r.DOUBLE:
            values += struct.pack("<d", value)
        elif kind == r.VAR_STRING:
            values += lenenc_bytes(str(value).encode("utf-8", "surrogatepass"))
        else:
            values += lenenc_bytes(bytes(value))  # type: ignore[call-overload]
    types = struct.pack(f"<{len(params)}H", *(k for k, _ in params))
    packet = struct.pack("<BIBI", 0x17, stmt.id, 0, 1) + bytes(bitmap) + b"\x01" + types + values
    got = reg.parse_execute(packet).params
    for (kind, value), decoded in zip(params, got, strict=True):
        if kind == r.VAR_STRING and isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            continue  # surrogates are not UTF-8 text; their bytes are what round-trips
        assert decoded == value


@FAST
@given(st.integers(0, (1 << 64) - 1))
def test_lenenc_round_trip(value: int) -> None:
    assert Cursor(lenenc_int(value)).lenenc_int() == value


@FAST
@given(st.lists(st.binary(max_size=300), max_size=10), st.integers(0, 255))
def test_frame_round_trip(payloads: list[bytes], seq: int) -> None:
    data, _ = frame(payloads, seq)
    assert [p for _, p in split_packets(data)] == payloads


@FAST
@given(st.binary(max_size=300))
def test_query_text_round_trips_bytes(raw: bytes) -> None:
    for charset in (45, 8, 63):
        assert commands.encode_text(commands.decode_text(raw, charset), charset) == raw


@FAST
@given(st.text(max_size=200))
def test_placeholder_segments_rebuild_the_text(sql: str) -> None:
    segments = sqltext.split_placeholders(sql)
    assert "?".join(segments) == sql


@FAST
@given(st.text(max_size=50))
def test_string_literal_stays_one_token(value: str) -> None:
    # A quoted parameter must hide its content from the placeholder scan: no '?' leaks out.
    sql = "SELECT " + sqltext.literal(value + "?") + ", ?"
    assert len(sqltext.placeholders(sql)) == 1


@FAST
@given(st.lists(st.binary(max_size=100), min_size=1, max_size=8), st.lists(st.integers(1, 50), max_size=40))
def test_transport_reassembles_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    import asyncio

    from frontend.wire.transport import WireProtocol

    class Sink:
        def is_closing(self) -> bool:
            return False

        def pause_reading(self) -> None:
            pass

        def resume_reading(self) -> None:
            pass

    async def run() -> list[bytes]:
        proto = WireProtocol(limit=1 << 20)
        proto.connection_made(Sink())  # type: ignore[arg-type]
        data, _ = frame(payloads, 0)
        pos = 0
        for cut in cuts:
            proto.data_received(data[pos : pos + cut])
            pos += cut
        proto.data_received(data[pos:])
        return [await proto.read() for _ in payloads]

    assert asyncio.run(run()) == payloads
