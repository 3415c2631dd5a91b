"""The measured operations. Each returns samples in milliseconds, taken with
``time.perf_counter`` around exactly what the row says, with the client's
garbage collector paused so it does not land inside a sample."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import psutil
import pymysql
from pymysql.constants import COMMAND

from bench.servers import Endpoint

INTERRUPTED = 1317
KILL_DEADLINE = 3.0  # seconds a victim may take to return before the KILL counts as missed


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def repeat(op: Callable[[], None], n: int, warmup: int) -> list[float]:
    samples: list[float] = []
    with no_gc():
        for i in range(warmup + n):
            t0 = time.perf_counter()
            op()
            elapsed = time.perf_counter() - t0
            if i >= warmup:
                samples.append(_ms(elapsed))
    return samples


def settle(pids: Sequence[int], idle_percent: float = 5.0, timeout: float = 15.0) -> float:
    """Wait until the given processes use less than ``idle_percent`` of a CPU
    together (measured over 0.25 s); returns the last reading."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
    deadline = time.monotonic() + timeout
    usage = 0.0
    while time.monotonic() < deadline:
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.cpu_percent(None)
        time.sleep(0.25)
        usage = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                usage += p.cpu_percent(None)
        if usage < idle_percent:
            break
    return usage


# ---------------------------------------------------------------- interleaving


Op = Callable[[], float | None]  # one sample in ms, or None to drop it


def interleave(ops: dict[str, Op], n: int, warmup: int, block: int = 1) -> dict[str, list[float]]:
    """Run every op ``block`` times per round, in an order rotated each round, so
    figures compared with each other see the same machine at the same time.
    Blocks longer than 1 keep one server's after-work (a closed connection's
    teardown) out of the other server's samples; the first ``warmup`` runs of
    each op are dropped."""
    names = list(ops)
    samples: dict[str, list[float]] = {name: [] for name in names}
    seen = dict.fromkeys(names, 0)
    with no_gc():
        rounds = 0
        while min(len(v) for v in samples.values()) < n:
            shift = rounds % len(names)
            for name in names[shift:] + names[:shift]:
                for _ in range(block):
                    if len(samples[name]) >= n:
                        break
                    sample = ops[name]()
                    if sample is None:
                        continue
                    seen[name] += 1
                    if seen[name] > warmup:
                        samples[name].append(sample)
            rounds += 1
    return samples


# ---------------------------------------------------------------- connect, SELECT 1


def connect_close(endpoint: Endpoint) -> Op:
    """Open a connection (TCP, handshake, mysql_native_password, PyMySQL's SET NAMES) and close it."""

    def op() -> float:
        t0 = time.perf_counter()
        endpoint.connect().close()
        return _ms(time.perf_counter() - t0)

    return op


def select_1(conn: pymysql.Connection) -> Op:
    cur = conn.cursor()

    def op() -> float:
        t0 = time.perf_counter()
        cur.execute("SELECT 1")
        cur.fetchall()
        return _ms(time.perf_counter() - t0)

    return op


# ---------------------------------------------------------------- KILL QUERY


