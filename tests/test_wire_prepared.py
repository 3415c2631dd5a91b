"""frontend.wire.prepared and .sqltext: prepared statements, placeholders, literals."""

from __future__ import annotations

import datetime as dt
import struct
import time
from decimal import Decimal
from typing import Any

import pytest

from coordinator.errors import SqlError
from frontend.wire import prepared as ps
from frontend.wire import results as r
from frontend.wire import sqltext
from frontend.wire.packets import MalformedPacket, lenenc_bytes

# ---------------------------------------------------------------- placeholders


@pytest.mark.parametrize(
    ("sql", "count"),
    [
        ("SELECT 1", 0),
        ("SELECT ?", 1),
        ("SELECT ?, ?", 2),
        ("SELECT '?', \"?\", `?`", 0),
        ("SELECT 'it''s ?', ?", 1),
        ("SELECT 'a\\'?', ?", 1),
        ('SELECT "a\\"?", ?', 1),
        ("SELECT `a``?`, ?", 1),
        ("SELECT /* ? */ ?", 1),
        ("SELECT ? -- ?\n, ?", 2),
        ("SELECT ? --?", 2),  # '--' without a space is two minus signs
        ("SELECT ? # ?\n, ?", 2),
        ("SELECT /*! ? */ 1", 1),  # executable comment: MySQL runs its body
        ("SELECT /*+ ? */ 1", 0),
        ("SELECT 'unterminated ?", 0),
        ("SELECT ? /* unterminated ?", 1),
        ("SELECT ?'?'?", 2),
        ("", 0),
    ],
)
def test_placeholder_count(sql: str, count: int) -> None:
    assert len(sqltext.placeholders(sql)) == count
    assert len(sqltext.split_placeholders(sql)) == count + 1


@pytest.mark.parametrize(
    "sql",
    ["'" + "\\'" * 200_000, "/*" * 200_000, "'" * 400_001, '"' + "a" * 400_000, "-- " * 100_000, "`" * 400_001],
)
def test_placeholder_scan_is_linear(sql: str) -> None:
    start = time.perf_counter()
    sqltext.placeholders(sql)
    assert time.perf_counter() - start < 0.5


# ---------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "NULL"),
        (True, "1"),
        (False, "0"),
        (-5, "-5"),
        (1.5, "1.5"),
        (Decimal("1E+2"), "100"),
        (Decimal("-0.50"), "-0.50"),
        ("a'b\"c\\d\n\r\0\x1ae", "'a\\'b\\\"c\\\\d\\n\\r\\0\\Ze'"),
        ("", "''"),
        (b"\x00\xffA", "X'00ff41'"),
        (b"", "X''"),
        (dt.date(2024, 2, 29), "'2024-02-29'"),
        (dt.datetime(2024, 1, 2, 3, 4, 5), "'2024-01-02 03:04:05'"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 7), "'2024-01-02 03:04:05.000007'"),
        (dt.timedelta(hours=-30, minutes=-1), "'-30:01:00'"),
        (dt.time(4, 5, 6), "'04:05:06'"),
    ],
)
def test_literal(value: Any, text: str) -> None:
    assert sqltext.literal(value) == text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), Decimal("NaN")])
def test_literal_rejects_non_finite(value: Any) -> None:
    with pytest.raises(ValueError):
        sqltext.literal(value)


def test_substitute_skips_quoted_marks() -> None:
    segments = sqltext.split_placeholders("SELECT ?, '?', ? /* ? */")
    assert sqltext.substitute(segments, ["x'", None]) == "SELECT 'x\\'', '?', NULL /* ? */"
    with pytest.raises(ValueError):
        sqltext.substitute(segments, [1])


# ---------------------------------------------------------------- registry and packets


def execute_packet(
    stmt_id: int, values: bytes, null_bitmap: bytes = b"", types: list[int] | None = None, flags: int = 0
) -> bytes:
    head = struct.pack("<BIBI", 0x17, stmt_id, flags, 1)
    if types is None and not null_bitmap:
        return head + values
    bound = b"\x00" if types is None else b"\x01" + struct.pack(f"<{len(types)}H", *types)
    return head + null_bitmap + bound + values


def test_execute_doc_example() -> None:
    reg = ps.StatementRegistry()
    stmt = reg.prepare("SELECT ?")
    assert stmt.id == 1
    packet = bytes.fromhex("17 01000000 00 01000000 00 01 0f00 03666f6f")
    ex = reg.parse_execute(packet)
    assert ex.params == ["foo"]
    assert ex.sql() == "SELECT 'foo'"


def test_new_params_bound_zero_reuses_previous_types() -> None:
    reg = ps.StatementRegistry()
    stmt = reg.prepare("SELECT ?, ?")
    first = execute_packet(stmt.id, struct.pack("<q", 5) + b"\x02hi", b"\x00", [r.LONGLONG, r.VAR_STRING])
    assert reg.parse_execute(first).params == [5, "hi"]
    second = execute_packet(stmt.id, struct.pack("<q", -7) + b"\x03bye", b"\x00", None)
    assert reg.parse_execute(second).params == [-7, "bye"]


