"""The real-driver matrix of issue 11 (item 6): every real MySQL client against
two FEs behind HAProxy, and the same cells against a real MariaDB server as the
reference (so each assertion is known to describe what MySQL servers do).

Targets
  mariadb    the machine's mariadbd on a free port (tests/mariadb.py); "lb",
             "fe1" and "fe2" are all that one server.
  fecluster  two FEs sharing one Redis, HAProxy (round robin, TCP) in front.
             lb = HAProxy, fe1/fe2 = the FEs' own MySQL ports.

What each cell needs
  login_*, types_select, query_timeout/ctrl_c   only the balancer (constant SELECTs).
  types_table, prepared, txn, sqlalchemy_*      a table: the embedded backend is
      SQLite *per FE*, so these connect to fe1 directly (on MariaDB: the server).
  kill_query, kill_connection                   victim on fe1 running SELECT SLEEP(30),
      killer on fe2 (directly, so the KILL really crosses FEs), found in fe2's
      SHOW FULL PROCESSLIST by its Id and Info. The CLI's kill_query_alias kills
      `SELECT SLEEP(30) AS x` (not the FE's plain-SLEEP path).
  query_timeout (JDBC setQueryTimeout(1), mysql2 `timeout`), ctrl_c (CLI SIGINT)
      through the balancer: the client's own cancel lands on either FE.

Drivers and how they run
  PyMySQL, mysqlclient, mysql-connector (pure) and SQLAlchemy run in this process;
  mysql-connector's C extension in a child process (python -m tests.test_drivers);
  JDBC (tests/drivers/JdbcCheck.java, compiled into a temp dir) and node mysql2
  (tests/drivers/mysql2_check.js) as one process per target that runs every check
  and prints JSON lines, which the cells here assert.

JDBC's DatabaseMetaData (JdbcCheck's "metadata": getCatalogs, getTables, getColumns,
getPrimaryKeys, getIndexInfo, getImportedKeys/getExportedKeys/getCrossReference over a
FOREIGN KEY, getProcedures, getFunctions, as DBeaver calls them) is compared between
the embedded backend and MariaDB cell by cell; the differences that remain are
METADATA_DIFFERENCES, each with its reason.

Expected failures on fecluster would live in KNOWN_FAILURES below, one line per
(driver, check) saying what is left to do; it is empty: every cell passes.
A MariaDB cell never xfails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import pytest

from frontend.config import Config
from tests.haproxy import HAProxy, haproxy_binary
from tests.mariadb import MariaDB
from tests.support import new_cluster, wait_for

pytestmark = pytest.mark.slow

DRIVERS_DIR = Path(__file__).resolve().parent / "drivers"
JDBC_JAR = Path("/usr/share/java/mariadb-java-client.jar")

# (driver, check) -> why it still fails on fecluster (measured 2026-11-27 on the
# project's own wire codec, embedded SQLite backend). Applied to the fecluster
# target only, strictly: a cell that starts passing must leave this table.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

# ---------------------------------------------------------------------------------------------
# The values every driver must round-trip byte for byte.

BLOB = bytes(range(256))
TEXT = "héllo wörld 😀🎉"
EXPECTED: dict[str, Any] = {
    "i": 2147483647,
    "u": 18446744073709551615,
    "d": Decimal("12345678901234567890.0123456789"),
    "f": 3.141592653589793,
    "dt": dt.date(2026, 11, 27),
    "ts": dt.datetime(2026, 11, 27, 14, 26, 3, 123456),
    "tm": dt.timedelta(hours=12, minutes=34, seconds=56),
    "s": TEXT,
    "b": BLOB,
    "n": None,
}
COLUMNS = list(EXPECTED)
# The same values as text, the way MariaDB prints them (BLOB as hex): what the JDBC,
# node and CLI programs report.
EXPECTED_TEXT: dict[str, str | None] = {
    "i": "2147483647",
    "u": "18446744073709551615",
    "d": "12345678901234567890.0123456789",
    "f": "3.141592653589793",
    "dt": "2026-11-27",
    "ts": "2026-11-27 14:26:03.123456",
    "tm": "12:34:56",
    "s": TEXT,
    "b": BLOB.hex(),
    "n": None,
}
SELECT_CONSTANTS = (
    "SELECT 2147483647 AS i, CAST(18446744073709551615 AS UNSIGNED) AS u,"
    " CAST('12345678901234567890.0123456789' AS DECIMAL(30,10)) AS d, CAST(3.141592653589793 AS DOUBLE) AS f,"
    " DATE '2026-11-27' AS dt, CAST('2026-11-27 14:26:03.123456' AS DATETIME(6)) AS ts,"
    f" CAST('12:34:56' AS TIME) AS tm, '{TEXT}' AS s, NULL AS n"
)
SELECT_BLOB = f"SELECT X'{BLOB.hex()}' AS b"  # a cell of its own: a mangled BLOB hides nothing else
SCALARS = [c for c in COLUMNS if c != "b"]
TABLE_DDL = (
    "CREATE TABLE {name} (id INT PRIMARY KEY, i INT, u BIGINT UNSIGNED, d DECIMAL(30,10), f DOUBLE, dt DATE,"
    " ts DATETIME(6), tm TIME, s VARCHAR(64), b BLOB, n INT)"
)


# ---------------------------------------------------------------------------------------------
# Targets


@dataclass
class Target:
    name: str
    lb: int  # the balancer (MariaDB: the server)
    fe1: int  # data statements, KILL victims
    fe2: int  # the killer's FE
    ca: Path
    user: str = "alice"
    password: str = "s3cret"
    database: str = "drivers"

    def admin(self, port: int | None = None, database: str | None = None) -> pymysql.Connection:
        return pymysql.connect(
            host="127.0.0.1",
            port=port or self.fe1,
            user="root",
            password="",
            database=database,
            ssl_disabled=True,
            autocommit=True,
            connect_timeout=10,
            read_timeout=60,
            charset="utf8mb4",
        )


def _fe_tls_flags(pki: Path) -> dict[str, Path]:
    """MySQL TLS on the FE: ``--mysql-tls-cert/--mysql-tls-key`` once the new codec has
    them; until then ``--tls-cert/--tls-key`` (which also put gRPC on TLS, so the
    peers need the CA: mTLS between the FEs, as tests/test_tls.py runs it)."""
    names = Config.__dataclass_fields__
    if "mysql_tls_cert" in names:
        return {"mysql_tls_cert": pki / "server.pem", "mysql_tls_key": pki / "server.key"}
    return {"tls_cert": pki / "server.pem", "tls_key": pki / "server.key", "tls_ca": pki / "ca.pem"}


@pytest.fixture(scope="module")
def mariadb_target(mariadb: MariaDB, server_pki: Path) -> Target:
    with contextlib.closing(mariadb.connect()) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS drivers CHARACTER SET utf8mb4")
    return Target("mariadb", mariadb.port, mariadb.port, mariadb.port, server_pki / "ca.pem")


@pytest.fixture(scope="module")
def fecluster_target(redis_url: str, server_pki: Path) -> Iterator[Target]:
    if haproxy_binary() is None:
        pytest.skip("no haproxy binary (Debian: apt-get install haproxy; .ci/run installs it)")
    # shutdown_grace 1: a statement whose client went away (mysql2's timeout cell) must not
    # hold the teardown for the default 10 s.
    cluster = new_cluster(redis_url, 2, shutdown_grace=1, **_fe_tls_flags(server_pki))
    try:
        fe1, fe2 = cluster.fes
        with HAProxy([fe1.mysql_port, fe2.mysql_port]) as lb:
            target = Target("fecluster", lb.port, fe1.mysql_port, fe2.mysql_port, server_pki / "ca.pem")
            with contextlib.closing(target.admin()) as conn, conn.cursor() as cur:
                cur.execute("CREATE USER IF NOT EXISTS alice IDENTIFIED BY 's3cret'")
                cur.execute("CREATE DATABASE IF NOT EXISTS drivers")
            yield target
    finally:
        cluster.stop()


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Target:
    return request.getfixturevalue(f"{request.param}_target")


def matrix(drivers: list[str], checks: list[str]) -> list[Any]:
    """(target, driver, check) params; fecluster cells listed in KNOWN_FAILURES are xfail."""
    params = []
    for name in ("mariadb", "fecluster"):
        for driver in drivers:
            for check in checks:
                reason = KNOWN_FAILURES.get((driver, check)) if name == "fecluster" else None
                marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
                params.append(pytest.param(name, driver, check, marks=marks, id=f"{name}-{driver}-{check}"))
    return params


def wait_sleeping(target: Target, conn_id: int, timeout: float = 10) -> None:
    """Wait until fe2 (the killer's FE) shows ``conn_id`` running SELECT SLEEP."""

    def running() -> bool:
        with contextlib.closing(target.admin(target.fe2)) as conn, conn.cursor() as cur:
            cur.execute("SHOW FULL PROCESSLIST")
            names = [d[0].lower() for d in cur.description]
            i, info = names.index("id"), names.index("info")
            return any(r[i] == conn_id and "SLEEP" in str(r[info]).upper() for r in cur.fetchall())

    wait_for(running, timeout, interval=0.05, what=f"connection {conn_id} to run SELECT SLEEP(30)")


def kill_from_fe2(target: Target, kind: str, conn_id: int) -> float:
    wait_sleeping(target, conn_id)
    with contextlib.closing(target.admin(target.fe2)) as conn, conn.cursor() as cur:
        sent = time.monotonic()
        cur.execute(f"KILL {kind} {conn_id}")
    return sent


def fresh_table(target: Target, name: str) -> None:
    with contextlib.closing(target.admin(database=target.database)) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.execute(TABLE_DDL.format(name=name))


# ---------------------------------------------------------------------------------------------
# Python DB-API drivers


class PyDriver:
    name = ""
    server_prepared = False  # has server-side prepared statements (COM_STMT_*)
    login_timeout: dict[str, Any] = {}  # bounds a handshake that stalls (TLS cells)

    def connect(self, port: int, user: str = "root", password: str = "", ca: Path | None = None, **kw: Any) -> Any:
        raise NotImplementedError

    def code(self, exc: BaseException) -> int | None:
        args = getattr(exc, "args", ())
        return int(args[0]) if args and isinstance(args[0], int) else None

    def tls_in_use(self, conn: Any) -> bool:
        raise NotImplementedError

    def cursor(self, conn: Any, prepared: bool = False) -> Any:
        return conn.cursor()

    def errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError


class PyMySQLDriver(PyDriver):
    name = "pymysql"
    login_timeout = {"connect_timeout": 5, "read_timeout": 5, "write_timeout": 5}

    def connect(self, port, user="root", password="", ca=None, **kw):  # type: ignore[no-untyped-def]
        tls = {"ssl": {"ca": str(ca)}} if ca else {"ssl_disabled": True}
        return pymysql.connect(
            host="127.0.0.1", port=port, user=user, password=password, charset="utf8mb4",
            **{"connect_timeout": 10, "read_timeout": 60, **tls, **kw},
        )  # fmt: skip

    def tls_in_use(self, conn: Any) -> bool:
        return isinstance(conn._sock, ssl.SSLSocket)

    def errors(self) -> tuple[type[BaseException], ...]:
        return (pymysql.err.MySQLError,)


class MySQLdbDriver(PyDriver):
    name = "mysqlclient"
    login_timeout = {"connect_timeout": 5, "read_timeout": 5}

    def connect(self, port, user="root", password="", ca=None, **kw):  # type: ignore[no-untyped-def]
        MySQLdb = pytest.importorskip("MySQLdb", reason="mysqlclient not installed (needs libmariadb-dev, pkg-config)")

        if "database" in kw:
            kw["db"] = kw.pop("database")
        tls = {"ssl": {"ca": str(ca)}} if ca else {}
        return MySQLdb.connect(
            host="127.0.0.1", port=port, user=user, password=password, charset="utf8mb4",
            **{"connect_timeout": 10, **tls, **kw},
        )  # fmt: skip

    def tls_in_use(self, conn: Any) -> bool:
        # libmariadb's mysqlclient exposes no cipher: ask the server (MySQL and MariaDB answer it).
        cur = conn.cursor()
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cur.fetchone()
        return bool(row and row[1])

    def errors(self) -> tuple[type[BaseException], ...]:
        import MySQLdb

        return (MySQLdb.MySQLError,)


class ConnectorDriver(PyDriver):
    server_prepared = True

    def __init__(self, pure: bool) -> None:
        self.pure = pure
        self.name = "connector-pure" if pure else "connector-c"

    def connect(self, port, user="root", password="", ca=None, **kw):  # type: ignore[no-untyped-def]
        pytest.importorskip("mysql.connector", reason="mysql-connector-python not installed")
        import mysql.connector

        if not self.pure:
            try:
                import _mysql_connector  # noqa: F401
            except ImportError as e:
                pytest.skip(f"mysql-connector-python's C extension does not load: {e}")
        tls = {"ssl_ca": str(ca), "ssl_verify_cert": True} if ca else {"ssl_disabled": True}
        conn = mysql.connector.connect(
            host="127.0.0.1", port=port, user=user, password=password, charset="utf8mb4",
            connection_timeout=10, use_pure=self.pure, **tls, **kw,
        )  # fmt: skip
        from mysql.connector.connection_cext import CMySQLConnection

        assert isinstance(conn, CMySQLConnection) != self.pure, type(conn)
        return conn

    def tls_in_use(self, conn: Any) -> bool:
        return bool(conn.is_secure if self.pure else conn._cmysql.get_ssl_cipher())

    def cursor(self, conn: Any, prepared: bool = False) -> Any:
        return conn.cursor(prepared=prepared)

    def code(self, exc: BaseException) -> int | None:
        return getattr(exc, "errno", None)

    def errors(self) -> tuple[type[BaseException], ...]:
        import mysql.connector

        return (mysql.connector.Error,)


# mysql-connector's C extension (9.x) binds a float for a DOUBLE, 0 for a timedelta and
# reads BIGINT UNSIGNED as signed in the binary protocol: its limits, not the server's.
PREPARED_LIMITS: dict[str, dict[str, str]] = {
    "connector-c": {"u": "18446744073709551615", "f": "3.141592653589793", "tm": "'12:34:56'"},
}

PY_DRIVERS: dict[str, PyDriver] = {
    d.name: d for d in (PyMySQLDriver(), MySQLdbDriver(), ConnectorDriver(pure=True), ConnectorDriver(pure=False))
}
PY_CHECKS = [
    "login_root", "login_password", "login_wrong_password", "login_tls", "types_select", "blob_select", "types_table",
    "prepared", "txn", "kill_query", "kill_connection",
]  # fmt: skip


def same(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Compare column dicts; the message names every column that differs."""
    if actual != expected:
        diff = {k: (actual.get(k, "<missing>"), expected.get(k, "<missing>")) for k in {*actual, *expected}}
        bad = "; ".join(f"{k}: got {a!r:.80} want {e!r:.80}" for k, (a, e) in diff.items() if a != e)
        raise AssertionError(bad)


def normalise(value: Any) -> Any:
    return bytes(value) if isinstance(value, bytearray) else value


def one_row(cur: Any) -> dict[str, Any]:
    row = cur.fetchone()
    names = [d[0] for d in cur.description]
    return {n: normalise(v) for n, v in zip(names, row, strict=True)}


def run_in_thread(fn: Callable[[], Any]) -> Callable[[float], tuple[Any, float]]:
    """Run ``fn`` in a thread; the returned join(timeout) gives (result or exception, end time)."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["out"] = fn()
        except BaseException as e:  # noqa: BLE001 - the outcome is what the test inspects
            box["out"] = e
        box["end"] = time.monotonic()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()

    def join(timeout: float) -> tuple[Any, float]:
        thread.join(timeout)
        assert not thread.is_alive(), f"still running after {timeout}s"
        return box["out"], box["end"]

    return join


def py_check(driver: PyDriver, t: Target, check: str) -> None:
    d = driver
    if check == "login_root":
        with contextlib.closing(d.connect(t.lb)) as conn:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            assert cur.fetchall() in (((1,),), [(1,)])
    elif check == "login_password":
        with contextlib.closing(d.connect(t.lb, t.user, t.password)) as conn:
            cur = conn.cursor()
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone()[0] == f"{t.user}@%"
    elif check == "login_wrong_password":
        with pytest.raises(d.errors()) as e:
            d.connect(t.lb, t.user, "wrong").close()
        assert d.code(e.value) == 1045, e.value
        assert f"Access denied for user '{t.user}'@'" in str(e.value), e.value
    elif check == "login_tls":
        with contextlib.closing(d.connect(t.lb, t.user, t.password, ca=t.ca, **d.login_timeout)) as conn:
            assert d.tls_in_use(conn)
            cur = conn.cursor()
            cur.execute("SELECT 1")
            assert cur.fetchone()[0] == 1
    elif check == "types_select":
        with contextlib.closing(d.connect(t.lb)) as conn:
            cur = conn.cursor()
            cur.execute(SELECT_CONSTANTS)
            same(one_row(cur), {c: EXPECTED[c] for c in SCALARS})
    elif check == "blob_select":
        with contextlib.closing(d.connect(t.lb)) as conn:
            cur = conn.cursor()
            cur.execute(SELECT_BLOB)
            same(one_row(cur), {"b": BLOB})
    elif check in ("types_table", "prepared"):
        # types_table: the driver's own parameter path (client-side interpolation for
        # PyMySQL/mysqlclient); prepared: COM_STMT_PREPARE/EXECUTE, both ways.
        if check == "prepared" and not d.server_prepared:
            pytest.skip(f"{d.name} has no server-side prepared statements (parameters are interpolated)")
        name = f"t_{d.name.replace('-', '_')}_{check}"
        fresh_table(t, name)
        prepared = check == "prepared"
        # Columns the driver itself cannot carry through COM_STMT_* (fails on MariaDB too):
        # those go in as SQL literals and come back through a plain cursor.
        limited = PREPARED_LIMITS.get(d.name, {}) if prepared else {}
        bound = [c for c in COLUMNS if c not in limited]
        with contextlib.closing(d.connect(t.fe1, database=t.database)) as conn:
            cur = d.cursor(conn, prepared)
            marks = ", ".join(["%s"] * (len(bound) + 1))
            literals = "".join(f", {limited[c]}" for c in COLUMNS if c in limited)
            columns = ", ".join(bound + [c for c in COLUMNS if c in limited])
            cur.execute(
                f"INSERT INTO {name} (id, {columns}) VALUES ({marks}{literals})", [1, *(EXPECTED[c] for c in bound)]
            )
            assert cur.rowcount == 1, f"INSERT reported {cur.rowcount} rows"
            conn.commit()
            cur = d.cursor(conn, prepared)
            cur.execute(f"SELECT {', '.join(bound)} FROM {name} WHERE id = %s", [1])
            same(one_row(cur), {c: EXPECTED[c] for c in bound})
            if prepared:
                cur = d.cursor(conn, prepared)
                cur.execute(f"SELECT id FROM {name} WHERE s = %s AND b = %s AND d = %s", [TEXT, BLOB, EXPECTED["d"]])
                same(one_row(cur), {"id": 1})
            if limited:
                cur = conn.cursor()
                cur.execute(f"SELECT {', '.join(limited)} FROM {name}")
                same(one_row(cur), {c: EXPECTED[c] for c in limited})
    elif check == "txn":
        name = f"t_{d.name.replace('-', '_')}_txn"
        fresh_table(t, name)
        with contextlib.closing(d.connect(t.fe1, database=t.database)) as conn:
            conn.autocommit(False) if d.name == "mysqlclient" else setattr(conn, "autocommit", False)
            cur = conn.cursor()
            cur.execute(f"INSERT INTO {name} (id, i) VALUES (1, 1)")
            conn.rollback()
            cur.execute(f"SELECT COUNT(*) FROM {name}")
            assert (n := cur.fetchone()[0]) == 0, f"{n} rows after ROLLBACK"
            cur.execute(f"INSERT INTO {name} (id, i) VALUES (2, 2)")
            with contextlib.closing(t.admin(database=t.database)) as other, other.cursor() as ocur:
                ocur.execute(f"SELECT COUNT(*) FROM {name}")
                assert (n := ocur.fetchone()[0]) == 0, f"another session sees {n} uncommitted rows"
                conn.commit()
                ocur.execute(f"SELECT id FROM {name}")
                assert (rows := ocur.fetchall()) == ((2,),), f"after COMMIT: {rows}"
    elif check in ("kill_query", "kill_connection"):
        kind = check.split("_")[1].upper()
        victim = d.connect(t.fe1)
        try:
            cur = victim.cursor()
            cur.execute("SELECT CONNECTION_ID()")
            conn_id = int(cur.fetchone()[0])

            def sleep() -> Any:
                c = victim.cursor()
                c.execute("SELECT SLEEP(30)")
                return c.fetchall()

            join = run_in_thread(sleep)
            sent = kill_from_fe2(t, kind, conn_id)
            outcome, end = join(15)
            assert isinstance(outcome, d.errors()), outcome
            if kind == "QUERY":
                assert d.code(outcome) == 1317, outcome
                assert end - sent < 3, f"{end - sent:.1f} s from KILL to the error"
                cur = victim.cursor()
                cur.execute("SELECT 2")
                assert cur.fetchone()[0] == 2  # the connection lives on
            else:
                # MariaDB closes the connection at once: the client sees 2013 Lost connection.
                assert d.code(outcome) == 2013, outcome
                assert end - sent < 3, f"{end - sent:.1f} s from KILL to the error"
                with pytest.raises(d.errors()):
                    c = victim.cursor()
                    c.execute("SELECT 3")
                    c.fetchall()
        finally:
            with contextlib.suppress(Exception):
                victim.close()
    else:
        raise AssertionError(check)


# mysql-connector's C extension carries its own libmysqlclient; in one process with
# mysqlclient's libmariadb it corrupted memory now and then (AttributeErrors on fresh
# objects, a segfault at exit). Its cells run in a child process, all checks of a target in one.
ISOLATED = {"connector-c"}


@pytest.fixture(scope="module")
def isolated_results() -> Callable[[str, Target], dict[str, Any]]:
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def results(driver: str, t: Target) -> dict[str, Any]:
        if (driver, t.name) not in cache:
            spec = json.dumps({**t.__dict__, "ca": str(t.ca)})
            proc = subprocess.run(
                [sys.executable, "-m", "tests.test_drivers", driver, spec],
                capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
            )  # fmt: skip
            lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
            cache[(driver, t.name)] = {r["check"]: r for r in lines}
            cache[(driver, t.name)]["_process"] = {"rc": proc.returncode, "stderr": proc.stderr[-3000:]}
        return cache[(driver, t.name)]

    return results


@pytest.mark.parametrize(("target", "driver", "check"), matrix(list(PY_DRIVERS), PY_CHECKS), indirect=["target"])
def test_python_driver(
    target: Target, driver: str, check: str, isolated_results: Callable[[str, Target], dict[str, Any]]
) -> None:
    if driver not in ISOLATED:
        py_check(PY_DRIVERS[driver], target, check)
        return
    results = isolated_results(driver, target)
    assert check in results, f"{check} not reported; child process: {results['_process']}"
    r = results[check]
    if r["outcome"] == "skipped":
        pytest.skip(r["detail"])
    assert r["outcome"] == "passed", r["detail"]


def _child(driver: str, spec: str) -> None:
    """``python -m tests.test_drivers DRIVER TARGET_JSON``: every PY_CHECKS cell of one driver."""
    import traceback

    fields = json.loads(spec)
    t = Target(**{**fields, "ca": Path(fields["ca"])})
    for check in PY_CHECKS:
        try:
            py_check(PY_DRIVERS[driver], t, check)
            out = {"check": check, "outcome": "passed", "detail": ""}
        except pytest.skip.Exception as e:
            out = {"check": check, "outcome": "skipped", "detail": str(e)}
        except BaseException as e:  # noqa: BLE001 - reported to the parent test
            detail = "".join(traceback.format_exception(e)[-3:])
            out = {"check": check, "outcome": "failed", "detail": f"{e!r}\n{detail}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])


# ---------------------------------------------------------------------------------------------
# External programs: one process per target runs all of a driver's checks and prints JSON lines.

EXTERNAL_CHECKS = [
    "login_root", "login_password", "login_wrong_password", "login_tls", "types_select", "blob_select", "prepared",
    "txn",
    "kill_query", "kill_connection", "query_timeout",
]  # fmt: skip


@pytest.fixture(scope="module")
def program_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str, Target], dict[str, Any]]]:
    """Run a driver program once per (driver, target) and keep its results by check."""
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def results(driver: str, t: Target) -> dict[str, Any]:
        key = (driver, t.name)
        if key not in cache:
            args = [str(t.lb), str(t.fe1), str(t.fe2), t.user, t.password, t.database, str(t.ca)]
            command = (jdbc_command(tmp_path_factory) if driver == "jdbc" else node_command()) + args
            proc = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=DRIVERS_DIR)
            lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
            cache[key] = {r["check"]: r for r in lines}
            cache[key]["_process"] = {"rc": proc.returncode, "stderr": proc.stderr[-3000:]}
        return cache[key]

    yield results


