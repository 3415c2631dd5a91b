"""frontend.wire.handshake, .auth and .commands: the connection phase and simple commands."""

from __future__ import annotations

import struct
import time
from hashlib import sha1

import pytest

from coordinator.users import native_password_hash
from frontend.wire import auth, commands
from frontend.wire import handshake as hs
from frontend.wire.packets import MalformedPacket, lenenc_bytes

# A MySQL 5.7.18 greeting (a published capture): our builder must produce it byte for byte.
MYSQL_57_GREETING = bytes.fromhex(
    "0a 352e372e31382d6c6f6700 127a2900 33583818445e1648 00 ffff 21 0200 ffc1 15 00000000000000000000"
    " 407911302a41615564776e0d00 6d7973716c5f6e61746976655f70617373776f726400"
)


def test_handshake_matches_mysql_capture() -> None:
    nonce = bytes.fromhex("3358381844 5e1648 407911302a41615564776e0d")
    built = hs.build_handshake(
        0x00297A12, nonce, capabilities=0xC1FFFFFF, server_version="5.7.18-log", status=2, charset=0x21
    )
    assert built == MYSQL_57_GREETING
    assert len(built) == 0x4E


def test_handshake_layout_of_ours() -> None:
    nonce = b"ABCDEFGHIJKLMNOPQRST"
    caps = hs.server_capabilities()
    built = hs.build_handshake(7, nonce)
    assert built.startswith(b"\x0a5.7.99-fecluster\x00\x07\x00\x00\x00ABCDEFGH\x00")
    rest = built[len(b"\x0a5.7.99-fecluster\x00") + 13 :]
    low, charset, status, high, data_len = struct.unpack("<HBHHB", rest[:8])
    assert (high << 16 | low) == caps
    assert (charset, status, data_len) == (45, 2, 21)
    assert rest[8:18] == b"\x00" * 10
    assert rest[18:] == b"IJKLMNOPQRST\x00mysql_native_password\x00"


def test_server_capabilities() -> None:
    caps = hs.server_capabilities()
    for flag in (
        hs.CLIENT_DEPRECATE_EOF,
        hs.CLIENT_PLUGIN_AUTH,
        hs.CLIENT_CONNECT_ATTRS,
        hs.CLIENT_CONNECT_WITH_DB,
        hs.CLIENT_PROTOCOL_41,
        hs.CLIENT_SECURE_CONNECTION,
        hs.CLIENT_TRANSACTIONS,
        hs.CLIENT_MULTI_STATEMENTS,
        hs.CLIENT_MULTI_RESULTS,
        hs.CLIENT_PS_MULTI_RESULTS,
        hs.CLIENT_LONG_PASSWORD,
        hs.CLIENT_LONG_FLAG,
        hs.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
    ):
        assert caps & flag
    for flag in (hs.CLIENT_SSL, hs.CLIENT_COMPRESS, hs.CLIENT_QUERY_ATTRIBUTES, hs.CLIENT_SESSION_TRACK):
        assert not caps & flag
    assert hs.server_capabilities(tls=True) & hs.CLIENT_SSL


def test_nonce_is_printable_and_random() -> None:
    a, b = hs.make_nonce(), hs.make_nonce()
    assert len(a) == 20 and a != b
    assert a.isalnum() and a.isascii()


# ---------------------------------------------------------------- HandshakeResponse41

SCRAMBLE = bytes.fromhex("ab09eef6bcb1323e61143865c0991d957d75d447")
CLIENT_FLAGS = 0x000FA68D  # PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH | CONNECT_WITH_DB | ...

# The shape of MySQL's documented example: user "pam", 20-byte scramble, db "test".
DOC_RESPONSE = (
    struct.pack("<IIB23x", CLIENT_FLAGS, 16 * 1024 * 1024, 8)
    + b"pam\x00"
    + b"\x14"
    + SCRAMBLE
    + b"test\x00"
    + b"mysql_native_password\x00"
)


def test_parse_documented_response() -> None:
    resp = hs.parse_handshake_response(DOC_RESPONSE)
    assert resp.user == "pam"
    assert resp.auth_response == SCRAMBLE
    assert resp.database == "test"
    assert resp.plugin == "mysql_native_password"
    assert resp.charset == 8
    assert resp.max_packet == 16 * 1024 * 1024
    assert resp.capabilities == CLIENT_FLAGS & hs.SERVER_CAPABILITIES
    assert resp.attrs == {}


