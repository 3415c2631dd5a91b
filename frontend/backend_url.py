"""Which backend an FE runs on, from ``--backend``:

sqlite:///DIR                       the embedded backend (``frontend.sqlite_backend``);
                                    DIR may be shared by several FEs on one host
mysql://user:password@host:port     a MySQL 5.7/8.x or MariaDB 10.x server shared by
mariadb://user:password@host:port   every FE (``frontend.mysql_backend``); ``?ssl=1``
                                    for TLS. The account is the FEs' service account.
mysql://user:password@h1:p1,h2:p2   several hosts of one cluster (Doris/StarRocks FEs,
                                    Galera nodes): each session pinned to one healthy
                                    host; ``?shared_users=0`` when the hosts do not
                                    share their accounts (made on each)
(empty)                             the embedded backend in a temporary directory
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from frontend.backend import Backend
from frontend.mysql_backend import MysqlBackend
from frontend.sqlite_backend import SqliteBackend


def open_backend(url: str, default_dir: Path) -> Backend:
    """The backend ``--backend`` names; ``default_dir`` when it names none."""
    if not url:
        return SqliteBackend(default_dir)
    parts = urlsplit(url)
    if parts.scheme in ("mysql", "mariadb"):
        return MysqlBackend(url)
    if parts.scheme != "sqlite":
        raise ValueError(
            f"unsupported --backend {url!r}: use sqlite:///DIR or mysql://user:password@host:port[,host:port...]"
        )
    if parts.netloc or not parts.path:
        raise ValueError(f"--backend {url!r}: a sqlite URL is sqlite:///absolute/dir (three slashes)")
    return SqliteBackend(Path(parts.path))


def redact_url(url: str) -> str:
    """``url`` without its password (for logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