_jdbc_classes: list[Path] = []


def jdbc_command(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    if not (shutil.which("javac") and shutil.which("java")):
        pytest.skip("no JDK (javac/java) on PATH")
    if not JDBC_JAR.exists():
        pytest.skip(f"{JDBC_JAR} missing (Debian: apt-get install libmariadb-java; .ci/run installs it)")
    if not _jdbc_classes:
        out = tmp_path_factory.mktemp("jdbc")
        subprocess.run(
            ["javac", "-d", str(out), "-cp", str(JDBC_JAR), str(DRIVERS_DIR / "JdbcCheck.java")],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        _jdbc_classes.append(out)
    return ["java", "-cp", f"{JDBC_JAR}:{_jdbc_classes[0]}", "JdbcCheck"]


def node_command() -> list[str]:
    if not shutil.which("node"):
        pytest.skip("no node on PATH")
    if not (DRIVERS_DIR / "node_modules" / "mysql2").exists():
        pytest.skip("mysql2 not installed: npm ci --prefix tests/drivers (.ci/run does it)")
    return ["node", str(DRIVERS_DIR / "mysql2_check.js")]


def cell(results: dict[str, Any], check: str) -> dict[str, Any]:
    assert check in results, f"{check} not reported; process: {results['_process']}"
    r = results[check]
    assert r["ok"], r
    return r


def expected_text(check: str) -> dict[str, str | None]:
    """What a program reports: types_select the scalars, blob_select the BLOB, prepared all."""
    columns = {"types_select": SCALARS, "blob_select": ["b"]}.get(check, COLUMNS)
    return {c: EXPECTED_TEXT[c] for c in columns}


def jdbc_assert(t: Target, check: str, r: dict[str, Any]) -> None:
    if check == "login_root":
        assert r["value"] == "1"
    elif check == "login_password":
        assert r["current_user"] == f"{t.user}@%"
    elif check == "login_wrong_password":
        assert r.get("code") == 1045 and r["sqlstate"] == "28000", r
        assert f"Access denied for user '{t.user}'@'" in r["message"], r
    elif check == "login_tls":
        assert r["value"] == "1"  # useSsl=true refuses a server without TLS
    elif check in ("types_select", "blob_select", "prepared"):
        values = dict(r["values"])
        values.pop("_types")
        same(values, expected_text(check))
        if check == "prepared":
            assert r["inserted"] == 1 and r["found0"] and r["found1"]
    elif check == "txn":
        assert (r["after_rollback"], r["other_before_commit"], r["other_after_commit"]) == ("0", "0", "1")
    elif check == "kill_query":
        assert r["finished"] and r["code"] == 1317 and r["exception"] == "java.sql.SQLTimeoutException", r
        assert r["seconds"] < 3 and r["after"] == "2"
    elif check == "kill_connection":
        # MariaDB closes at once: Connector/J reports the socket closed, SQLState 08xxx.
        assert r["finished"] and r["exception"] == "java.sql.SQLNonTransientConnectionException", r
        assert r["sqlstate"].startswith("08") and r["seconds"] < 3 and "after_error" in r, r
    elif check == "query_timeout":
        # MariaDB: Connector/J uses max_statement_time (1969); a MySQL server: KILL QUERY on a
        # new connection, which behind the balancer lands on the other FE (1317).
        assert r["exception"] == "java.sql.SQLTimeoutException" and r["code"] in (1317, 1969), r
        assert 0.8 < r["seconds"] < 3 and r["after"] == "1", r
    else:
        raise AssertionError(check)


@pytest.mark.parametrize(("target", "driver", "check"), matrix(["pymysql"], ["tls_repeat"]), indirect=["target"])
def test_tls_handshakes_repeat(target: Target, driver: str, check: str) -> None:
    """30 TLS logins in a row through the balancer: every one must succeed."""
    d = PY_DRIVERS[driver]
    failures = []
    for i in range(30):
        try:
            login = d.connect(target.lb, target.user, target.password, ca=target.ca, **d.login_timeout)
            with contextlib.closing(login) as conn:
                assert d.tls_in_use(conn)
        except d.errors() as e:
            failures.append(f"#{i}: {e!r:.120}")
    assert not failures, f"{len(failures)}/30 TLS logins failed: {failures}"


@pytest.mark.parametrize(("target", "driver", "check"), matrix(["jdbc"], EXTERNAL_CHECKS), indirect=["target"])
def test_jdbc(target: Target, driver: str, check: str, program_results: Callable[..., dict[str, Any]]) -> None:
    jdbc_assert(target, check, cell(program_results(driver, target), check))


def mysql2_assert(t: Target, check: str, r: dict[str, Any]) -> None:
    if check == "login_root":
        assert r["value"] == "1"
    elif check == "login_password":
        assert r["current_user"] == f"{t.user}@%"
    elif check == "login_wrong_password":
        assert (r.get("errno"), r["code"], r["sqlstate"]) == (1045, "ER_ACCESS_DENIED_ERROR", "28000"), r
        assert f"Access denied for user '{t.user}'@'" in r["message"], r
    elif check == "login_tls":
        assert r["encrypted"] and r["value"] == "1"
    elif check in ("types_select", "blob_select", "prepared"):
        same(r["values"], expected_text(check))
        if check == "prepared":
            assert (r["inserted"], r["found0"], r["found1"]) == (1, 1, 1)
    elif check == "txn":
        assert (r["after_rollback"], r["other_before_commit"], r["other_after_commit"]) == ("0", "0", "1")
    elif check == "kill_query":
        assert r["finished"] and (r["errno"], r["code"]) == (1317, "ER_QUERY_INTERRUPTED"), r
        assert r["seconds"] < 3 and r["after"] == "2"
    elif check == "kill_connection":
        # MariaDB closes at once: mysql2 reports the connection lost, fatal.
        assert r["finished"] and r["code"] == "PROTOCOL_CONNECTION_LOST" and r["fatal"], r
        assert r["seconds"] < 3 and "after_error" in r, r
    elif check == "query_timeout":
        assert r["code"] == "PROTOCOL_SEQUENCE_TIMEOUT" and 0.8 < r["seconds"] < 3 and r["after"] == "1", r
        # MariaDB drops the statement of a client that went away (about 4 s here).
        assert r["server_dropped"], r
    else:
        raise AssertionError(check)


@pytest.mark.parametrize(("target", "driver", "check"), matrix(["mysql2"], EXTERNAL_CHECKS), indirect=["target"])
def test_mysql2(target: Target, driver: str, check: str, program_results: Callable[..., dict[str, Any]]) -> None:
    mysql2_assert(target, check, cell(program_results(driver, target), check))


# ---------------------------------------------------------------------------------------------
# The mariadb command-line client

CLI_CHECKS = [
    "login_root", "login_password", "login_wrong_password", "login_tls", "types_select", "blob_select", "txn",
    "kill_query", "kill_query_alias", "kill_connection", "ctrl_c",
]  # fmt: skip


def cli_command(port: int, user: str = "root", password: str = "", *extra: str) -> list[str]:
    binary = shutil.which("mariadb") or shutil.which("mysql")
    if binary is None:
        pytest.skip("no mariadb/mysql client on PATH (Debian: apt-get install mariadb-client)")
    auth = [f"-p{password}"] if password else []
    tls = [] if any(e.startswith("--ssl") for e in extra) else ["--skip-ssl"]
    return [binary, "-h", "127.0.0.1", "-P", str(port), "-u", user, *auth, *tls, "--default-character-set=utf8mb4",
            "--connect-timeout=10", "-N", "-B", *extra]  # fmt: skip


def cli(port: int, sql: str, user: str = "root", password: str = "", *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*cli_command(port, user, password, *extra), "-e", sql], capture_output=True, timeout=60)


def running_statements(t: Target, marker: str, port: int) -> set[int]:
    """Ids of the connections whose running statement contains ``marker``, seen from ``port``."""
    with contextlib.closing(t.admin(port)) as conn, conn.cursor() as cur:
        cur.execute("SHOW FULL PROCESSLIST")
        names = [d[0].lower() for d in cur.description]
        i, info = names.index("id"), names.index("info")
        return {int(r[i]) for r in cur.fetchall() if marker in str(r[info]) and "PROCESSLIST" not in str(r[info])}


def new_statement(t: Target, marker: str, port: int, before: set[int]) -> int:
    """Wait for a connection not in ``before`` to run a statement containing ``marker``
    (an earlier cell's client may have gone away leaving its SLEEP running on the FE)."""
    found = wait_for(lambda: running_statements(t, marker, port) - before, 10, interval=0.05, what=marker)
    assert len(found) == 1, found
    return found.pop()


def cli_check(t: Target, check: str) -> None:
    if check == "login_root":
        r = cli(t.lb, "SELECT 1")
        assert (r.returncode, r.stdout) == (0, b"1\n"), r
    elif check == "login_password":
        r = cli(t.lb, "SELECT CURRENT_USER()", t.user, t.password)
        assert (r.returncode, r.stdout) == (0, f"{t.user}@%\n".encode()), r
    elif check == "login_wrong_password":
        r = cli(t.lb, "SELECT 1", t.user, "wrong")
        assert r.returncode == 1, r
        assert r.stderr.startswith(f"ERROR 1045 (28000): Access denied for user '{t.user}'@'".encode()), r
    elif check == "login_tls":
        r = cli(t.lb, "status", t.user, t.password, "--ssl", f"--ssl-ca={t.ca}", "--ssl-verify-server-cert")
        assert r.returncode == 0 and b"Cipher in use is" in r.stdout, r
    elif check == "types_select":
        r = cli(t.lb, SELECT_CONSTANTS, "root", "", "--binary-as-hex")
        expected = "\t".join("NULL" if v is None else v for v in expected_text(check).values())
        assert (r.returncode, r.stderr) == (0, b"") and r.stdout == (expected + "\n").encode(), r
    elif check == "blob_select":
        r = cli(t.lb, SELECT_BLOB, "root", "", "--binary-as-hex")
        assert (r.returncode, r.stderr, r.stdout) == (0, b"", f"0x{BLOB.hex().upper()}\n".encode()), r
    elif check == "txn":
        sql = (
            "DROP TABLE IF EXISTS t_cli_txn; CREATE TABLE t_cli_txn (id INT PRIMARY KEY);"
            " START TRANSACTION; INSERT INTO t_cli_txn VALUES (1); ROLLBACK; SELECT COUNT(*) FROM t_cli_txn;"
            " START TRANSACTION; INSERT INTO t_cli_txn VALUES (2); COMMIT; SELECT id FROM t_cli_txn"
        )
        r = cli(t.fe1, sql, "root", "", f"--database={t.database}")
        assert (r.returncode, r.stdout) == (0, b"0\n2\n"), r
    elif check in ("kill_query", "kill_query_alias", "kill_connection", "ctrl_c"):
        # The plain statement (cells run one at a time, so it is this client's); the
        # _alias cell kills `SELECT SLEEP(30) AS x`, which the FE does not run as plain SLEEP.
        sql = f"SELECT SLEEP(30) AS cli_{os.getpid()}" if check == "kill_query_alias" else "SELECT SLEEP(30)"
        marker = sql[7:]
        port = t.lb if check == "ctrl_c" else t.fe1
        before = running_statements(t, marker, t.fe2)
        proc = subprocess.Popen([*cli_command(port), "-e", sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # ctrl_c: the client's own KILL QUERY goes over a new connection through the
            # balancer, so it lands on the other FE (round robin) and is routed home.
            conn_id = new_statement(t, marker, t.fe2, before)
            sent = time.monotonic()
            if check == "ctrl_c":
                os.kill(proc.pid, signal.SIGINT)
            else:
                with contextlib.closing(t.admin(t.fe2)) as conn, conn.cursor() as cur:
                    cur.execute(f"KILL {'CONNECTION' if check == 'kill_connection' else 'QUERY'} {conn_id}")
            _, err = proc.communicate(timeout=10)
            took = time.monotonic() - sent
        finally:
            proc.kill()
            proc.wait()
        if check == "kill_connection":
            # MariaDB closes at once: the client reports 2013, nothing else.
            assert b"ERROR 2013 (HY000) at line 1: Lost connection to server during query" in err, err
            assert b"1317" not in err, err
        else:
            assert b"ERROR 1317 (70100) at line 1: Query execution was interrupted" in err, err
        assert took < 3, took
    else:
        raise AssertionError(check)


@pytest.mark.parametrize(("target", "driver", "check"), matrix(["cli"], CLI_CHECKS), indirect=["target"])
def test_cli(target: Target, driver: str, check: str) -> None:
    cli_check(target, check)


# ---------------------------------------------------------------------------------------------
# SQLAlchemy 2 (with PyMySQL): a table, so fe1 directly on fecluster (connect: the balancer).

SA_CHECKS = ["connect", "create_all_reflect", "orm_crud", "rollback"]


def sa_engine(t: Target, port: int, database: str | None) -> Any:
    import sqlalchemy as sa

    db = database or ""
    return sa.create_engine(
        f"mysql+pymysql://root:@127.0.0.1:{port}/{db}?charset=utf8mb4", connect_args={"ssl_disabled": True}
    )


def sa_check(t: Target, check: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql
    from sqlalchemy.orm import DeclarativeBase, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = f"sa_items_{check}"
        # (no Mapped[] annotations: they would need module-level names under `from __future__`)
        id = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
        name = mapped_column(sa.String(64))
        price = mapped_column(sa.Numeric(30, 10))
        at = mapped_column(mysql.DATETIME(fsp=6))
        data = mapped_column(sa.LargeBinary)

    if check == "connect":
        engine = sa_engine(t, t.lb, None)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
            assert engine.dialect.server_version_info >= (5, 7)
        engine.dispose()
        return
    engine = sa_engine(t, t.fe1, t.database)
    try:
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        if check == "create_all_reflect":
            inspector = sa.inspect(engine)
            assert Item.__tablename__ in inspector.get_table_names()
            columns = {c["name"]: c for c in inspector.get_columns(Item.__tablename__)}
            assert list(columns) == ["id", "name", "price", "at", "data"]
            assert isinstance(columns["price"]["type"], sa.Numeric)
            assert (columns["price"]["type"].precision, columns["price"]["type"].scale) == (30, 10)
            assert isinstance(columns["at"]["type"], mysql.DATETIME) and columns["at"]["type"].fsp == 6
            assert isinstance(columns["data"]["type"], sa.LargeBinary)
            assert inspector.get_pk_constraint(Item.__tablename__)["constrained_columns"] == ["id"]
        elif check == "orm_crud":
            with Session(engine) as s:
                s.add(Item(name=TEXT, price=EXPECTED["d"], at=EXPECTED["ts"], data=BLOB))
                s.commit()
            with Session(engine) as s:
                item = s.scalars(sa.select(Item)).one()
                assert (item.name, item.price, item.at, item.data) == (TEXT, EXPECTED["d"], EXPECTED["ts"], BLOB)
                item.price = Decimal("0.0000000001")
                s.commit()  # the UPDATE's matched-row count is checked by the ORM
            with Session(engine) as s:
                item = s.scalars(sa.select(Item)).one()
                assert item.price == Decimal("0.0000000001")
                s.delete(item)
                s.commit()
            with Session(engine) as s:
                assert s.scalars(sa.select(Item)).all() == []
        elif check == "rollback":
            with Session(engine) as s:
                s.add(Item(name="gone", price=Decimal(1), at=EXPECTED["ts"], data=b"\x00"))
                s.flush()
                assert s.scalars(sa.select(sa.func.count()).select_from(Item)).one() == 1
                s.rollback()
                assert s.scalars(sa.select(sa.func.count()).select_from(Item)).one() == 0
        else:
            raise AssertionError(check)
    finally:
        engine.dispose()


@pytest.mark.parametrize(("target", "driver", "check"), matrix(["sqlalchemy"], SA_CHECKS), indirect=["target"])
def test_sqlalchemy(target: Target, driver: str, check: str) -> None:
    sa_check(target, check)


# ---------------------------------------------------------------------------------------------
# JDBC DatabaseMetaData as DBeaver calls it (issue 22): the embedded backend's answers beside
# MariaDB's, call by call, row by row, column by column (JdbcCheck.metadata).

# The differences that remain, each (call, column, whether a pair of values (ours, MariaDB's)
# is it, why). Anything else must be equal.
METADATA_DIFFERENCES: list[tuple[str, str, Callable[[Any, Any, dict[str, Any]], bool], str]] = [
    (
        "getColumns", "COLUMN_DEF", lambda ours, theirs, row: theirs in ("NULL", f"'{ours}'"),
        "MariaDB (10.2.7+) writes COLUMN_DEFAULT as an expression: a string quoted, no default as 'NULL';"
        " the FE answers as MySQL: the bare value, SQL NULL",
    ),
    *(
        (
            "getColumns t_meta_view", column, lambda ours, theirs, row: True,
            "a view's columns are SQLite's pragma_table_info of the view: no NOT NULL (and no default) is"
            " carried over from the table they come from (MariaDB: the base column's)",
        )
        for column in ("NULLABLE", "IS_NULLABLE", "COLUMN_DEF")
    ),
    (
        "getIndexInfo", "CARDINALITY", lambda ours, theirs, row: ours is None and (theirs or "").isdigit(),
        "information_schema.STATISTICS.CARDINALITY is NULL (no statistics kept; MySQL: an estimate)",
    ),
]  # fmt: skip


# Rows MariaDB answers that the embedded backend does not: (call prefix, which rows, why). None left.
METADATA_MISSING_ROWS: list[tuple[str, Callable[[dict[str, Any]], bool], str]] = []


def _missing_row(call: str, row: dict[str, Any]) -> bool:
    return any(call.startswith(c) and which(row) for c, which, _ in METADATA_MISSING_ROWS)


def _known_difference(call: str, column: str, ours: Any, theirs: Any, row: dict[str, Any]) -> bool:
    return any(
        call.startswith(c) and column == col and matches(ours, theirs, row)
        for c, col, matches, _ in METADATA_DIFFERENCES
    )


def metadata_differences(reference: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Where ``ours`` differs from ``reference`` (MariaDB), except the listed differences."""
    found = []
    calls = [k for k in reference if k.startswith("get")]
    assert calls and sorted(calls) == sorted(k for k in ours if k.startswith("get")), (reference, ours)
    for call in calls:
        want, got = reference[call], ours[call]
        found += [
            f"{call}: {row} is listed as missing (METADATA_MISSING_ROWS)" for row in got if _missing_row(call, row)
        ]
        want = [row for row in want if not _missing_row(call, row)]
        if len(want) != len(got):
            found.append(f"{call}: {len(got)} rows, MariaDB {len(want)}: {got} vs {want}")
            continue
        for n, (w, g) in enumerate(zip(want, got, strict=True)):
            for column in dict.fromkeys([*w, *g]):
                mine, theirs = g.get(column, "<absent>"), w.get(column, "<absent>")
                if mine != theirs and not _known_difference(call, column, mine, theirs, w):
                    found.append(f"{call} row {n} {column}: {g.get(column, '<absent>')!r}, MariaDB {w.get(column)!r}")
    return found


def test_jdbc_metadata_as_mariadb(
    mariadb_target: Target, fecluster_target: Target, program_results: Callable[..., dict[str, Any]]
) -> None:
    reference = cell(program_results("jdbc", mariadb_target), "metadata")
    ours = cell(program_results("jdbc", fecluster_target), "metadata")
    # What the reference itself says (so the comparison compares something).
    assert [r["TABLE_NAME"] for r in reference["getTables"]] == ["t_meta_child", "t_meta_parent", "t_meta_view"], (
        reference
    )
    assert [r["COLUMN_NAME"] for r in reference["getPrimaryKeys t_meta_parent"]] == ["id"]
    assert [
        (r["FK_NAME"], r["PKTABLE_NAME"], r["FKCOLUMN_NAME"]) for r in reference["getImportedKeys t_meta_child"]
    ] == [("fk_child_parent", "t_meta_parent", "parent_id")]
    assert [r["FKTABLE_NAME"] for r in reference["getExportedKeys t_meta_parent"]] == ["t_meta_child"]
    assert reference["getCatalogs"] == [{"TABLE_CAT": mariadb_target.database}]
    differences = metadata_differences(reference, ours)
    assert not differences, "\n".join(differences)
