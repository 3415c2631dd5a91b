"""Debian's HAProxy in TCP mode, round robin over MySQL ports, as a test fixture."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from frontend import procs

CONFIG = """\
global
    maxconn 2000

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend mysql
    bind 127.0.0.1:{port}
    default_backend fes

backend fes
    balance roundrobin
{servers}
"""


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


class HAProxy:
    """``haproxy -db`` (foreground) with its config in a temp dir; ``.port`` is the balancer."""

    def __init__(self, backends: list[int], timeout: float = 10.0) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise FileNotFoundError("no haproxy binary (Debian: apt-get install haproxy)")
        self.dir = Path(tempfile.mkdtemp(prefix="fecluster-haproxy-"))
        self.backends = backends
        self.port = procs.free_port()
        servers = "\n".join(f"    server fe{i} 127.0.0.1:{p}" for i, p in enumerate(backends, 1))
        self.config = self.dir / "haproxy.cfg"
        self.config.write_text(CONFIG.format(port=self.port, servers=servers))
        self.log = self.dir / "haproxy.log"
        self.proc = procs.spawn([binary, "-db", "-f", str(self.config)], log=self.log)
        try:
            procs.wait_port("127.0.0.1", self.port, timeout, self.proc)
        except (RuntimeError, TimeoutError) as e:
            self.stop()
            raise RuntimeError(f"haproxy did not start: {e}\n{self.log.read_text(errors='replace')}") from e

    def stop(self) -> None:
        procs.stop(self.proc, timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> HAProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