def full_response(user: bytes = b"root", auth_data: bytes = SCRAMBLE, db: bytes = b"db1") -> bytes:
    flags = (
        hs.CLIENT_PROTOCOL_41
        | hs.CLIENT_SECURE_CONNECTION
        | hs.CLIENT_PLUGIN_AUTH
        | hs.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | hs.CLIENT_CONNECT_WITH_DB
        | hs.CLIENT_CONNECT_ATTRS
        | hs.CLIENT_DEPRECATE_EOF
    )
    attrs = lenenc_bytes(b"_client_name") + lenenc_bytes(b"pymysql") + lenenc_bytes(b"_pid") + lenenc_bytes(b"42")
    return (
        struct.pack("<IIB23x", flags, 1 << 24, 45)
        + user
        + b"\x00"
        + lenenc_bytes(auth_data)
        + db
        + b"\x00"
        + b"caching_sha2_password\x00"
        + lenenc_bytes(attrs)
    )


def test_parse_full_response() -> None:
    resp = hs.parse_handshake_response(full_response())
    assert (resp.user, resp.auth_response, resp.database, resp.plugin) == (
        "root",
        SCRAMBLE,
        "db1",
        "caching_sha2_password",
    )
    assert resp.attrs == {"_client_name": "pymysql", "_pid": "42"}
    assert resp.capabilities & hs.CLIENT_DEPRECATE_EOF


def test_every_prefix_of_a_response_is_malformed() -> None:
    payload = full_response()
    attrs_start = payload.index(b"caching_sha2_password\x00") + len(b"caching_sha2_password\x00")
    for cut in range(len(payload)):
        if cut == attrs_start:
            # An answer may stop before its attributes (MySQL accepts that too).
            assert hs.parse_handshake_response(payload[:cut]).attrs == {}
            continue
        with pytest.raises(MalformedPacket):
            hs.parse_handshake_response(payload[:cut])


def test_pre41_client_refused() -> None:
    with pytest.raises(MalformedPacket):
        hs.parse_handshake_response(struct.pack("<IIB23x", hs.CLIENT_SECURE_CONNECTION, 0, 8) + b"u\x00\x00")


def test_unoffered_flags_are_not_read() -> None:
    # The client sets ZSTD, which we never offered: fields follow the negotiated flags only.
    flags = hs.CLIENT_PROTOCOL_41 | hs.CLIENT_SECURE_CONNECTION | hs.CLIENT_ZSTD_COMPRESSION
    resp = hs.parse_handshake_response(struct.pack("<IIB23x", flags, 0, 45) + b"bob\x00\x00\x03")
    assert resp.user == "bob" and resp.auth_response == b""
    assert resp.capabilities == hs.CLIENT_PROTOCOL_41 | hs.CLIENT_SECURE_CONNECTION


def test_huge_nul_less_user_name_rejected_fast() -> None:
    payload = struct.pack("<IIB23x", CLIENT_FLAGS, 0, 45) + b"u" * (512 * 1024)
    start = time.perf_counter()
    with pytest.raises(MalformedPacket):
        hs.parse_handshake_response(payload)
    assert time.perf_counter() - start < 0.05


def test_ssl_request_detection() -> None:
    ssl_request = struct.pack("<IIB23x", CLIENT_FLAGS | hs.CLIENT_SSL, 1 << 24, 45)
    assert hs.is_ssl_request(ssl_request)
    assert not hs.is_ssl_request(struct.pack("<IIB23x", CLIENT_FLAGS, 1 << 24, 45))
    assert not hs.is_ssl_request(full_response())


def test_attrs_are_bounded() -> None:
    pairs = b"".join(lenenc_bytes(f"k{i}".encode()) + lenenc_bytes(b"v") for i in range(1000))
    flags = hs.CLIENT_PROTOCOL_41 | hs.CLIENT_SECURE_CONNECTION | hs.CLIENT_PLUGIN_AUTH | hs.CLIENT_CONNECT_ATTRS
    payload = struct.pack("<IIB23x", flags, 0, 45) + b"u\x00\x00mysql_native_password\x00" + lenenc_bytes(pairs)
    assert len(hs.parse_handshake_response(payload).attrs) == hs.MAX_CONNECT_ATTRS


# ---------------------------------------------------------------- mysql_native_password


def test_scramble_verifies_against_stored_hash() -> None:
    nonce = hs.make_nonce()
    stored = native_password_hash("s3cret")
    assert stored == sha1(sha1(b"s3cret").digest()).hexdigest()
    assert auth.verify_native(stored, nonce, auth.scramble("s3cret", nonce))
    assert not auth.verify_native(stored, nonce, auth.scramble("wrong", nonce))
    assert not auth.verify_native(stored, nonce, auth.scramble("s3cret", hs.make_nonce()))
    assert not auth.verify_native(stored, nonce, b"")
    assert not auth.verify_native(stored, nonce, auth.scramble("s3cret", nonce)[:19])