class Victim:
    """A connection that runs ``SELECT SLEEP(30)`` on demand in its own thread
    and records when (and how) the statement returned."""

    def __init__(self, conn: pymysql.Connection) -> None:
        self.conn = conn
        self.id = conn.thread_id()
        self._go = threading.Event()
        self.done = threading.Event()
        self._stop = False
        self.ended = 0.0
        self.code: int | None = None
        self._thread = threading.Thread(target=self._loop, name=f"victim-{self.id}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        cur = self.conn.cursor()
        while True:
            self._go.wait()
            self._go.clear()
            if self._stop:
                return
            code: int | None = None
            try:
                cur.execute("SELECT SLEEP(30)")
                cur.fetchall()
            except pymysql.MySQLError as e:
                code = int(e.args[0]) if e.args and isinstance(e.args[0], int) else -1
            self.ended = time.perf_counter()
            self.code = code
            self.done.set()

    def start(self) -> None:
        self.done.clear()
        self.code = None
        self._go.set()

    def stop(self) -> None:
        self._stop = True
        self._go.set()
        self._thread.join(5)


class KillOp:
    """One sample: the victim sends ``SELECT SLEEP(30)``; ``delay`` seconds later
    the killer sends ``KILL QUERY <victim>``; the sample is the time from just
    before the killer's send to the moment the victim's execute raised 1317.

    A KILL that reaches the victim before its SLEEP started finds an idle
    session and does nothing: after ``KILL_DEADLINE`` the KILL is sent again
    until the victim is back, and that iteration is dropped (counted in
    ``missed``)."""

    def __init__(self, killer: pymysql.Connection, victim: pymysql.Connection, delay: float) -> None:
        self.victim = Victim(victim)
        self.cur = killer.cursor()
        self.sql = f"KILL QUERY {self.victim.id}"
        self.delay = delay
        self.missed = 0
        self.other_outcomes: dict[str, int] = {}

    def __call__(self) -> float | None:
        victim = self.victim
        victim.start()
        time.sleep(self.delay)  # let the SLEEP reach the server and start
        t0 = time.perf_counter()
        self.cur.execute(self.sql)
        if not victim.done.wait(KILL_DEADLINE):
            self.missed += 1
            while not victim.done.wait(1.0):
                self.cur.execute(self.sql)
            return None
        if victim.code != INTERRUPTED:
            key = str(victim.code)
            self.other_outcomes[key] = self.other_outcomes.get(key, 0) + 1
            return None
        return _ms(victim.ended - t0)

    def close(self) -> None:
        self.cur.close()
        self.victim.stop()


# ---------------------------------------------------------------- SHOW PROCESSLIST


def processlist(conn: pymysql.Connection, n: int, warmup: int) -> tuple[list[float], int]:
    """Send ``SHOW PROCESSLIST`` and read every row (PyMySQL decodes them: that
    client cost is part of the figure, for both servers)."""
    cur = conn.cursor()
    rows = 0

    def op() -> None:
        nonlocal rows
        cur.execute("SHOW PROCESSLIST")
        rows = len(cur.fetchall())

    try:
        return repeat(op, n, warmup), rows
    finally:
        cur.close()


def processlist_where(conn: pymysql.Connection, n: int, warmup: int) -> tuple[list[float], int]:
    """A selective filter: ``information_schema.processlist WHERE ID = <the caller>``
    (each owner evaluates it, so one row crosses the network)."""
    cur = conn.cursor()
    sql = f"SELECT ID, USER, FE FROM information_schema.processlist WHERE ID = {conn.thread_id()}"
    rows = 0

    def op() -> None:
        nonlocal rows
        cur.execute(sql)
        rows = len(cur.fetchall())

    try:
        return repeat(op, n, warmup), rows
    finally:
        cur.close()


def processlist_wire(conn: pymysql.Connection, n: int, warmup: int) -> tuple[list[float], int]:
    """``SHOW PROCESSLIST`` to its last byte, with the packets framed but no
    row decoded: the server's share of the figure without PyMySQL's
    pure-Python row decoding (tens of ms for thousands of rows). Uses
    PyMySQL's packet layer (it does not negotiate CLIENT_DEPRECATE_EOF, so
    the result set ends with a classic EOF packet)."""
    rows = 0

    def op() -> None:
        nonlocal rows
        conn._execute_command(COMMAND.COM_QUERY, "SHOW PROCESSLIST")
        columns = conn._read_packet().read_length_encoded_integer()
        for _ in range(columns):
            conn._read_packet()
        conn._read_packet()  # EOF after the column definitions
        count = 0
        while not conn._read_packet().is_eof_packet():
            count += 1
        rows = count

    return repeat(op, n, warmup), rows


# ---------------------------------------------------------------- idle connections


class IdlePool:
    """Thousands of idle connections held by this process, opened by a thread pool."""

    def __init__(self, workers: int = 16) -> None:
        self.workers = workers
        self.by_endpoint: dict[Endpoint, list[pymysql.Connection]] = {}

    def count(self, endpoint: Endpoint | None = None) -> int:
        if endpoint is not None:
            return len(self.by_endpoint.get(endpoint, []))
        return sum(len(v) for v in self.by_endpoint.values())

    def fill(self, targets: dict[Endpoint, int]) -> float:
        """Open connections until each endpoint holds its target; returns seconds taken."""
        jobs: list[Endpoint] = []
        for endpoint, want in targets.items():
            jobs += [endpoint] * max(0, want - self.count(endpoint))
        order = _round_robin(jobs)  # interleave endpoints so the FEs accept in parallel
        t0 = time.perf_counter()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="idle-open") as pool:
            for endpoint, conn in zip(order, pool.map(_open, order), strict=True):
                self.by_endpoint.setdefault(endpoint, []).append(conn)
        return time.perf_counter() - t0

    def close_all(self) -> None:
        conns = [c for v in self.by_endpoint.values() for c in v]
        self.by_endpoint.clear()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="idle-close") as pool:
            list(pool.map(_close, conns))


