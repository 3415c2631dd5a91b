"""Container health check: ask this FE's gRPC health service whether it serves.

Exit 0 when ``grpc.health.v1.Health/Check`` answers SERVING within the
deadline, 1 otherwise (not up yet, draining on SIGTERM, or gone). Reads the same
``FECLUSTER_*`` variables as ``fecluster node``: the gRPC port, and with TLS
the certificate, key and CA (the health service needs no cluster secret).

    python healthcheck.py [host:port]      # default 127.0.0.1:$FECLUSTER_GRPC_PORT (9020)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _read(name: str) -> bytes | None:
    path = os.environ.get(name, "")
    return Path(path).read_bytes() if path else None


def check(target: str, timeout: float = 2.0) -> str:
    cert = _read("FECLUSTER_TLS_CERT")
    if cert is None:
        channel = grpc.insecure_channel(target)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read("FECLUSTER_TLS_CA"),
            private_key=_read("FECLUSTER_TLS_KEY"),
            certificate_chain=cert,
        )
        # The certificate names the advertised host, not the loopback address we dial.
        host = os.environ.get("FECLUSTER_ADVERTISE_HOST", "")
        options = [("grpc.ssl_target_name_override", host)] if host else []
        channel = grpc.secure_channel(target, credentials, options)
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str]) -> int:
    target = argv[1] if len(argv) > 1 else f"127.0.0.1:{os.environ.get('FECLUSTER_GRPC_PORT', '9020')}"
    try:
        status = check(target)
    except grpc.RpcError as e:
        print(f"{target}: {e.code().name}: {e.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    except OSError as e:
        print(f"{target}: {e}", file=sys.stderr)
        return 1
    print(f"{target}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
