"""Connection phase packets: the server greeting and the client's answer.

Protocol::HandshakeV10 (server -> client, sequence id 0)::

    int<1>      protocol version            10
    string<NUL> server version              e.g. "5.7.99-fecluster"
    int<4>      connection id
    string[8]   auth-plugin-data-part-1     first 8 bytes of the nonce
    int<1>      filler                      0x00
    int<2>      capability flags, lower 16 bits
    int<1>      character set               45 = utf8mb4_general_ci
    int<2>      status flags
    int<2>      capability flags, upper 16 bits
    int<1>      length of auth-plugin-data  21 (20 nonce bytes + NUL) with CLIENT_PLUGIN_AUTH, else 0
    string[10]  reserved                    all 0x00
    string[13]  auth-plugin-data-part-2     last 12 nonce bytes + NUL
    string<NUL> auth plugin name            with CLIENT_PLUGIN_AUTH

Protocol::HandshakeResponse41 (client -> server, sequence id 1, or 2 after TLS)::

    int<4>      client capability flags
    int<4>      max packet size
    int<1>      character set
    string[23]  filler
    string<NUL> user name
    auth response:
        CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: string<lenenc>
        CLIENT_SECURE_CONNECTION:              int<1> length, then that many bytes
        otherwise:                             string<NUL>
    string<NUL> database                    with CLIENT_CONNECT_WITH_DB
    string<NUL> client plugin name          with CLIENT_PLUGIN_AUTH
    int<lenenc> attributes length, then string<lenenc> key/value pairs   with CLIENT_CONNECT_ATTRS

Protocol::SSLRequest is the first 32 bytes of that answer alone (flags, max
packet, charset, filler) with CLIENT_SSL set; the client then starts TLS and
sends the full answer inside it.

Which optional fields the answer has follows the negotiated capabilities
(client flags & server flags): a field the server did not offer is never read.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from frontend.wire.packets import Cursor, MalformedPacket

# Capability flags (int<4>).
CLIENT_LONG_PASSWORD = 1
CLIENT_FOUND_ROWS = 1 << 1
CLIENT_LONG_FLAG = 1 << 2
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_NO_SCHEMA = 1 << 4
CLIENT_COMPRESS = 1 << 5
CLIENT_ODBC = 1 << 6
CLIENT_LOCAL_FILES = 1 << 7
CLIENT_IGNORE_SPACE = 1 << 8
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_INTERACTIVE = 1 << 10
CLIENT_SSL = 1 << 11
CLIENT_IGNORE_SIGPIPE = 1 << 12
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_RESERVED = 1 << 14
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22
CLIENT_SESSION_TRACK = 1 << 23
CLIENT_DEPRECATE_EOF = 1 << 24
CLIENT_OPTIONAL_RESULTSET_METADATA = 1 << 25
CLIENT_ZSTD_COMPRESSION = 1 << 26
CLIENT_QUERY_ATTRIBUTES = 1 << 27

SERVER_CAPABILITIES = (
    CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_DEPRECATE_EOF
)
"""What the codec implements. FOUND_ROWS is the backend's to honour (a relaying
backend's connection takes the client's flag). Deliberately absent: COMPRESS, LOCAL_FILES, SESSION_TRACK,
QUERY_ATTRIBUTES, OPTIONAL_RESULTSET_METADATA. CLIENT_SSL is added only when a
TLS context is configured (``server_capabilities(tls=True)``)."""

UTF8MB4_GENERAL_CI = 45
BINARY_CHARSET = 63
SERVER_VERSION = "5.7.99-fecluster"
NATIVE_PASSWORD = "mysql_native_password"
NONCE_LENGTH = 20
MAX_CONNECT_ATTRS = 256
"""Attribute pairs kept from one answer; the payload cap bounds their bytes."""

_NONCE_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# Map every byte value to a printable character: Connector/J decodes the nonce
# as ASCII, and a NUL inside it would end the part-2 string early.
_NONCE_TABLE = bytes(_NONCE_CHARS[i % len(_NONCE_CHARS)] for i in range(256))
_HEAD = struct.Struct("<IIB23x")


def server_capabilities(tls: bool = False) -> int:
    return SERVER_CAPABILITIES | (CLIENT_SSL if tls else 0)


def make_nonce(size: int = NONCE_LENGTH) -> bytes:
    """``size`` random letters/digits from one ``os.urandom`` call."""
    return os.urandom(size).translate(_NONCE_TABLE)


def build_handshake(
    conn_id: int,
    nonce: bytes,
    capabilities: int = SERVER_CAPABILITIES,
    server_version: str = SERVER_VERSION,
    status: int = 2,
    charset: int = UTF8MB4_GENERAL_CI,
    plugin: str = NATIVE_PASSWORD,
) -> bytes:
    """The HandshakeV10 payload. ``nonce`` is 20 bytes without NUL; ``status`` 2 = autocommit."""
    if len(nonce) != NONCE_LENGTH:
        raise ValueError("the nonce must be 20 bytes")
    return b"".join(
        (
            b"\x0a",
            server_version.encode(),
            b"\x00",
            struct.pack("<I", conn_id & 0xFFFFFFFF),
            nonce[:8],
            b"\x00",
            struct.pack("<HBHHB", capabilities & 0xFFFF, charset, status, capabilities >> 16, NONCE_LENGTH + 1),
            b"\x00" * 10,
            nonce[8:],
            b"\x00",
            plugin.encode(),
            b"\x00",
        )
    )


@dataclass
class HandshakeResponse:
    """The client's answer, decoded. ``capabilities`` are the negotiated ones."""

    capabilities: int
    client_capabilities: int
    max_packet: int
    charset: int
    user: str
    auth_response: bytes
    database: str | None = None
    plugin: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)


