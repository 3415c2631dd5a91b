"""Which backend an FE runs on, from ``--backend``:

sqlite:///DIR    the embedded backend (``frontend.sqlite_backend``); DIR
                 may be shared by several FEs on one host
(empty)          the embedded backend in a temporary directory
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from frontend.backend import Backend
from frontend.sqlite_backend import SqliteBackend


def open_backend(url: str, default_dir: Path) -> Backend:
    """The backend ``--backend`` names; ``default_dir`` when it names none."""
    if not url:
        return SqliteBackend(default_dir)
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ValueError(f"unsupported --backend {url!r}: use sqlite:///DIR")
    if parts.netloc or not parts.path:
        raise ValueError(f"--backend {url!r}: a sqlite URL is sqlite:///absolute/dir (three slashes)")
    return SqliteBackend(Path(parts.path))
