"""A private MariaDB server for the tests: the machine's ``mariadbd`` on a free
port with its own temporary datadir and socket (never the shared server on 3306).

Used as the reference every driver cell is checked against, so an assertion is
known to describe real MySQL-protocol behaviour before fecluster must meet it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql

from frontend import procs

MARIADBD_CANDIDATES = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")


def mariadbd_binary() -> str | None:
    for path in (shutil.which("mariadbd"), *MARIADBD_CANDIDATES):
        if path and os.access(path, os.X_OK):
            return path
    return None


def install_db_binary() -> str | None:
    return shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")


class MariaDB:
    """One ``mariadbd`` process.

    ``root`` has no password (as on a fresh fecluster); ``user``/``password`` is
    an extra account with every privilege, created at start. With ``tls`` =
    (cert, key) the server also offers TLS.
    """

    def __init__(
        self,
        user: str = "alice",
        password: str = "s3cret",
        tls: tuple[Path, Path] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        binary, install_db = mariadbd_binary(), install_db_binary()
        if binary is None or install_db is None:
            raise FileNotFoundError("no mariadbd/mariadb-install-db binary (Debian: apt-get install mariadb-server)")
        self.user, self.password = user, password
        self.dir = Path(tempfile.mkdtemp(prefix="fecluster-mariadb-"))
        self.datadir = self.dir / "data"
        self.socket = self.dir / "mariadb.sock"
        self.log = self.dir / "error.log"
        as_root = ["--user=root"] if os.geteuid() == 0 else []
        install = subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *as_root,
            ],
            capture_output=True,
            text=True,
            timeout=startup_timeout,
        )
        if install.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"mariadb-install-db failed:\n{install.stdout}\n{install.stderr}")
        self._args = [
            binary,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.dir / 'mariadbd.pid'}",
            f"--log-error={self.log}",
            f"--tmpdir={self.dir}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--innodb-buffer-pool-size=32M",
            "--max-connections=300",
            *as_root,
        ]
        if tls:
            self._args += [f"--ssl-cert={tls[0]}", f"--ssl-key={tls[1]}"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._start(startup_timeout)
        with contextlib.closing(self._admin()) as conn, conn.cursor() as cur:
            for sql in (
                "CREATE USER IF NOT EXISTS 'root'@'%'",
                "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION",
                f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
                f"GRANT ALL ON *.* TO '{user}'@'%' WITH GRANT OPTION",  # it manages the users' accounts
            ):
                cur.execute(sql)

    def _start(self, timeout: float, attempts: int = 3, port: int = 0) -> None:
        """Start on a free port; a port taken between choosing and binding means: again."""
        for _ in range(attempts):
            self.port = port or procs.free_port()
            self.proc = procs.spawn([*self._args, f"--port={self.port}"], log=self.dir / "stdout.log")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(pymysql.err.MySQLError, OSError):
                    self.connect(connect_timeout=1).close()
                    return
                time.sleep(0.05)
            if self.proc.poll() is None:
                procs.stop(self.proc)
                raise TimeoutError(f"mariadbd did not answer on {self.port} within {timeout}s:\n{self.logs()}")
            if "address already in use" not in self.logs().lower():
                break
        raise RuntimeError(f"mariadbd exited with {self.proc and self.proc.returncode}:\n{self.logs()}")

    def _admin(self) -> pymysql.Connection:
        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True, connect_timeout=5)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        """A SQLAlchemy URL for the password user (PyMySQL)."""
        return f"mysql+pymysql://{self.user}:{self.password}@127.0.0.1:{self.port}/"

    def connect(self, user: str = "root", password: str = "", **kw: Any) -> pymysql.Connection:
        kw.setdefault("ssl_disabled", True)
        kw.setdefault("autocommit", True)
        kw.setdefault("connect_timeout", 10)
        kw.setdefault("read_timeout", 60)
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password, **kw)

    def query(self, sql: str, user: str = "root", password: str = "") -> tuple[tuple[Any, ...], ...]:
        with contextlib.closing(self.connect(user, password)) as c, c.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    def kill_server(self) -> None:
        """Stop the server process, keeping its data and port (``start_again``)."""
        if self.proc is not None:
            procs.stop(self.proc, timeout=30)
            self.proc = None

    def start_again(self, timeout: float = 60.0) -> None:
        """Start the stopped server on the same port and data."""
        self._start(timeout, attempts=1, port=self.port)

    def threads(self, user: str | None = None) -> list[tuple[Any, ...]]:
        """The server's own processlist (id, user, command, time, state, info), other than this query's."""
        sql = (
            "SELECT id, user, command, time, state, info FROM information_schema.processlist "
            "WHERE id <> CONNECTION_ID() AND command <> 'Daemon'"
        )
        if user is not None:
            sql += f" AND user = '{user}'"
        return [tuple(r) for r in self.query(sql)]

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, timeout=30)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> MariaDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
