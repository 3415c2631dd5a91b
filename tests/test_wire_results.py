"""frontend.wire.results: OK/ERR/EOF, column definitions, text and binary rows."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal

import pytest

from frontend.wire import results as r
from frontend.wire.packets import Cursor, frame

# ---------------------------------------------------------------- documented examples


def test_ok_packet_doc_example() -> None:
    assert frame([r.ok_packet(status=r.SERVER_STATUS_AUTOCOMMIT)], 2)[0] == bytes.fromhex("07000002 00 00 00 0200 0000")


def test_ok_packet_fields() -> None:
    packet = r.ok_packet(affected_rows=300, last_insert_id=5, status=3, warnings=2, info=b"Rows matched: 1")
    assert packet == b"\x00\xfc\x2c\x01\x05\x03\x00\x02\x00Rows matched: 1"


def test_ok_packet_unknown_count() -> None:
    assert r.ok_packet(affected_rows=-1) == r.ok_packet()


def test_eof_packet_doc_example() -> None:
    assert frame([r.eof_packet(0, 2)], 5)[0] == bytes.fromhex("05000005 fe 0000 0200")


def test_err_packet_doc_example() -> None:
    expected = bytes.fromhex("ff 4804 23 4859303030") + b"No tables used"
    assert r.err_packet(1096, "No tables used") == expected


def test_err_packet_sqlstate_from_coordinator() -> None:
    assert r.err_packet(1045, "Access denied")[3:9] == b"#28000"
    assert r.err_packet(1317, "Query execution was interrupted")[3:9] == b"#70100"
    assert r.err_packet(1153, "x", state="08S01")[3:9] == b"#08S01"
    assert r.err_packet(1040, "Too many connections", protocol41=False) == b"\xff\x10\x04Too many connections"


def test_result_end_with_deprecate_eof_reports_zero_rows() -> None:
    end = r.result_end(True, status=r.SERVER_STATUS_AUTOCOMMIT, warnings=1)
    assert end == b"\xfe\x00\x00\x02\x00\x01\x00"
    cur = Cursor(end)
    assert cur.u8() == 0xFE
    assert cur.lenenc_int() == 0  # affected rows: 0, never the row count (Connector/J reads it)
    assert r.result_end(False, warnings=1) == b"\xfe\x01\x00\x02\x00"


def test_text_result_set_doc_example() -> None:
    """``SELECT @@version_comment LIMIT 1`` as MySQL 5.x answers a pre-DEPRECATE_EOF client."""
    column = r.Column("@@version_comment", r.VAR_STRING, 28, 0, 8, 31)
    payloads = list(r.result_set([column], [("MySQL Community Server (GPL)",)], deprecate_eof=False))
    expected = bytes.fromhex(
        "01000001 01"
        "27000002 03646566 00 00 00 11 40407665 7273696f 6e5f636f 6d6d656e 74 00 0c 0800 1c000000 fd 0000 1f 0000"
        "05000003 fe 0000 0200"
        "1d000004 1c 4d7953514c20436f6d6d756e69747920536572766572202847504c29"
        "05000005 fe 0000 0200"
    )
    assert frame(payloads, 1)[0] == expected


def test_result_set_with_deprecate_eof_has_no_middle_eof() -> None:
    payloads = list(r.result_set([r.column_for_value("a", 1)], [(1,), (2,)], deprecate_eof=True))
    assert len(payloads) == 1 + 1 + 2 + 1
    assert payloads[2] == b"\x011"
    assert payloads[-1] == b"\xfe\x00\x00\x02\x00\x00\x00"


def test_column_definition_layout() -> None:
    column = r.Column("n", r.LONGLONG, 20, r.BINARY_FLAG | r.UNSIGNED_FLAG, 63, 0, "t", "ot", "db", "on")
    cur = Cursor(r.column_definition(column))
    assert [cur.lenenc_bytes() for _ in range(6)] == [b"def", b"db", b"t", b"ot", b"n", b"on"]
    assert cur.lenenc_int() == 0x0C
    assert struct.unpack("<HIBHBxx", cur.rest()) == (63, 20, r.LONGLONG, 0xA0, 0)


# ---------------------------------------------------------------- inference


@pytest.mark.parametrize(
    ("value", "type_code", "charset", "flags"),
    [
        (1, r.LONGLONG, 63, r.BINARY_FLAG),
        (1 << 63, r.LONGLONG, 63, r.BINARY_FLAG | r.UNSIGNED_FLAG),
        (1 << 70, r.NEWDECIMAL, 63, r.BINARY_FLAG),
        (True, r.TINY, 63, r.BINARY_FLAG),
        (1.5, r.DOUBLE, 63, r.BINARY_FLAG),
        (Decimal("1.25"), r.NEWDECIMAL, 63, r.BINARY_FLAG),
        (b"\x00", r.BLOB, 63, r.BINARY_FLAG | r.BLOB_FLAG),
        ("x", r.VAR_STRING, 45, 0),
        (dt.datetime(2024, 1, 2, 3, 4, 5), r.DATETIME, 63, r.BINARY_FLAG),
        (dt.date(2024, 1, 2), r.DATE, 63, r.BINARY_FLAG),
        (dt.timedelta(hours=1), r.TIME, 63, r.BINARY_FLAG),
        (dt.time(1, 2), r.TIME, 63, r.BINARY_FLAG),
        (None, r.NULL, 63, r.BINARY_FLAG),
    ],
)
def test_column_for_value(value: object, type_code: int, charset: int, flags: int) -> None:
    column = r.column_for_value("c", value)
    assert (column.type, column.charset, column.flags) == (type_code, charset, flags)


def test_decimal_scale_and_infer_columns() -> None:
    assert r.column_for_value("d", Decimal("12.345")).decimals == 3
    assert r.column_for_value("f", 1.0).decimals == r.NOT_FIXED_DEC
    cols = r.infer_columns(["a", "b"], [(None, "x"), (5, None)])
    assert [c.type for c in cols] == [r.LONGLONG, r.VAR_STRING]


# ---------------------------------------------------------------- text values


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, b"0"),
        (-12, b"-12"),
        (True, b"1"),
        (False, b"0"),
        (1.0, b"1"),
        (0.1, b"0.1"),
        (-2.5, b"-2.5"),
        (1e20, b"1e20"),
        (1.5e-7, b"0.00000015"),
        (Decimal("1E+2"), b"100"),
        (Decimal("-0.010"), b"-0.010"),
        (dt.datetime(2024, 1, 2, 3, 4, 5), b"2024-01-02 03:04:05"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 60), b"2024-01-02 03:04:05.000060"),
        (dt.date(999, 1, 2), b"0999-01-02"),
        (dt.timedelta(hours=-1, seconds=-1), b"-01:00:01"),
        (dt.timedelta(days=2, microseconds=5), b"48:00:00.000005"),
        (dt.time(23, 59, 58, 1), b"23:59:58.000001"),
        ("héllo", "héllo".encode()),
        ("\udcff", b"\xff"),
        (b"\x00\xff", b"\x00\xff"),
        (bytearray(b"ab"), b"ab"),
    ],
)
def test_text_value(value: object, text: bytes) -> None:
    assert r.text_value(value) == text


# Each pair as MariaDB 10.11 printed the same DOUBLE (SELECT <literal>e0).
MARIADB_DOUBLES = [
    (1e14, "100000000000000"),
    (1e15, "1e15"),
    (1.5e15, "1.5e15"),
    (1234567890123456.7, "1234567890123456.8"),
    (12345678901234567.0, "1.2345678901234568e16"),
    (999999999999999.0, "999999999999999"),
    (1e300, "1e300"),
    (1e-5, "0.00001"),
    (1.25e-15, "0.00000000000000125"),
    (1e-16, "1e-16"),
    (1e-20, "1e-20"),
    (1.2345678901234567e-5, "0.000012345678901234568"),
    (1 / 3, "0.3333333333333333"),
]


@pytest.mark.parametrize(("value", "text"), MARIADB_DOUBLES)
def test_doubles_print_like_the_server(value: float, text: str) -> None:
    assert r.format_float(value) == text
    assert r.format_float(-value) == "-" + text
    assert float(text) == value


def test_text_row_null_and_long_values() -> None:
    long = "x" * 300
    row = r.text_row([None, 7, long, b""])
    assert row == b"\xfb" + b"\x017" + b"\xfc\x2c\x01" + long.encode() + b"\x00"


def test_text_rows_are_lazy() -> None:
    def rows():  # type: ignore[no-untyped-def]
        yield (1,)
        raise AssertionError("read past the first row")

    assert next(r.text_rows(rows())) == b"\x011"


# ---------------------------------------------------------------- binary values


def _col(type_code: int, flags: int = 0) -> r.Column:
    return r.Column("c", type_code, 0, flags, 63)


@pytest.mark.parametrize(
    ("column", "value", "encoded"),
    [
        (_col(r.LONGLONG), 1, "0100000000000000"),
        (_col(r.LONG), 1, "01000000"),
        (_col(r.SHORT), 1, "0100"),
        (_col(r.TINY), 1, "01"),
        (_col(r.TINY), -1, "ff"),
        (_col(r.TINY, r.UNSIGNED_FLAG), 255, "ff"),
        (_col(r.LONGLONG, r.UNSIGNED_FLAG), (1 << 64) - 1, "ffffffffffffffff"),
        (_col(r.YEAR), 2024, "e807"),
        (_col(r.DOUBLE), 10.2, "6666666666662440"),
        (_col(r.FLOAT), 10.2, "33332341"),
        (_col(r.DATETIME), dt.datetime(2010, 10, 17, 19, 27, 30, 1), "0bda070a11131b1e01000000"),
        (_col(r.DATETIME), dt.datetime(2010, 10, 17, 19, 27, 30), "07da070a11131b1e"),
        (_col(r.DATETIME), dt.datetime(2010, 10, 17), "04da070a11"),
        (_col(r.DATE), dt.date(2010, 10, 17), "04da070a11"),
        (_col(r.DATE), "0000-00-00", "00"),
        (
            _col(r.TIME),
            -dt.timedelta(days=120, hours=19, minutes=27, seconds=30, microseconds=1),
            "0c0178000000131b1e01000000",
        ),
        (_col(r.TIME), -dt.timedelta(days=120, hours=19, minutes=27, seconds=30), "080178000000131b1e"),
        (_col(r.TIME), dt.timedelta(0), "00"),
        (_col(r.TIME), dt.time(1, 2, 3), "080000000000010203"),
        (_col(r.VAR_STRING), "foo", "03666f6f"),
        (_col(r.NEWDECIMAL), Decimal("1.50"), "04312e3530"),
        (_col(r.BLOB), b"\x00\x01", "020001"),
    ],
)
def test_binary_value_doc_examples(column: r.Column, value: object, encoded: str) -> None:
    assert r.binary_value(column, value) == bytes.fromhex(encoded)


def test_binary_value_out_of_range() -> None:
    with pytest.raises(ValueError):
        r.binary_value(_col(r.TINY), 300)
    with pytest.raises(ValueError):
        r.binary_value(_col(r.LONGLONG), "abc")


def test_binary_row_doc_example_and_null_bitmap() -> None:
    assert r.binary_row([_col(r.VAR_STRING)], ["foobar"]) == bytes.fromhex("00 00 06666f6f626172")
    columns = [_col(r.LONGLONG)] * 7
    row = r.binary_row(columns, [None, 1, None, None, None, None, None])
    # NULL bits sit at offset 2: columns 0, 2..6 -> bits 2, 4..8 -> 0b11110100, 0b00000001
    assert row[:3] == b"\x00\xf4\x01"
    assert row[3:] == b"\x01" + b"\x00" * 7


def test_binary_result_set() -> None:
    cols = r.infer_columns(["n", "s"], [(1, "a")])
    payloads = list(r.result_set(cols, [(1, "a"), (None, None)], deprecate_eof=True, binary=True))
    assert payloads[3] == b"\x00\x00" + struct.pack("<q", 1) + b"\x01a"
    assert payloads[4] == b"\x00\x0c"
    assert payloads[-1][0] == 0xFE


def test_stable_columns_widen_mixed_values() -> None:
    rows = [(1, 1, dt.date(2024, 1, 1), 1, True, Decimal("1.5")), (2**63, "x", dt.datetime(2024, 1, 1, 2), None, 3, 2)]
    cols = r.stable_columns(["u", "mixed", "d", "n", "b", "dec"], rows)
    assert [c.type for c in cols] == [r.NEWDECIMAL, r.VAR_STRING, r.DATETIME, r.LONGLONG, r.LONGLONG, r.NEWDECIMAL]
    assert cols[5].decimals == 1
    for row in rows:
        r.binary_row(cols, row)  # every value fits its widened column
    assert r.stable_columns(["z"], [(None,)])[0].type == r.NULL