def _round_robin(jobs: Sequence[Endpoint]) -> list[Endpoint]:
    groups: dict[Endpoint, int] = {}
    for e in jobs:
        groups[e] = groups.get(e, 0) + 1
    out: list[Endpoint] = []
    while groups:
        for e in list(groups):
            out.append(e)
            groups[e] -= 1
            if groups[e] == 0:
                del groups[e]
    return out


def _open(endpoint: Endpoint) -> pymysql.Connection:
    last: Exception | None = None
    for attempt in range(5):
        try:
            return endpoint.connect(read_timeout=600)
        except pymysql.MySQLError as e:
            last = e
            time.sleep(0.1 * (attempt + 1))
    raise RuntimeError(f"cannot open a connection to {endpoint.name}: {last}")


def _close(conn: pymysql.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


# ---------------------------------------------------------------- prepared statements


POINT_ROWS = 1000


class PreparedPointSelect:
    """``SELECT v FROM <table> WHERE id = ?`` through COM_STMT_PREPARE once and
    COM_STMT_EXECUTE per sample (mysql-connector-python, pure Python, on both
    servers). The table is made on ``setup`` and dropped on ``close``."""

    def __init__(self, endpoint: Endpoint, database: str, table: str) -> None:
        import mysql.connector

        self.table = f"`{database}`.`{table}`"
        self.conn = mysql.connector.connect(
            host=endpoint.host, port=endpoint.port, user=endpoint.user, password=endpoint.password,
            use_pure=True, ssl_disabled=True, autocommit=True,
        )  # fmt: skip
        cur = self.conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        cur.execute(f"DROP TABLE IF EXISTS {self.table}")
        cur.execute(f"CREATE TABLE {self.table} (id INT PRIMARY KEY, v VARCHAR(32))")
        values = ", ".join(f"({i}, 'value-{i}')" for i in range(POINT_ROWS))
        cur.execute(f"INSERT INTO {self.table} VALUES {values}")
        cur.close()
        self.cursor = self.conn.cursor(prepared=True)
        self.sql = f"SELECT v FROM {self.table} WHERE id = %s"
        self.i = 0

    def __call__(self) -> float:
        self.i = (self.i + 7) % POINT_ROWS
        t0 = time.perf_counter()
        self.cursor.execute(self.sql, (self.i,))
        self.cursor.fetchall()
        return _ms(time.perf_counter() - t0)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cursor.close()
            cur = self.conn.cursor()
            cur.execute(f"DROP TABLE IF EXISTS {self.table}")
            self.conn.close()


# ---------------------------------------------------------------- statement timeouts


def timeout_overshoot(conn: pymysql.Connection, limit_ms: int = 200) -> Op:
    """How late a statement ends past its ``max_execution_time``: SLEEP(5)
    under a 200 ms limit ends with 3024; the sample is (elapsed - limit)."""
    cur = conn.cursor()
    cur.execute(f"SET max_execution_time = {limit_ms}")

    def op() -> float:
        t0 = time.perf_counter()
        try:
            cur.execute("SELECT SLEEP(5)")
            cur.fetchall()
        except pymysql.err.MySQLError as e:
            if e.args[0] != 3024:
                raise
        return _ms(time.perf_counter() - t0) - limit_ms

    return op
