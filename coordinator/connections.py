"""Redis clients from a URL: ``redis://``, ``rediss://`` (TLS) and Sentinel
(``redis+sentinel://[:password@]host:port[,host:port...]/master-name[/db]``)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None, bool]:
    """-> (sentinels, master name, db, password, tls)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        password = unquote(auth.split(":", 1)[1] if ":" in auth else auth) or None
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or item, int(port) if host else 26379))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(f"sentinel URL needs a master name: {url}")
    db = int(path[1]) if len(path) > 1 else 0
    return hosts, path[0], db, password, parts.scheme.startswith("rediss")


def connect(url: str, *, timeout: float, cluster: bool = False) -> aioredis.Redis:
    common = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    scheme = urlsplit(url).scheme
    if scheme in SENTINEL_SCHEMES:
        hosts, master, db, password, tls = parse_sentinel_url(url)
        sentinel = Sentinel(hosts, sentinel_kwargs=common, password=password, db=db, ssl=tls, **common)
        return sentinel.master_for(master)
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, **common)  # type: ignore[return-value]
    return aioredis.from_url(url, health_check_interval=30, **common)