def is_ssl_request(payload: bytes) -> bool:
    """The 32-byte SSLRequest: the answer's fixed head alone, with CLIENT_SSL."""
    return len(payload) == _HEAD.size and bool(int.from_bytes(payload[:4], "little") & CLIENT_SSL)


def _text(raw: bytes) -> str:
    # Names are compared as text and echoed in errors; undecodable bytes must
    # not raise, and must not collide with a real name (U+FFFD is not one).
    return raw.decode("utf-8", "replace")


def parse_handshake_response(payload: bytes, server_caps: int = SERVER_CAPABILITIES) -> HandshakeResponse:
    """Decode HandshakeResponse41; raises ``MalformedPacket`` on anything short or pre-4.1."""
    cur = Cursor(payload)
    client_caps, max_packet, charset = cur.unpack(_HEAD)
    if not client_caps & CLIENT_PROTOCOL_41:
        raise MalformedPacket("pre-4.1 clients are not supported")
    caps = client_caps & server_caps
    user = _text(cur.nul_bytes())
    if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
        auth = cur.lenenc_bytes()
    elif caps & CLIENT_SECURE_CONNECTION:
        auth = cur.take(cur.u8())
    else:
        auth = cur.nul_bytes()
    database = None
    if caps & CLIENT_CONNECT_WITH_DB:
        database = _text(cur.nul_bytes()) or None
    plugin = None
    if caps & CLIENT_PLUGIN_AUTH:
        plugin = _text(cur.nul_bytes())
    attrs: dict[str, str] = {}
    # MySQL accepts an answer that stops before the attributes; so do we. That is
    # the one place where a shortened answer is still a valid one.
    if caps & CLIENT_CONNECT_ATTRS and not cur.at_end():
        attrs = parse_attrs(cur)
    return HandshakeResponse(caps, client_caps, max_packet, charset, user, auth, database, plugin, attrs)


def parse_attrs(cur: Cursor) -> dict[str, str]:
    """``int<lenenc>`` total length, then key/value ``string<lenenc>`` pairs within it."""
    size = cur.lenenc_int()
    block = cur.take(size)
    attrs: dict[str, str] = {}
    pos, end = 0, len(block)
    while pos < end:
        key, pos = _lenenc_at(block, pos, end)
        value, pos = _lenenc_at(block, pos, end)
        if len(attrs) < MAX_CONNECT_ATTRS:
            attrs[_text(key)] = _text(value)
    return attrs


def _lenenc_at(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """The ``string<lenenc>`` at ``pos`` and the offset after it (short strings
    without a ``Cursor``: a handshake carries a dozen of them)."""
    n = data[pos]
    if n < 0xFB and pos + 1 + n <= end:
        return data[pos + 1 : pos + 1 + n], pos + 1 + n
    cur = Cursor(data, pos)
    value = cur.lenenc_bytes()  # long, or truncated: MalformedPacket
    return value, cur.pos