def test_known_scramble_vector() -> None:
    # Computed by hand from the definition: SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw))).
    nonce = b"12345678901234567890"
    stage1 = sha1(b"password").digest()
    mask = sha1(nonce + sha1(stage1).digest()).digest()
    expected = bytes(a ^ b for a, b in zip(stage1, mask, strict=True))
    assert auth.scramble("password", nonce) == expected
    assert auth.verify_native(native_password_hash("password"), nonce, expected)


def test_empty_password() -> None:
    nonce = hs.make_nonce()
    assert auth.verify_native("", nonce, b"")
    assert not auth.verify_native("", nonce, auth.scramble("x", nonce))


def test_unknown_user_fails_like_wrong_password() -> None:
    nonce = hs.make_nonce()
    for response in (b"", auth.scramble("anything", nonce), b"\x00" * 20):
        assert not auth.verify_native(None, nonce, response)
    assert not auth.verify_native("not hex", nonce, b"\x00" * 20)


def test_auth_switch_packets() -> None:
    nonce = b"A" * 20
    assert auth.auth_switch_request(nonce) == b"\xfemysql_native_password\x00" + nonce + b"\x00"
    assert auth.parse_auth_switch_response(b"\x00") == b""
    assert auth.parse_auth_switch_response(SCRAMBLE) == SCRAMBLE
    assert auth.needs_switch("caching_sha2_password", SCRAMBLE)
    assert not auth.needs_switch("caching_sha2_password", b"")
    assert not auth.needs_switch("mysql_native_password", SCRAMBLE)
    assert not auth.needs_switch(None, SCRAMBLE)


def test_access_denied_message() -> None:
    assert auth.access_denied_message("bob", "10.0.0.1", True) == (
        "Access denied for user 'bob'@'10.0.0.1' (using password: YES)"
    )
    assert auth.access_denied_message("bob", "h", False).endswith("(using password: NO)")


# ---------------------------------------------------------------- simple commands


def test_com_query_keeps_bytes_and_round_trips() -> None:
    raw = b"SELECT '\xff\xfe binary', 'h\xc3\xa9'"
    sql_bytes = commands.parse_query(b"\x03" + raw)
    assert sql_bytes == raw
    text = commands.decode_text(sql_bytes, 45)
    assert "hé" in text
    assert commands.encode_text(text, 45) == raw
    latin = commands.decode_text(b"caf\xe9 \x81", 8)
    assert latin.startswith("café")
    assert commands.encode_text(latin, 8) == b"caf\xe9 \x81"
    with pytest.raises(MalformedPacket):
        commands.parse_query(b"\x02x")


def test_init_db_field_list_set_option() -> None:
    assert commands.parse_init_db(b"\x02mydb") == "mydb"
    fl = commands.parse_field_list(b"\x04t1\x00%")
    assert (fl.table, fl.wildcard) == ("t1", "%")
    with pytest.raises(MalformedPacket):
        commands.parse_field_list(b"\x04t1")
    assert commands.parse_set_option(b"\x1b\x01\x00") == commands.MYSQL_OPTION_MULTI_STATEMENTS_OFF
    with pytest.raises(MalformedPacket):
        commands.parse_set_option(b"\x1b\x01")


CHANGE_USER_CAPS = hs.SERVER_CAPABILITIES


def change_user_packet() -> bytes:
    attrs = lenenc_bytes(b"_os") + lenenc_bytes(b"linux")
    return (
        b"\x11bob\x00"
        + b"\x14"
        + SCRAMBLE
        + b"db2\x00"
        + struct.pack("<H", 45)
        + b"mysql_native_password\x00"
        + lenenc_bytes(attrs)
    )


def test_change_user() -> None:
    cu = commands.parse_change_user(change_user_packet(), CHANGE_USER_CAPS)
    assert (cu.user, cu.auth_response, cu.database, cu.charset, cu.plugin) == (
        "bob",
        SCRAMBLE,
        "db2",
        45,
        "mysql_native_password",
    )
    assert cu.attrs == {"_os": "linux"}


def test_every_prefix_of_change_user_is_malformed() -> None:
    payload = change_user_packet()
    db_end = payload.index(b"db2\x00") + 4
    plugin_end = payload.index(b"password\x00") + 9
    for cut in range(len(payload)):
        if cut in (db_end, db_end + 2, plugin_end):
            commands.parse_change_user(payload[:cut], CHANGE_USER_CAPS)  # optional tails may be absent
            continue
        with pytest.raises(MalformedPacket):
            commands.parse_change_user(payload[:cut], CHANGE_USER_CAPS)
