"""The floor under a cross-FE KILL: a bare grpc-python round trip between two
processes, with the FEs' own messages and transport and no FE code.

A child process serves ``fecluster.Peer`` with a servicer that answers at once
(``Kill``: the reply; ``KillStream``: one reply per request), on grpc.aio over
uvloop with the FE server's options. The bench process keeps a grpc.aio
channel with the peers' options (``coordinator.peers.PeerChannels``) on an
event loop of its own (uvloop, in a thread) and times, inside that loop:

- ``unary``: one ``Peer.Kill`` call, request to reply;
- ``stream``: one message written on a long-lived ``Peer.KillStream`` and
  its reply read (what routing sends per cross-FE KILL);
- ``transport``: the same message through the FEs' own transport code, the
  requester's ``coordinator.peers.KillStream`` (writer task, reader task,
  a future per request) to the owner's ``frontend.grpc_api.PeerService``
  (its reader task, ``start_eagerly``, the reply queue), over a session
  table that answers at once: a cross-FE KILL's hop without the KILL.

The sample is taken in the loop with ``perf_counter``; the bench thread's
hand-off to the loop is outside it. ``python -m bench.grpcfloor`` prints both
alone; ``python -m bench`` takes them interleaved with its KILL rows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import grpc

from coordinator.pb import fecluster_pb2 as pb
from coordinator.pb import fecluster_pb2_grpc as pb_grpc
from coordinator.peers import KillStream
from frontend import procs

T = TypeVar("T")

# The FE server's options (frontend/grpc_api.GrpcListener._bind) and the peers' (coordinator/peers.PeerChannels).
SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.enable_retries", 0),
]


def _request() -> pb.PeerKillRequest:
    """What a routed KILL QUERY <id> carries (the same fields, similar sizes)."""
    return pb.PeerKillRequest(
        requester="root",
        requester_fe="127.0.0.1:40001",
        target=pb.KillTarget(connection_id=262144002, kind=pb.KILL_QUERY),
        requester_host="127.0.0.1:51234",
        issued_at_us=int(time.time() * 1e6),
        not_after_unix_ms=int(time.time() * 1000) + 3750,
    )


# ---------------------------------------------------------------- the server (child process)


class EchoPeer(pb_grpc.PeerServicer):
    async def Kill(self, request: pb.PeerKillRequest, context: grpc.aio.ServicerContext) -> pb.KillResult:
        return pb.KillResult(owner_fe="127.0.0.1:40002", request_id=request.request_id, killed=1, target_user="root")

    async def KillStream(
        self, requests: AsyncIterator[pb.PeerKillRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.KillResult]:
        async for request in requests:
            yield pb.KillResult(owner_fe="127.0.0.1:40002", request_id=request.request_id, killed=1, target_user="root")


class _Fe:
    address = "127.0.0.1:40002"


class InstantSessions:
    """What ``PeerService`` asks of the session table, answered at once."""

    fe = _Fe()

    async def kill_local(self, request: pb.PeerKillRequest) -> pb.KillResult:
        # When the request reached the owner's Python (perf_counter is CLOCK_MONOTONIC,
        # the same clock in both processes): the one-way half of the round trip.
        return pb.KillResult(owner_fe=self.fe.address, killed=1, target_user=repr(time.perf_counter()))


async def _serve(port: int, fe_port: int) -> None:
    from frontend.grpc_api import PeerService

    servers = []
    for p, servicer in ((port, EchoPeer()), (fe_port, PeerService(InstantSessions()))):  # type: ignore[arg-type]
        server = grpc.aio.server(options=SERVER_OPTIONS)
        pb_grpc.add_PeerServicer_to_server(servicer, server)
        if server.add_insecure_port(f"127.0.0.1:{p}") == 0:
            raise OSError(f"cannot bind 127.0.0.1:{p}")
        await server.start()
        servers.append(server)
    await servers[0].wait_for_termination()


def _run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


# ---------------------------------------------------------------- the client (bench process)


class GrpcFloor:
    """The echo server in a child process, and a channel to it on a loop thread."""

    def __init__(self, taken: set[int] | None = None) -> None:
        from bench.servers import bench_port

        self.port, self.fe_port = bench_port(taken), bench_port(taken)
        self.proc = procs.spawn(
            [sys.executable, "-m", "bench.grpcfloor", "serve", str(self.port), str(self.fe_port)], env=procs.node_env()
        )
        procs.wait_port("127.0.0.1", self.port, 30, self.proc)
        procs.wait_port("127.0.0.1", self.fe_port, 30, self.proc)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop_main, name="grpcfloor-loop", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.PeerStub | None = None
        self._stream: grpc.aio.StreamStreamCall[pb.PeerKillRequest, pb.KillResult] | None = None
        self._fe_channel: grpc.aio.Channel | None = None
        self._kill_stream: KillStream | None = None
        self.one_way: list[float] = []  # transport: ms from kill() to the owner's kill_local
        self._ids = 0
        self._call(self._connect())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _loop_main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            self._ready.set()
            await self._stopped.wait()

        _run(main())

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        assert self._loop is not None
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    async def _connect(self) -> None:
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}", options=CHANNEL_OPTIONS)
        await asyncio.wait_for(self._channel.channel_ready(), 30)
        self._stub = pb_grpc.PeerStub(self._channel)
        self._stream = self._stub.KillStream()
        self._fe_channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.fe_port}", options=CHANNEL_OPTIONS)
        await asyncio.wait_for(self._fe_channel.channel_ready(), 30)
        self._kill_stream = KillStream(pb_grpc.PeerStub(self._fe_channel), ())

    async def _unary(self) -> float:
        assert self._stub is not None
        request = _request()
        t0 = time.perf_counter()
        await self._stub.Kill(request, timeout=5)
        return (time.perf_counter() - t0) * 1000

    async def _stream_trip(self) -> float:
        assert self._stream is not None
        self._ids += 1
        request = _request()
        request.request_id = self._ids
        t0 = time.perf_counter()
        await self._stream.write(request)
        reply = await self._stream.read()
        elapsed = (time.perf_counter() - t0) * 1000
        if not isinstance(reply, pb.KillResult) or reply.request_id != self._ids:
            raise RuntimeError(f"unexpected stream reply {reply!r}")
        return elapsed

    async def _transport_trip(self) -> float:
        assert self._kill_stream is not None
        request = _request()
        t0 = time.perf_counter()
        reply = await self._kill_stream.kill(request, 5)
        elapsed = (time.perf_counter() - t0) * 1000
        if reply.killed != 1:
            raise RuntimeError(f"unexpected reply {reply!r}")
        self.one_way.append((float(reply.target_user) - t0) * 1000)
        return elapsed

    def unary(self) -> float:
        return self._call(self._unary())

    def stream(self) -> float:
        return self._call(self._stream_trip())

    def transport(self) -> float:
        return self._call(self._transport_trip())

    def ops(self) -> dict[str, Callable[[], float]]:
        return {"grpc.unary": self.unary, "grpc.stream": self.stream, "grpc.transport": self.transport}

    def close(self) -> None:
        async def shut() -> None:
            if self._stream is not None:
                self._stream.cancel()
            if self._kill_stream is not None:
                await self._kill_stream.close()
            for channel in (self._channel, self._fe_channel):
                if channel is not None:
                    await channel.close()
            self._stopped.set()

        if self._loop is not None:
            try:
                self._call(shut(), timeout=10)
            except Exception:  # noqa: BLE001 - closing
                pass
        self._thread.join(10)
        procs.stop(self.proc)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        _run(_serve(int(argv[1]), int(argv[2])))
        return 0
    p = argparse.ArgumentParser(
        prog="python -m bench.grpcfloor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument(
        "--idle-ms",
        type=float,
        default=0.0,
        help="pause between samples (the bench's KILL rows leave ~50 ms between messages)",
    )
    args = p.parse_args(argv)
    from bench.stats import summarize
    from bench.workloads import interleave

    floor = GrpcFloor()
    try:
        ops = dict(floor.ops())
        if args.idle_ms:

            def paused(op: Callable[[], float]) -> Callable[[], float]:
                def run() -> float:
                    time.sleep(args.idle_ms / 1000)
                    return op()

                return run

            ops = {name: paused(op) for name, op in ops.items()}
        samples = interleave(ops, args.iterations, warmup=200, block=1)
    finally:
        floor.close()
    samples["grpc.transport.one_way"] = floor.one_way[-args.iterations :]
    for name, values in samples.items():
        s = summarize(values)
        print(f"{name}: p50 {s.p50:.3f} ms, p99 {s.p99:.3f} ms, mean {statistics.mean(values):.3f} ms, n {s.n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