def test_first_execute_without_types_is_refused() -> None:
    reg = ps.StatementRegistry()
    stmt = reg.prepare("SELECT ?")
    with pytest.raises(SqlError) as err:
        reg.parse_execute(execute_packet(stmt.id, b"\x01", b"\x00", None))
    assert err.value.code == ps.ER_WRONG_ARGUMENTS


def test_bad_execute_does_not_poison_types() -> None:
    reg = ps.StatementRegistry()
    stmt = reg.prepare("SELECT ?")
    with pytest.raises(MalformedPacket):
        reg.parse_execute(execute_packet(stmt.id, b"\x01", b"\x00", [r.LONGLONG]))  # 1 of 8 bytes
    assert stmt.param_types is None


def _all_types_packet(stmt_id: int) -> tuple[bytes, list[Any]]:
    items: list[tuple[int, bytes, Any]] = [
        (r.TINY, b"\xff", -1),
        (r.TINY | ps.UNSIGNED_PARAM, b"\xff", 255),
        (r.SHORT, struct.pack("<h", -2), -2),
        (r.SHORT | ps.UNSIGNED_PARAM, b"\xff\xff", 65535),
        (r.YEAR, struct.pack("<h", 2024), 2024),
        (r.LONG, struct.pack("<i", -3), -3),
        (r.INT24 | ps.UNSIGNED_PARAM, struct.pack("<I", 70000), 70000),
        (r.LONGLONG | ps.UNSIGNED_PARAM, b"\xff" * 8, (1 << 64) - 1),
        (r.LONGLONG, b"\xff" * 8, -1),
        (r.FLOAT, struct.pack("<f", 0.5), 0.5),
        (r.DOUBLE, struct.pack("<d", 10.2), 10.2),
        (r.NEWDECIMAL, lenenc_bytes(b"-12.340"), Decimal("-12.340")),
        (r.DECIMAL, lenenc_bytes(b"1"), Decimal(1)),
        (r.DATE, bytes.fromhex("04da070a11"), dt.date(2010, 10, 17)),
        (r.DATE, bytes.fromhex("07ea070b1b000000"), dt.date(2026, 11, 27)),  # MariaDB Connector/J's DATE
        (r.DATETIME, bytes.fromhex("0bda070a11131b1e01000000"), dt.datetime(2010, 10, 17, 19, 27, 30, 1)),
        (r.TIMESTAMP, bytes.fromhex("07da070a11131b1e"), dt.datetime(2010, 10, 17, 19, 27, 30)),
        (r.DATETIME, bytes.fromhex("04da070a11"), dt.datetime(2010, 10, 17)),
        (r.DATETIME, b"\x00", "0000-00-00 00:00:00"),
        (r.DATE, bytes.fromhex("0400000000"), "0000-00-00"),
        (
            r.TIME,
            bytes.fromhex("0c0178000000131b1e01000000"),
            -dt.timedelta(days=120, hours=19, minutes=27, seconds=30, microseconds=1),
        ),
        (r.TIME, bytes.fromhex("080078000000131b1e"), dt.timedelta(days=120, hours=19, minutes=27, seconds=30)),
        (r.TIME, b"\x00", dt.timedelta(0)),
        (r.VAR_STRING, lenenc_bytes("é".encode()), "é"),
        (r.STRING, lenenc_bytes(b"\xff"), "\udcff"),
        (r.JSON, lenenc_bytes(b'{"a":1}'), '{"a":1}'),
        (r.BLOB, lenenc_bytes(b"\x00\xff"), b"\x00\xff"),
        (r.TINY_BLOB, lenenc_bytes(b"x"), b"x"),
        (r.BIT, lenenc_bytes(b"\x01"), b"\x01"),
    ]
    types = [t for t, _, _ in items]
    values = b"".join(v for _, v, _ in items)
    bitmap = bytes((len(items) + 7) // 8)
    return execute_packet(stmt_id, values, bitmap, types), [e for _, _, e in items]


def test_every_parameter_type() -> None:
    reg = ps.StatementRegistry()
    packet, expected = _all_types_packet(0)
    stmt = reg.prepare("SELECT " + ", ".join("?" * len(expected)))
    packet = packet[:1] + struct.pack("<I", stmt.id) + packet[5:]
    assert reg.parse_execute(packet).params == expected


def test_every_prefix_of_execute_is_malformed() -> None:
    reg = ps.StatementRegistry()
    packet, expected = _all_types_packet(1)
    reg.prepare("SELECT " + ", ".join("?" * len(expected)))
    for cut in range(len(packet)):
        with pytest.raises(MalformedPacket):
            reg.parse_execute(packet[:cut])
    assert reg.get(1).param_types is None


def test_null_bitmap_and_null_type() -> None:
    reg = ps.StatementRegistry()
    stmt = reg.prepare("INSERT INTO t VALUES (?, ?, ?)")
    packet = execute_packet(stmt.id, b"\x05", b"\x05", [r.NULL, r.TINY, r.LONGLONG])
    ex = reg.parse_execute(packet)
    assert ex.params == [None, 5, None]
    assert ex.sql() == "INSERT INTO t VALUES (NULL, 5, NULL)"


def test_unknown_statement_and_type() -> None:
    reg = ps.StatementRegistry()
    with pytest.raises(SqlError) as err:
        reg.parse_execute(execute_packet(9, b""))
    assert err.value.code == ps.ER_UNKNOWN_STMT_HANDLER
    stmt = reg.prepare("SELECT ?")
    with pytest.raises(MalformedPacket):
        reg.parse_execute(execute_packet(stmt.id, b"\x00", b"\x00", [0x99]))


def test_long_data_replaces_parameter_and_is_consumed() -> None:
    reg = ps.StatementRegistry()
    stmt = reg.prepare("SELECT ?, ?")
    reg.send_long_data(struct.pack("<BIH", 0x18, stmt.id, 1) + b"\x00\xff")
    reg.send_long_data(struct.pack("<BIH", 0x18, stmt.id, 1) + b"more")
    packet = execute_packet(stmt.id, b"\x01x", b"\x00", [r.VAR_STRING, r.BLOB])  # param 1 not in the packet
    ex = reg.parse_execute(packet)
    assert ex.params == ["x", b"\x00\xffmore"]
    assert ex.sql() == "SELECT 'x', X'00ff6d6f7265'"
    assert stmt.long_data == {}


def test_long_data_reset_and_limit() -> None:
    reg = ps.StatementRegistry(max_long_data=10)
    stmt = reg.prepare("SELECT ?")
    reg.send_long_data(struct.pack("<BIH", 0x18, stmt.id, 0) + b"12345")
    reg.reset(struct.pack("<BI", 0x1A, stmt.id))
    assert stmt.long_data == {}
    reg.send_long_data(struct.pack("<BIH", 0x18, stmt.id, 0) + b"1234567890")
    reg.send_long_data(struct.pack("<BIH", 0x18, stmt.id, 0) + b"1")
    assert stmt.long_data == {}
    with pytest.raises(SqlError) as err:
        reg.parse_execute(execute_packet(stmt.id, b"", b"\x00", [r.BLOB]))
    assert err.value.code == 1153
    # the failure is reported once; the statement works again afterwards
    assert reg.parse_execute(execute_packet(stmt.id, b"\x01a", b"\x00", [r.BLOB])).params == [b"a"]
    reg.send_long_data(struct.pack("<BIH", 0x18, 999, 0) + b"x")  # unknown statement: ignored, no reply
    reg.send_long_data(struct.pack("<BIH", 0x18, stmt.id, 5) + b"x")  # no parameter 5: reported by the execute
    with pytest.raises(SqlError) as err:
        reg.parse_execute(execute_packet(stmt.id, b"\x01a", b"\x00", [r.BLOB]))
    assert err.value.code == ps.ER_WRONG_ARGUMENTS


def test_close_and_statement_limit() -> None:
    reg = ps.StatementRegistry(max_statements=2)
    a = reg.prepare("SELECT 1")
    reg.prepare("SELECT 2")
    with pytest.raises(SqlError) as err:
        reg.prepare("SELECT 3")
    assert err.value.code == ps.ER_MAX_PREPARED_STMT_COUNT_REACHED
    reg.close(struct.pack("<BI", 0x19, a.id))
    reg.close(struct.pack("<BI", 0x19, 12345))  # unknown: ignored
    c = reg.prepare("SELECT 3")
    assert c.id not in (a.id, 2) and len(reg) == 2
    with pytest.raises(SqlError):
        reg.reset(struct.pack("<BI", 0x1A, a.id))
    reg.clear()
    assert len(reg) == 0


def test_prepare_ok_with_and_without_deprecate_eof() -> None:
    reg = ps.StatementRegistry()
    stmt = reg.prepare("SELECT ?, ?", columns=[r.column_for_value("a", 1)])
    head = struct.pack("<BIHHBH", 0, stmt.id, 1, 2, 0, 0)
    with_eof = ps.prepare_ok(stmt, deprecate_eof=False)
    assert with_eof[0] == head
    assert len(with_eof) == 1 + 2 + 1 + 1 + 1
    assert with_eof[3] == with_eof[5] == r.eof_packet()
    without = ps.prepare_ok(stmt, deprecate_eof=True)
    assert len(without) == 1 + 2 + 1
    assert all(p[0] != 0xFE for p in without[1:])
    bare = reg.prepare("SELECT 1")
    assert ps.prepare_ok(bare, deprecate_eof=False) == [struct.pack("<BIHHBH", 0, bare.id, 0, 0, 0, 0)]


def test_parse_prepare() -> None:
    assert ps.parse_prepare(b"\x16SELECT \xff") == b"SELECT \xff"
    with pytest.raises(MalformedPacket):
        ps.parse_prepare(b"\x03SELECT 1")
