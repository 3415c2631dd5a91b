"""The client side of the codec (pure): what an FE needs to talk to a MySQL
or MariaDB server as a client (``frontend.mysql_backend``).

- ``parse_greeting``: HandshakeV10 -> ``Greeting`` (thread id, nonce, capabilities, plugin);
- ``handshake_response``: HandshakeResponse41 with a mysql_native_password scramble;
- ``parse_ok`` / ``parse_err``: the server's OK (or 0xFE-OK under DEPRECATE_EOF) and ERR;
- ``parse_column_definition``: ColumnDefinition41 -> ``results.Column`` (the
  server's own type, flags, charset, length and decimals, relayed unchanged);
- ``parse_text_row``: a text-protocol row as raw bytes (None for NULL).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

from frontend.wire import handshake as hs
from frontend.wire.auth import scramble
from frontend.wire.packets import Cursor, MalformedPacket, lenenc_bytes
from frontend.wire.results import Column

CLIENT_CAPABILITIES = (
    hs.CLIENT_LONG_PASSWORD
    | hs.CLIENT_LONG_FLAG
    | hs.CLIENT_PROTOCOL_41
    | hs.CLIENT_TRANSACTIONS
    | hs.CLIENT_SECURE_CONNECTION
    | hs.CLIENT_MULTI_RESULTS
    | hs.CLIENT_PS_MULTI_RESULTS
    | hs.CLIENT_PLUGIN_AUTH
    | hs.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | hs.CLIENT_DEPRECATE_EOF
)
MAX_PACKET = 1 << 30

COM_QUIT = 0x01
COM_INIT_DB = 0x02
COM_QUERY = 0x03
COM_PING = 0x0E


@dataclass(frozen=True)
class Greeting:
    version: str
    thread_id: int
    nonce: bytes
    capabilities: int
    status: int
    plugin: str


@dataclass(frozen=True)
class Ok:
    affected_rows: int
    last_insert_id: int
    status: int
    warnings: int
    info: str = ""


def parse_greeting(payload: bytes) -> Greeting:
    cur = Cursor(payload)
    if cur.u8() != 10:
        raise MalformedPacket("not a HandshakeV10 greeting")
    version = cur.nul_bytes().decode("utf-8", "replace")
    thread_id = cur.u32()
    nonce = cur.take(8)
    cur.skip(1)
    caps = cur.u16()
    cur.skip(1)  # charset
    status = cur.u16()
    caps |= cur.u16() << 16
    auth_len = cur.u8()
    cur.skip(10)
    plugin = hs.NATIVE_PASSWORD
    if caps & hs.CLIENT_SECURE_CONNECTION:
        nonce += cur.take(max(13, auth_len - 8))[:12]
    if caps & hs.CLIENT_PLUGIN_AUTH and not cur.at_end():
        plugin = cur.nul_bytes_or_rest().decode("ascii", "replace")
    return Greeting(version, thread_id, nonce[:20], caps, status, plugin)


def handshake_response(
    greeting: Greeting,
    user: str,
    password: str,
    extra_caps: int = 0,
    *,
    auth: bytes | None = None,
    charset: int = hs.UTF8MB4_GENERAL_CI,
    database: str | None = None,
    without: int = 0,
) -> bytes:
    """HandshakeResponse41; ``auth`` is a ready scramble (else made from
    ``password``); ``without`` drops default capabilities (a relayed client's)."""
    caps = ((CLIENT_CAPABILITIES | extra_caps) & ~without) & (greeting.capabilities | hs.CLIENT_PROTOCOL_41)
    if database:
        caps |= hs.CLIENT_CONNECT_WITH_DB & greeting.capabilities
    else:
        caps &= ~hs.CLIENT_CONNECT_WITH_DB
    if auth is None:
        auth = scramble(password, greeting.nonce) if greeting.plugin == hs.NATIVE_PASSWORD else b""
    head = struct.pack("<IIB23x", caps, MAX_PACKET, charset)
    auth_field = lenenc_bytes(auth) if caps & hs.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA else bytes((len(auth),)) + auth
    db = database.encode("utf-8", "surrogateescape") + b"\x00" if caps & hs.CLIENT_CONNECT_WITH_DB and database else b""
    return head + user.encode() + b"\x00" + auth_field + db + hs.NATIVE_PASSWORD.encode() + b"\x00"


def ssl_request(greeting: Greeting) -> bytes:
    caps = (CLIENT_CAPABILITIES | hs.CLIENT_SSL) & (greeting.capabilities | hs.CLIENT_PROTOCOL_41)
    return struct.pack("<IIB23x", caps, MAX_PACKET, hs.UTF8MB4_GENERAL_CI)


def parse_ok(payload: bytes) -> Ok:
    cur = Cursor(payload)
    cur.u8()  # 0x00, or 0xFE at the end of a result set
    affected = cur.lenenc_int()
    last_id = cur.lenenc_int()
    status = cur.u16() if cur.remaining >= 2 else 0
    warnings = cur.u16() if cur.remaining >= 2 else 0
    info = cur.rest().decode("utf-8", "replace") if not cur.at_end() else ""
    return Ok(affected, last_id, status, warnings, info)


def parse_eof(payload: bytes) -> Ok:
    """The pre-DEPRECATE_EOF EOF packet: warnings then status."""
    cur = Cursor(payload)
    cur.u8()
    warnings = cur.u16() if cur.remaining >= 2 else 0
    status = cur.u16() if cur.remaining >= 2 else 0
    return Ok(0, 0, status, warnings)


def parse_err(payload: bytes) -> tuple[int, str, str]:
    """(code, SQLSTATE, message) of an ERR packet."""
    cur = Cursor(payload)
    cur.u8()
    code = cur.u16()
    state = ""
    if not cur.at_end() and payload[cur.pos : cur.pos + 1] == b"#":
        cur.skip(1)
        state = cur.take(5).decode("ascii", "replace")
    return code, state, cur.rest().decode("utf-8", "replace")


def is_end(payload: bytes) -> bool:
    """OK/EOF that ends rows (0xFE and short), as opposed to a row starting with a 0xFE length."""
    return bool(payload) and payload[0] == 0xFE and len(payload) < 0xFFFFFF


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@lru_cache(maxsize=4096)
def parse_column_definition(payload: bytes) -> Column:
    """Cached by the payload: the same columns come back statement after statement."""
    cur = Cursor(payload)
    cur.lenenc_bytes()  # catalog
    schema = _name(cur.lenenc_bytes())
    table = _name(cur.lenenc_bytes())
    org_table = _name(cur.lenenc_bytes())
    name = _name(cur.lenenc_bytes())
    org_name = _name(cur.lenenc_bytes())
    cur.lenenc_int()  # length of the fixed fields (0x0C)
    charset = cur.u16()
    length = cur.u32()
    kind = cur.u8()
    flags = cur.u16()
    decimals = cur.u8()
    return Column(name, kind, length, flags, charset, decimals, table, org_table, schema, org_name)


def parse_text_row(payload: bytes, n: int) -> tuple[bytes | None, ...]:
    cur = Cursor(payload)
    out: list[bytes | None] = []
    for _ in range(n):
        if payload[cur.pos] == 0xFB:
            cur.skip(1)
            out.append(None)
        else:
            out.append(cur.lenenc_bytes())
    return tuple(out)
