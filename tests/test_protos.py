"""The generated gRPC modules must match protos/ (regenerate: python -m coordinator.pb.generate)."""

from __future__ import annotations

from pathlib import Path

from coordinator.pb.generate import ROOT, generate


def test_generated_modules_are_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    for name in ("fecluster_pb2.py", "fecluster_pb2.pyi", "fecluster_pb2_grpc.py"):
        fresh = (tmp_path / "coordinator" / "pb" / name).read_text()
        committed = (ROOT / "coordinator" / "pb" / name).read_text()
        assert fresh == committed, f"coordinator/pb/{name} is stale: run python -m coordinator.pb.generate"
