"""TLS material for the gRPC listener and the peer channels (mTLS when a CA is set), and the MySQL port."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from frontend.config import Config


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _key_and_cert(config: Config) -> tuple[bytes, bytes]:
    """``--tls-key`` defaults to the certificate's file (one PEM holding both), as
    on the MySQL port (``ssl.SSLContext.load_cert_chain``)."""
    return Path(config.tls_key or config.tls_cert).read_bytes(), Path(config.tls_cert).read_bytes()


def server_credentials(config: Config) -> grpc.ServerCredentials | None:
    if not config.tls_cert:
        return None
    ca = _read(config.tls_ca)
    return grpc.ssl_server_credentials(
        [_key_and_cert(config)],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def channel_credentials(config: Config) -> grpc.ChannelCredentials | None:
    if not config.tls_cert:
        return None
    key, cert = _key_and_cert(config)
    return grpc.ssl_channel_credentials(root_certificates=_read(config.tls_ca), private_key=key, certificate_chain=cert)


def mysql_ssl_context(config: Config) -> ssl.SSLContext | None:
    """TLS for MySQL clients that ask for it (clients are not asked for
    certificates): ``--mysql-tls-cert``/``--mysql-tls-key``, else the gRPC pair."""
    cert, key = (
        (config.mysql_tls_cert, config.mysql_tls_key) if config.mysql_tls_cert else (config.tls_cert, config.tls_key)
    )
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key or None)
    return context
