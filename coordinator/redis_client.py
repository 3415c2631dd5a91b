"""The Redis client, made from a URL (``--redis-url``, ``--redis-cluster``).

One server::

    redis://[[user]:password@]host[:port][/db][?option=value...]
    rediss://...                      the same over TLS; options as in redis-py's
                                      from_url: ssl_ca_certs, ssl_cert_reqs, ...
    unix:///path/to/redis.sock[?db=N]

Sentinel (the FE asks the sentinels for the current primary and follows failovers)::

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master-name[/db][?option=value...]
    rediss+sentinel://...             TLS to the sentinels and to the primary

    user/password are the primary's (``requirepass``/ACL); options:
    ``sentinel_username``, ``sentinel_password`` (the sentinels' own auth) and
    ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``,
    ``ssl_check_hostname``. The sentinel port defaults to 26379.

Redis Cluster (``cluster=True``)::

    redis://[[user]:password@]host[:port][,host[:port]...][/0]   (or rediss://)

    every listed node is a startup node (the client learns the rest of the
    topology from them); a Redis Cluster only has db 0. All of a cluster's keys
    share one hash tag (see ``coordinator.registry``), so every multi-key call,
    pipeline and script runs in one slot on one primary.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

# What a Redis call can raise when Redis is slow, gone or restarting: callers
# degrade to their caches on any of these (see coordinator.membership).
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379
REDIS_PORT = 6379
_SSL_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password", *_SSL_OPTIONS)


def _split_netloc(netloc: str, default_port: int) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """``user:pass@h1:p1,h2:p2`` -> (user, password, [(h1, p1), (h2, p2)]); IPv6 hosts in brackets."""
    username = password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        if ":" in auth:
            user, pw = auth.split(":", 1)
            username, password = unquote(user) or None, unquote(pw) or None
        else:
            password = unquote(auth) or None  # redis://secret@host: a bare password
    hosts: list[tuple[str, int]] = []
    for item in filter(None, netloc.split(",")):
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = item.partition(":")
        if not host:
            raise ValueError(f"empty host in {netloc!r}")
        hosts.append((host, int(port) if port else default_port))
    if not hosts:
        raise ValueError("the Redis URL names no host")
    return username, password, hosts


def _options(query: str, allowed: tuple[str, ...], url: str) -> dict[str, str | bool]:
    options: dict[str, str | bool] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in allowed:
            raise ValueError(f"unsupported option {key!r} in {url!r} (supported: {', '.join(allowed)})")
        options[key] = value.lower() in ("1", "true", "yes", "on") if key == "ssl_check_hostname" else value
    return options


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None, bool]:
    """-> (sentinels, master name, db, password, tls)."""
    parts = urlsplit(url)
    _, password, hosts = _split_netloc(parts.netloc, SENTINEL_PORT)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(f"sentinel URL needs a master name: {url}")
    if len(path) > 2:
        raise ValueError(f"sentinel URL path is /master-name[/db]: {url}")
    db = int(path[1]) if len(path) > 1 else 0
    return hosts, unquote(path[0]), db, password, parts.scheme.startswith("rediss")


def _sentinel(url: str, common: dict[str, float]) -> aioredis.Redis:
    parts = urlsplit(url)
    username, _, _ = _split_netloc(parts.netloc, SENTINEL_PORT)
    hosts, master, db, password, tls = parse_sentinel_url(url)
    options = _options(parts.query, _SENTINEL_OPTIONS, url)
    ssl = {k: v for k, v in options.items() if k in _SSL_OPTIONS}
    if ssl and not tls:
        raise ValueError(f"TLS options need the rediss+sentinel:// scheme: {url}")
    tls_kwargs = {"ssl": True, **ssl} if tls else {}
    sentinel_kwargs = {
        **common,
        **tls_kwargs,
        "username": options.get("sentinel_username"),
        "password": options.get("sentinel_password"),
    }
    # Sentinel passes these on to each connection as they are (**kwargs: Any).
    connection: dict[str, Any] = {
        "username": username,
        "password": password,
        "db": db,
        "health_check_interval": 30,
        **tls_kwargs,
        **common,
    }
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **connection)
    # The pool asks the sentinels for the primary on every new connection and
    # drops connections to a primary that was demoted, so a failover costs the
    # callers a few failed calls (which membership rides out), not a restart.
    primary: aioredis.Redis = sentinel.master_for(master)  # redis-py leaves master_for's return unannotated
    return primary


def _cluster(url: str, common: dict[str, float]) -> aioredis.Redis:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    if not hasattr(RedisCluster, "pubsub"):  # redis-py < 8: no asyncio cluster pub/sub
        raise RuntimeError("--redis-cluster needs redis-py >= 8.0 (asyncio Redis Cluster pub/sub)")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"--redis-cluster takes a redis:// or rediss:// URL, not {parts.scheme}://")
    path = parts.path.strip("/")
    if path not in ("", "0"):
        raise ValueError(f"a Redis Cluster only has db 0: {url}")
    auth, _, hostlist = parts.netloc.rpartition("@")
    _, _, hosts = _split_netloc(hostlist, REDIS_PORT)
    host, port = hosts[0]
    first = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    netloc = f"{auth}@{first}" if auth else first
    single = urlunsplit((parts.scheme, netloc, "/0", parts.query, ""))
    others = [ClusterNode(host, port) for host, port in hosts[1:]]
    return RedisCluster.from_url(single, startup_nodes=others or None, **common)  # type: ignore[return-value]


def connect(url: str, *, timeout: float, cluster: bool = False) -> aioredis.Redis:
    """A client for ``url``; with ``cluster`` a RedisCluster (same command surface:
    pipelines, scripts, pub/sub; every key of a fecluster cluster lives in one slot)."""
    common = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    scheme = urlsplit(url).scheme
    if scheme in SENTINEL_SCHEMES:
        if cluster:
            raise ValueError("--redis-cluster and a redis+sentinel:// URL exclude each other")
        return _sentinel(url, common)
    if scheme not in PLAIN_SCHEMES:
        raise ValueError(
            f"unsupported Redis URL scheme {scheme!r}: use redis://, rediss://, unix://, "
            "redis+sentinel:// or rediss+sentinel://"
        )
    if cluster:
        return _cluster(url, common)
    if "," in urlsplit(url).netloc:
        raise ValueError(f"several hosts in a Redis URL need --redis-cluster (or redis+sentinel://): {url}")
    return aioredis.from_url(url, health_check_interval=30, **common)
