"""TLS material for the gRPC listener and the peer channels (mTLS when a CA is set)."""

from __future__ import annotations

from pathlib import Path

import grpc

from frontend.config import Config


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def server_credentials(config: Config) -> grpc.ServerCredentials | None:
    if not config.tls_cert:
        return None
    ca = _read(config.tls_ca)
    return grpc.ssl_server_credentials(
        [(_read(config.tls_key), _read(config.tls_cert))],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def channel_credentials(config: Config) -> grpc.ChannelCredentials | None:
    if not config.tls_cert:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(config.tls_ca),
        private_key=_read(config.tls_key),
        certificate_chain=_read(config.tls_cert),
    )
