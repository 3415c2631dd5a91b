"""Command phase: command bytes and the parsers of the simple commands.

Every command is one payload whose first byte names it. The prepared-statement
commands are parsed in ``frontend.wire.prepared``.

COM_QUERY::                 0x03, string<EOF> statement (bytes in the client's charset)
COM_INIT_DB::               0x02, string<EOF> schema name
COM_FIELD_LIST::            0x04, string<NUL> table, string<EOF> wildcard
COM_SET_OPTION::            0x1B, int<2> option (0 = multi statements on, 1 = off)
COM_CHANGE_USER::

    int<1>      0x11
    string<NUL> user
    auth:       CLIENT_SECURE_CONNECTION: int<1> length + bytes; otherwise string<NUL>
    string<NUL> database
    -- the rest is present only when the client has more to say --
    int<2>      character set
    string<NUL> auth plugin name            with CLIENT_PLUGIN_AUTH
    int<lenenc> attributes length + pairs   with CLIENT_CONNECT_ATTRS

The statement text stays bytes until ``decode_text``: it decodes in the client's
charset with ``surrogateescape``, so bytes that are not valid text (binary
literals) survive and ``encode_text`` gives back the very same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frontend.wire.handshake import (
    CLIENT_CONNECT_ATTRS,
    CLIENT_PLUGIN_AUTH,
    CLIENT_SECURE_CONNECTION,
    parse_attrs,
)
from frontend.wire.packets import Cursor, MalformedPacket

COM_SLEEP = 0x00
COM_QUIT = 0x01
COM_INIT_DB = 0x02
COM_QUERY = 0x03
COM_FIELD_LIST = 0x04
COM_CREATE_DB = 0x05
COM_DROP_DB = 0x06
COM_REFRESH = 0x07
COM_SHUTDOWN = 0x08
COM_STATISTICS = 0x09
COM_PROCESS_INFO = 0x0A
COM_CONNECT = 0x0B
COM_PROCESS_KILL = 0x0C
COM_DEBUG = 0x0D
COM_PING = 0x0E
COM_TIME = 0x0F
COM_DELAYED_INSERT = 0x10
COM_CHANGE_USER = 0x11
COM_BINLOG_DUMP = 0x12
COM_TABLE_DUMP = 0x13
COM_CONNECT_OUT = 0x14
COM_REGISTER_SLAVE = 0x15
COM_STMT_PREPARE = 0x16
COM_STMT_EXECUTE = 0x17
COM_STMT_SEND_LONG_DATA = 0x18
COM_STMT_CLOSE = 0x19
COM_STMT_RESET = 0x1A
COM_SET_OPTION = 0x1B
COM_STMT_FETCH = 0x1C
COM_DAEMON = 0x1D
COM_BINLOG_DUMP_GTID = 0x1E
COM_RESET_CONNECTION = 0x1F

MYSQL_OPTION_MULTI_STATEMENTS_ON = 0
MYSQL_OPTION_MULTI_STATEMENTS_OFF = 1

# Collation id -> Python codec. Everything not listed (utf8mb4, utf8mb3, ascii,
# binary) is read as UTF-8; MySQL's "latin1" is really Windows-1252.
_CODECS: dict[int, str] = {
    **dict.fromkeys((5, 8, 15, 31, 47, 48, 49, 94), "cp1252"),
    **dict.fromkeys((1, 84), "big5"),
    **dict.fromkeys((13, 88), "shift_jis"),
    **dict.fromkeys((28, 87), "gbk"),
    **dict.fromkeys((19, 85), "euc_kr"),
    **dict.fromkeys((24, 86), "gb2312"),
    **dict.fromkeys((248,), "gb18030"),
    **dict.fromkeys((26, 34, 44, 66, 99), "cp1250"),
    **dict.fromkeys((14, 23, 50, 51, 52), "cp1251"),
    **dict.fromkeys((57, 59), "cp1256"),
    **dict.fromkeys((7, 74), "koi8_r"),
    **dict.fromkeys((25, 70), "iso8859_7"),
    **dict.fromkeys((16, 71), "iso8859_8"),
    **dict.fromkeys((30, 78), "iso8859_9"),
}


def codec_for(charset: int) -> str:
    return _CODECS.get(charset, "utf-8")


def decode_text(raw: bytes, charset: int = 45) -> str:
    """Statement bytes as text; undecodable bytes become lone surrogates (round-trip safe)."""
    codec = _CODECS.get(charset)
    if codec is None:
        try:
            return raw.decode()  # the common case: strict UTF-8 is the fast path
        except UnicodeDecodeError:
            return raw.decode("utf-8", "surrogateescape")
    return raw.decode(codec, "surrogateescape")


def encode_text(text: str, charset: int = 45) -> bytes:
    """The inverse of ``decode_text``."""
    return text.encode(codec_for(charset), "surrogateescape")


def parse_query(payload: bytes) -> bytes:
    """COM_QUERY's statement, as bytes (no CLIENT_QUERY_ATTRIBUTES: it is not advertised)."""
    if not payload or payload[0] != COM_QUERY:
        raise MalformedPacket("not a COM_QUERY")
    return payload[1:]


def parse_init_db(payload: bytes, charset: int = 45) -> str:
    if not payload or payload[0] != COM_INIT_DB:
        raise MalformedPacket("not a COM_INIT_DB")
    return decode_text(payload[1:], charset)


@dataclass
class FieldList:
    table: str
    wildcard: str


def parse_field_list(payload: bytes, charset: int = 45) -> FieldList:
    cur = Cursor(payload)
    if cur.u8() != COM_FIELD_LIST:
        raise MalformedPacket("not a COM_FIELD_LIST")
    table = decode_text(cur.nul_bytes(), charset)
    return FieldList(table, decode_text(cur.rest(), charset))


def parse_set_option(payload: bytes) -> int:
    cur = Cursor(payload)
    if cur.u8() != COM_SET_OPTION:
        raise MalformedPacket("not a COM_SET_OPTION")
    return cur.u16()


@dataclass
class ChangeUser:
    user: str
    auth_response: bytes
    database: str | None
    charset: int | None = None
    plugin: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)


def parse_change_user(payload: bytes, capabilities: int) -> ChangeUser:
    """COM_CHANGE_USER under the negotiated ``capabilities``."""
    cur = Cursor(payload)
    if cur.u8() != COM_CHANGE_USER:
        raise MalformedPacket("not a COM_CHANGE_USER")
    user = cur.nul_bytes().decode("utf-8", "replace")
    auth = cur.take(cur.u8()) if capabilities & CLIENT_SECURE_CONNECTION else cur.nul_bytes()
    database = cur.nul_bytes().decode("utf-8", "replace") or None
    result = ChangeUser(user, auth, database)
    if cur.at_end():
        return result
    result.charset = cur.u16()
    if capabilities & CLIENT_PLUGIN_AUTH and not cur.at_end():
        result.plugin = cur.nul_bytes().decode("utf-8", "replace")
    if capabilities & CLIENT_CONNECT_ATTRS and not cur.at_end():
        result.attrs = parse_attrs(cur)
    return result
