"""Regenerate the protobuf/gRPC modules: ``python -m coordinator.pb.generate``.

The proto lives in ``protos/``; the ``-I coordinator/pb=protos`` mapping makes
the generated gRPC module import its messages as ``coordinator.pb.fecluster_pb2``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def generate(out_dir: Path = ROOT) -> None:
    from grpc_tools import protoc  # build-time dependency only

    args = [
        "protoc",
        "-Icoordinator/pb=" + str(ROOT / "protos"),
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(ROOT / "protos" / "fecluster.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
