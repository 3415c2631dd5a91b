"""Bugs the type checker (mypy, issue 24) found, each as a user or an operator meets it."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from coordinator.registry import ConnectionRecord, Registry
from frontend import procs, tls
from frontend.config import Config
from frontend.wire.packets import PacketReader, PacketTooLarge

# ---------------------------------------------------------------- 1153 carries its SQLSTATE


async def test_packet_too_large_carries_mysqls_sqlstate() -> None:
    """The listener answers 1153 from the exception: MySQL sends it with SQLSTATE 08S01."""
    reader = asyncio.StreamReader()
    reader.feed_data(b"\x00\x00\x01\x00")  # announces 65536 bytes, one over the cap
    reader.feed_eof()
    with pytest.raises(PacketTooLarge) as err:
        await PacketReader(reader, limit=65535).read()
    assert (err.value.code, err.value.state) == (1153, "08S01")
    assert err.value.message == "Got a packet bigger than 'max_allowed_packet' bytes"


# ---------------------------------------------------------------- trace ids leave with their connection


@pytest.fixture
async def registry(redis_url: str) -> AsyncIterator[Registry]:
    reg = Registry(aioredis.from_url(redis_url), f"t{uuid.uuid4().hex[:8]}")
    try:
        yield reg
    finally:
        await reg.close()


def _record(conn_id: int, trace_id: str) -> ConnectionRecord:
    return ConnectionRecord(
        conn_id, "fe1", 1, "alice", "127.0.0.1", "2026-01-01 00:00:00", "def", "", trace_id=trace_id
    )


async def test_a_trace_id_is_dropped_when_its_connection_goes(registry: Registry) -> None:
    """Before, the drop was a coroutine never awaited: every trace id ever set
    stayed in Redis, naming a connection long gone."""
    record = _record((1 << 40) + 7, f"trace-{uuid.uuid4().hex}")
    await registry.apply_connection_changes({record.id: (record, True)})
    assert await registry.trace_owner(record.trace_id) == record.id
    await registry.apply_connection_changes({record.id: (record, False)})
    assert await registry.trace_owner(record.trace_id) is None
    assert not await registry.redis.exists(registry.keys.traces)


async def test_a_replaced_trace_id_is_dropped_and_only_for_its_connection(registry: Registry) -> None:
    first = _record((1 << 40) + 8, "shared-trace")
    await registry.apply_connection_changes({first.id: (first, True)})
    # Another connection's stale drop of the same trace id leaves it alone.
    await registry.apply_connection_changes({}, {"shared-trace": first.id + 1})
    assert await registry.trace_owner("shared-trace") == first.id
    # The session sets a new trace id: the old one is dropped.
    renamed = _record(first.id, "new-trace")
    await registry.apply_connection_changes({first.id: (renamed, True)}, {"shared-trace": first.id})
    assert await registry.trace_owner("shared-trace") is None
    assert await registry.trace_owner("new-trace") == first.id


# ---------------------------------------------------------------- --tls-cert without --tls-key


@pytest.fixture(scope="module")
def combined_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PEM file holding the certificate and its key (as the MySQL port already accepts)."""
    d = tmp_path_factory.mktemp("combined-pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", "fe.key", "-out", "fe.crt", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        cwd=d,
        check=True,
        capture_output=True,
    )
    (d / "fe.pem").write_bytes((d / "fe.crt").read_bytes() + (d / "fe.key").read_bytes())
    return d / "fe.pem"


async def test_grpc_tls_with_the_key_in_the_certificate_file(combined_pem: Path) -> None:
    """``--tls-cert fe.pem`` alone: the gRPC port serves TLS (before: TypeError at start)."""
    config = Config(tls_cert=str(combined_pem))
    credentials = tls.server_credentials(config)
    assert credentials is not None
    server = grpc.aio.server()
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = procs.free_port()
    server.add_secure_port(f"127.0.0.1:{port}", credentials)
    await server.start()
    try:
        # A peer with the same setting (no --tls-key) dials it: its channel credentials load too.
        assert tls.channel_credentials(config) is not None
        trust = grpc.ssl_channel_credentials(root_certificates=combined_pem.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", trust) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(None)
