"""Bad input against a live FE: random and truncated MySQL packets, garbage
gRPC messages, connections dropped mid-handshake and mid-result. The FE stays
up, other sessions are not disturbed, nothing leaks in the registry."""

from __future__ import annotations

import contextlib
import socket
import struct

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Cluster, Fe, wait_for

pytestmark = pytest.mark.slow
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def target(make_cluster_module) -> Cluster:  # type: ignore[no-untyped-def]
    return make_cluster_module


@pytest.fixture(scope="module")
def make_cluster_module(redis_url: str):  # type: ignore[no-untyped-def]
    from tests.support import new_cluster

    # Garbage logins are what these tests send: no throttling (tests/test_hostile.py tests it).
    cluster = new_cluster(redis_url, 2, login_delay=0)
    cluster.fes[0].query("CREATE DATABASE IF NOT EXISTS fuzz")
    yield cluster
    cluster.stop()


def _raw(fe: Fe) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", fe.mysql_port), timeout=5)
    return s


def _packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload) | (seq << 24))[:4] + payload


def _drain(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.settimeout(0.2)
        while s.recv(65536):
            pass


def _logged_in_socket(fe: Fe) -> socket.socket:
    """A raw socket past a real login (root, empty password)."""
    s = _raw(fe)
    s.recv(65536)  # greeting
    caps = 0x0200 | 0x8000 | 0x00080000 | 0x0008  # PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH, CONNECT_WITH_DB? no
    caps &= ~0x0008
    body = struct.pack("<IIB23x", caps, 1 << 24, 45) + b"root\x00" + b"\x00" + b"mysql_native_password\x00"
    s.sendall(_packet(1, body))
    reply = s.recv(65536)
    assert reply[4] == 0x00, reply  # OK
    return s


@pytest.fixture(scope="module")
def bystander(target: Cluster):  # type: ignore[no-untyped-def]
    conn = target.fes[0].connect()
    yield conn
    conn.close()


def _healthy(cluster: Cluster, bystander) -> None:  # type: ignore[no-untyped-def]
    for fe in cluster.fes:
        assert fe.alive(), fe.logs()[-3000:]
    with bystander.cursor() as cur:
        cur.execute("SELECT 42")
        assert cur.fetchall() == ((42,),)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_instead_of_a_handshake_response(target: Cluster, bystander, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with contextlib.closing(_raw(target.fes[0])) as s:
        s.recv(65536)
        with contextlib.suppress(OSError):
            s.sendall(data)
        _drain(s)
    _healthy(target, bystander)


@FUZZ
@given(seq=st.integers(0, 255), payload=st.binary(max_size=200))
def test_random_framed_packets_during_login(target: Cluster, bystander, seq: int, payload: bytes) -> None:  # type: ignore[no-untyped-def]
    with contextlib.closing(_raw(target.fes[1])) as s:
        s.recv(65536)
        with contextlib.suppress(OSError):
            s.sendall(_packet(seq, payload))
        _drain(s)
    _healthy(target, bystander)


@FUZZ
@given(command=st.integers(0, 255), payload=st.binary(max_size=200))
def test_random_commands_after_login(target: Cluster, bystander, command: int, payload: bytes) -> None:  # type: ignore[no-untyped-def]
    with contextlib.closing(_logged_in_socket(target.fes[0])) as s:
        with contextlib.suppress(OSError):
            s.sendall(_packet(0, bytes([command]) + payload))
        _drain(s)
    _healthy(target, bystander)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x05",  # a partial header
        _packet(1, b"")[:3],
        struct.pack("<I", 0xFFFFFF | (1 << 24)) + b"\x00" * 10,  # claims 16 MB, sends 10 bytes
        struct.pack("<I", 100 | (1 << 24)) + b"abc",  # truncated body
    ],
)
def test_truncated_packets_then_hang_up(target: Cluster, bystander, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    for login in (False, True):
        s = _logged_in_socket(target.fes[0]) if login else _raw(target.fes[0])
        if not login:
            s.recv(65536)
        s.sendall(raw)
        s.close()
    _healthy(target, bystander)


def test_dropped_mid_handshake_and_mid_result_leave_nothing(target: Cluster, bystander) -> None:  # type: ignore[no-untyped-def]
    fe = target.fes[0]
    before = target.registry_ids()
    for _ in range(20):
        _raw(fe).close()  # before reading the greeting
        s = _raw(fe)
        s.recv(10)
        s.close()  # after part of it
    big = (
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 300000) "
        "SELECT n, 'padding-padding-padding' FROM c"
    )
    for _ in range(5):
        s = _logged_in_socket(fe)
        s.sendall(_packet(0, b"\x03" + big.encode()))
        s.recv(1000)  # a little of the result, then hang up
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        s.close()
    # Nothing of these connections stays (a row of an earlier test may go meanwhile: a subset).
    wait_for(lambda: target.registry_ids() <= before, 30, what="registry back to the bystander only")
    _healthy(target, bystander)


@FUZZ
@given(
    method=st.sampled_from(
        [
            "/fecluster.v1.Frontend/Kill",
            "/fecluster.v1.Frontend/ShowProcesslist",
            "/fecluster.v1.Frontend/Execute",
            "/fecluster.v1.Peer/Kill",
            "/fecluster.v1.Peer/List",
        ]
    ),
    payload=st.binary(max_size=300),
    with_secret=st.booleans(),
)
def test_garbage_grpc_unary_calls(
    target: Cluster,
    bystander,
    method: str,
    payload: bytes,  # type: ignore[no-untyped-def]
    with_secret: bool,
) -> None:
    metadata = [("x-fecluster-user", "root")]
    if with_secret:
        metadata.append(("x-fecluster-secret", target.secret))
    with grpc.insecure_channel(target.fes[1].address) as channel:
        call = channel.unary_unary(method)
        try:
            call(payload, metadata=metadata, timeout=5)
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED), e
    _healthy(target, bystander)


@FUZZ
@given(messages=st.lists(st.binary(max_size=200), max_size=4))
def test_garbage_grpc_session_streams(target: Cluster, bystander, messages: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    before = target.registry_ids()
    with grpc.insecure_channel(target.fes[0].address) as channel:
        call = channel.stream_stream("/fecluster.v1.Frontend/Session")
        try:
            for _ in call(iter(messages), timeout=5):
                pass
        except grpc.RpcError as e:
            assert e.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.NOT_FOUND,
            ), e
    wait_for(lambda: target.registry_ids() == before, 5, what="no leaked session")
    _healthy(target, bystander)


def test_change_user_to_an_unknown_user_fails_and_ends_the_connection(target: Cluster, bystander) -> None:  # type: ignore[no-untyped-def]
    """COM_CHANGE_USER re-authenticates for real (it was refused, 1235); a
    failed change ends the connection, as in MySQL: no half-changed session."""
    with contextlib.closing(_logged_in_socket(target.fes[0])) as s:
        s.sendall(_packet(0, b"\x11" + b"bob\x00" + b"\x00" + b"\x00"))
        reply = s.recv(65536)
        assert reply[4] == 0xFF and struct.unpack("<H", reply[5:7])[0] == 1045, reply
        assert b"Access denied for user 'bob'@'127.0.0.1' (using password: NO)" in reply
        s.settimeout(5)
        assert s.recv(65536) == b""  # closed
    _healthy(target, bystander)
