"""The HTTP listener: accepts connections under :class:`~frontend.http.admission.Admission`,
reads requests with deadlines, hands each to :class:`~frontend.http.api.Api`, writes the answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from frontend.http.admission import Admission, Conn
from frontend.http.api import Api
from frontend.http.ops import HttpSettings, WebOps
from frontend.http.protocol import MAX_HEAD, HttpError, Request, error_response, read_body, read_head, write_response
from frontend.throttle import ADDRESS_FREE_FAILURES, FREE_FAILURES, MAX_DELAY_S, STEP_S, LoginThrottle

log = logging.getLogger("fecluster.http")

MAX_REQUESTS_PER_CONNECTION = 1000
BACKLOG = 1024  # a burst of connects waits in the kernel's queue, not in SYN retries (1 s each)


def throttle_for(config: object) -> LoginThrottle:
    """A login throttle from the FE's settings (``--login-*``; the defaults when a setting is absent)."""
    free = int(getattr(config, "login_failures_free", FREE_FAILURES))
    return LoginThrottle(
        free=free,
        address_free=max(free, ADDRESS_FREE_FAILURES),
        step=float(getattr(config, "login_delay", STEP_S)),
        max_delay=float(getattr(config, "login_max_delay", MAX_DELAY_S)),
    )


class HttpListener:
    def __init__(
        self,
        config: HttpSettings,
        ops: WebOps,
        throttle: LoginThrottle | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.config = config
        self.ops = ops
        self.throttle = throttle if throttle is not None else throttle_for(config)
        self.admission = admission if admission is not None else Admission()
        self.api = Api(ops, self.throttle, self._pause)
        self.api.extra_metrics = self._metrics
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int | None:
        if self.server is None or not self.server.sockets:
            return None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self.config.http_port:
            self.server = await asyncio.start_server(
                self._serve, self.config.bind_host, self.config.http_port, limit=MAX_HEAD, backlog=BACKLOG
            )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1)

    # ------------------------------------------------------------ connection loop

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str((writer.get_extra_info("peername") or ("",))[0])
        conn = self.admission.admit(peer, writer.transport)
        if conn is None:  # every slot is being served: nothing to close for room
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                try:
                    request = await self._read_request(reader, conn)
                except HttpError as e:
                    self.admission.busy(conn)
                    await write_response(writer, error_response(e), "GET", close=True)
                    return
                if request is None:
                    return
                request.peer, request.conn = peer, conn
                response = await self.api.respond(request)
                await write_response(writer, response, request.method, close=request.close)
                if request.close:
                    return
                self.admission.wait(conn)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("HTTP connection failed")
        finally:
            self.admission.leave(conn)
            if task is not None:
                self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader, conn: Conn) -> Request | None:
        """The next request: its first byte within the idle deadline, the rest within the head deadline
        (both short under pressure); None when the client goes away or stays idle."""
        try:
            async with asyncio.timeout(self.admission.idle_deadline()) as timer:
                conn.timer = timer
                first = await reader.read(1)
        except TimeoutError:
            return None
        finally:
            conn.timer = None
        if not first:
            return None
        try:
            async with asyncio.timeout(self.admission.head_deadline()) as timer:
                conn.timer = timer
                request = await read_head(reader, first)
                if request is None:
                    return None
                self.admission.busy(conn)
                await read_body(reader, request)
                return request
        except TimeoutError:
            raise HttpError(408, "request not received in time") from None
        finally:
            conn.timer = None

    async def _pause(self, request: Request, seconds: float) -> None:
        """A login delay: the connection waits, so it may be closed for room meanwhile (it asks nothing)."""
        conn: Conn | None = request.conn
        if conn is None:
            await asyncio.sleep(seconds)
            return
        self.admission.wait(conn)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.admission.busy(conn)
        if conn.closed:
            raise ConnectionAbortedError("closed for room while its login was delayed")

    def _metrics(self) -> str:
        admission = self.admission
        busy = len(admission.connections) - admission.waiting
        lines = [
            "# HELP fecluster_http_connections Connections to the HTTP port: being served, or waiting (idle).",
            "# TYPE fecluster_http_connections gauge",
            f'fecluster_http_connections{{state="busy"}} {busy}',
            f'fecluster_http_connections{{state="waiting"}} {admission.waiting}',
            "# HELP fecluster_http_closed_for_room_total Waiting HTTP connections closed to admit a newer one.",
            "# TYPE fecluster_http_closed_for_room_total counter",
            f"fecluster_http_closed_for_room_total {admission.evicted}",
            "# HELP fecluster_http_refused_total HTTP connections refused: every slot was being served.",
            "# TYPE fecluster_http_refused_total counter",
            f"fecluster_http_refused_total {admission.refused}",
            "# HELP fecluster_login_delays_total Logins made to wait after failed attempts (throttling).",
            "# TYPE fecluster_login_delays_total counter",
            f"fecluster_login_delays_total {self.throttle.delayed}",
        ]
        return "\n".join(lines) + "\n"
