"""One settings object for an FE node. Every field is a ``fecluster node``
flag (and a ``fecluster up`` flag: the same names, defaults and help) and an
``FECLUSTER_<NAME>`` environment variable."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields


@dataclass
class Config:
    redis_url: str = field(
        default="redis://127.0.0.1:6379/0", metadata={"help": "Redis URL (redis://, rediss://, redis+sentinel://)"}
    )
    redis_cluster: bool = field(default=False, metadata={"help": "the Redis URL points at a Redis Cluster"})
    cluster: str = field(
        default="default", metadata={"help": "cluster name: the namespace of this cluster's Redis keys"}
    )
    bind_host: str = field(default="0.0.0.0", metadata={"help": "address the listeners bind to"})
    advertise_host: str = field(
        default="127.0.0.1", metadata={"help": "address other FEs and the FE column use for this node"}
    )
    mysql_port: int = field(default=9030, metadata={"help": "MySQL protocol port"})
    grpc_port: int = field(default=9020, metadata={"help": "gRPC port (Frontend and Peer services)"})
    http_port: int = field(
        default=8030,
        metadata={"help": "HTTP port (Doris's http_port): sessions page, REST API, /healthz, /metrics; 0: off"},
    )
    cluster_secret: str = field(default="", metadata={"help": "shared secret every Peer call must carry"})
    root_password: str = field(default="", metadata={"help": "root's password when the cluster's user table is new"})
    cloud_cluster: str = field(default="", metadata={"help": "value of the CloudCluster column (empty: NULL)"})
    peer_timeout: float = field(default=2.0, metadata={"help": "deadline of one FE-to-FE call, seconds"})
    lease_ttl: float = field(default=10.0, metadata={"help": "server-id lease TTL, seconds; renewed every TTL/3"})
    shutdown_grace: float = field(default=10.0, metadata={"help": "on SIGTERM, seconds running statements may finish"})
    redis_timeout: float = field(default=1.0, metadata={"help": "deadline of one Redis call, seconds"})
    backend: str = field(
        default="",
        metadata={
            "help": "storage behind the FE: sqlite:///DIR (FEs on a host may share it), or "
            "mysql://user:password@host:port (also mariadb://, ?ssl=1): one MySQL/MariaDB server shared by "
            "every FE; empty: a temporary DIR"
        },
    )
    max_connections: int = field(
        default=1024, metadata={"help": "MySQL and gRPC sessions this FE holds at once (Doris's qe_max_connection)"}
    )
    admin_connections: int = field(
        default=10,
        metadata={
            "help": "sessions beyond --max-connections kept for users with ADMIN_PRIV (MySQL's extra "
            "connection for CONNECTION_ADMIN): an operator gets in when ordinary logins get 1040"
        },
    )
    connect_timeout: float = field(
        default=10.0,
        metadata={"help": "seconds a MySQL client has to log in (2 s while half of --max-handshakes are in progress)"},
    )
    max_handshakes: int = field(
        default=512,
        metadata={
            "help": "MySQL connections still logging in, in all; past it the oldest is cut "
            "(they never count against --max-connections)"
        },
    )
    max_handshakes_per_address: int = field(
        default=64, metadata={"help": "MySQL connections still logging in from one client address; past it: 1040"}
    )
    max_user_running_statements: int = field(
        default=8,
        metadata={
            "help": "statements of one user the FE runs at once (on the embedded backend: worker threads); "
            "more wait their turn; admins are not counted; 0: no limit"
        },
    )
    memory_budget: int = field(
        default=1 << 30,
        metadata={
            "help": "bytes this FE may hold for its sessions' prepared statements and the results it builds "
            "itself while they are sent; past it a statement gets 1041 (Out of memory); 0: unbounded"
        },
    )
    max_running_statements: int = field(
        default=28,
        metadata={
            "help": "statements of all ordinary users the FE runs at once (of the embedded backend's 32 "
            "worker threads: the rest are the admins' and the FE's own); 0: no limit"
        },
    )
    login_failures_free: int = field(
        default=3,
        metadata={
            "help": "failed logins of a user from one client address before each further attempt waits "
            "(MySQL's connection_control_failed_connections_threshold)"
        },
    )
    login_delay: float = field(
        default=1.0,
        metadata={
            "help": "seconds each failure past --login-failures-free adds to the next attempt's wait "
            "(MySQL's connection_control_min_connection_delay); 0: no throttling"
        },
    )
    login_max_delay: float = field(default=120.0, metadata={"help": "the longest wait of one login attempt, seconds"})
    mysql_tls_cert: str = field(
        default="", metadata={"help": "PEM certificate for TLS on the MySQL port (default: --tls-cert)"}
    )
    mysql_tls_key: str = field(default="", metadata={"help": "PEM private key for --mysql-tls-cert"})
    require_secure_transport: bool = field(
        default=False, metadata={"help": "refuse MySQL logins that did not switch to TLS (3159)"}
    )
    tls_cert: str = field(
        default="", metadata={"help": "PEM certificate for the gRPC listener (enables TLS and mTLS between FEs)"}
    )
    tls_key: str = field(default="", metadata={"help": "PEM private key for --tls-cert"})
    tls_ca: str = field(default="", metadata={"help": "PEM CA bundle: peers must present a certificate it signed"})
    log_level: str = field(default="INFO", metadata={"help": "logging level"})

    @property
    def address(self) -> str:
        return f"{self.advertise_host}:{self.grpc_port}"

    @property
    def mysql_address(self) -> str:
        return f"{self.advertise_host}:{self.mysql_port}"


def env_name(name: str) -> str:
    return "FECLUSTER_" + name.upper()


def _parse_bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(
    parser: argparse.ArgumentParser,
    help_for: dict[str, str] | None = None,
    unset: frozenset[str] = frozenset(),
    defaults: dict[str, object] | None = None,
    aliases: dict[str, list[str]] | None = None,
) -> None:
    """Every Config field as ``--flag``, defaulting to its environment variable.
    ``help_for`` rewords a field's help where a command uses it differently;
    the fields in ``unset`` default to empty (the command fills them in);
    ``defaults`` gives a command its own defaults, ``aliases`` more flag names."""
    for f in fields(Config):
        flags = [flag_name(f.name), *(aliases or {}).get(f.name, [])]
        env = os.environ.get(env_name(f.name))
        text = (help_for or {}).get(f.name, f.metadata.get("help", ""))
        base = (defaults or {}).get(f.name, f.default)
        shown = "" if f.name in unset else f"default: {base!r}; "
        help_text = f"{text} ({shown}env {env_name(f.name)})"
        if f.name in unset:
            parser.add_argument(*flags, dest=f.name, default=env or "", help=help_text)
            continue
        if f.type in ("bool", bool):
            default = _parse_bool(env) if env is not None else base
            parser.add_argument(
                *flags, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        parser.add_argument(
            *flags, dest=f.name, type=kind, default=kind(env) if env is not None else base, help=help_text
        )


def from_namespace(ns: argparse.Namespace) -> Config:
    return Config(**{f.name: getattr(ns, f.name) for f in fields(Config)})


def to_flags(config: Config) -> dict[str, object]:
    """The fields that differ from their defaults, for a child ``fecluster node``."""
    return {f.name: getattr(config, f.name) for f in fields(Config) if getattr(config, f.name) != f.default}
