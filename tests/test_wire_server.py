"""frontend.wire.server against real client libraries, over a fake node (no Redis, no backend).

Clients: PyMySQL (pure Python, text protocol), MySQLdb (MariaDB Connector/C),
mysql-connector-python with its C extension (libmysqlclient; server-side
prepared statements) and in pure Python.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import pickle
import shutil
import signal
import ssl
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import mysql.connector
import MySQLdb
import pymysql
import pytest

from coordinator.errors import SqlError
from coordinator.ids import IdsExhausted
from coordinator.users import UserRecord, native_password_hash
from frontend import lexer
from frontend.procs import free_port
from frontend.result import Result, SqlWarning
from frontend.wire import auth
from frontend.wire import handshake as hs
from frontend.wire.packets import frame, split_packets
from frontend.wire.server import MysqlServer

TYPES_ROW = (
    7,
    -1.5,
    Decimal("12.340"),
    "héllo",
    b"\x00\xff",
    dt.date(2024, 2, 29),
    dt.datetime(2024, 1, 2, 3, 4, 5, 6),
    dt.timedelta(hours=-25, seconds=-1),
    None,
)
TYPES_NAMES = ["i", "f", "d", "s", "b", "date", "dt", "t", "n"]


class FakeSession:
    def __init__(self, conn_id: int, user: UserRecord, database: str | None, close: Callable[[], None]) -> None:
        self.id = conn_id
        self.user = user
        self.db = database
        self.killed_by: str | None = None
        self.close_transport = close

    async def execute(self, sql: str, prepared: Any = None, raw: bytes | None = None) -> Result:
        if sql == "SELECT 1":
            return Result(["1"], [(1,)])
        if sql == "TYPES":
            return Result(TYPES_NAMES, [TYPES_ROW])
        if sql == "MANY":
            return Result(["n", "s"], [(i, "x" * 100) for i in range(20000)])
        if sql == "FAIL":
            raise SqlError(1064, "You have an error in your SQL syntax")
        if sql == "BUG":
            raise RuntimeError("boom")
        if sql.upper().startswith("SHOW VARIABLES"):  # what JDBC drivers ask right after connecting
            variables = [("max_allowed_packet", "1048576"), ("system_time_zone", "UTC"), ("time_zone", "SYSTEM")]
            return Result(["Variable_name", "Value"], [*variables, ("auto_increment_increment", "1")])
        if sql.upper().startswith("SET "):
            return Result()
        if sql.startswith("UPDATE"):
            return Result(affected_rows=3, warnings=[SqlWarning("Note", 1, "n")])
        if sql == "WHOAMI":
            return Result(["user", "db"], [(self.user.name, self.db)])
        return Result(["sql"], [(sql,)])

    async def use(self, database: str) -> None:
        if database != "db1":
            raise SqlError(1049, f"Unknown database '{database}'")
        self.db = database

    def kill_query(self, reason: str = "", issued_at_us: int | None = None) -> bool:
        return False

    def relays(self, sql: str) -> bool:
        return False  # the FE answers everything here: no backend

    def split(self, sql: str) -> list[str]:
        return [sql[a:b] for a, b in lexer.split(sql)]

    autocommit = True
    in_transaction = False


class FakeNode:
    def __init__(self) -> None:
        self.accepting = True
        self.exhausted = False
        self.next_id = 100
        self.released: list[int] = []
        self.closed: list[int] = []
        self.sessions: dict[int, FakeSession] = {}
        self.users = {
            "root": UserRecord("root", native_password_hash("pw")),
            "nopw": UserRecord("nopw", ""),
            "other": UserRecord("other", native_password_hash("o")),
        }

    def refusal(self) -> SqlError | None:
        return None if self.accepting else SqlError(1053, "Server shutdown in progress")

    def reserve_id(self) -> int:
        if self.exhausted:
            raise IdsExhausted()
        self.next_id += 1
        return self.next_id

    def release_id(self, conn_id: int) -> None:
        self.released.append(conn_id)

    async def user(self, name: str) -> UserRecord | None:
        return self.users.get(name)

    async def open(
        self,
        conn_id: int,
        user: UserRecord,
        host: str,
        protocol: str,
        close_transport: Callable[[SqlError | None], None],
        *,
        database: str | None = None,
        interactive: bool = False,
        login: Any = None,
    ) -> FakeSession:
        assert protocol == "mysql" and host.startswith("127.0.0.1:")
        if database not in (None, "db1"):
            raise SqlError(1049, f"Unknown database '{database}'")
        session = FakeSession(conn_id, user, database, close_transport)
        self.sessions[conn_id] = session
        return session

    async def close(self, session: FakeSession) -> None:  # type: ignore[override]
        self.closed.append(session.id)

    def answered(self, session: FakeSession) -> None:  # type: ignore[override]
        pass


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wire-pki")
    args = [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "k.pem",
        "-out",
        "c.pem",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
    ]
    subprocess.run(
        ["openssl", *args, "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=d,
        check=True,
        capture_output=True,
    )
    return d


class Listener:
    def __init__(self, server: MysqlServer, node: FakeNode, port: int) -> None:
        self.server, self.node, self.port = server, node, port

    def kw(self, **extra: Any) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "user": "root", "password": "pw", **extra}


@pytest.fixture
async def listener(pki: Path) -> AsyncIterator[Listener]:
    node = FakeNode()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pki / "c.pem"), str(pki / "k.pem"))
    server = MysqlServer(node, ssl_context=context, connect_timeout=2.0, max_allowed_packet=1 << 20)
    port = free_port()
    await server.start("127.0.0.1", port)
    try:
        yield Listener(server, node, port)
    finally:
        server.close()
        server.abort_all()
        await server.wait_closed()


def _pymysql(listener: Listener, **extra: Any) -> pymysql.connections.Connection:  # type: ignore[type-arg]
    return pymysql.connect(**listener.kw(**extra), connect_timeout=5)


# ---------------------------------------------------------------- connection phase


async def test_pymysql_select_1(listener: Listener) -> None:
    def run() -> Any:
        with _pymysql(listener) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchall(), conn.thread_id()

    rows, thread_id = await asyncio.to_thread(run)
    assert rows == ((1,),)
    assert thread_id == listener.node.next_id


@pytest.mark.parametrize(
    ("user", "password", "using"),
    [("root", "bad", "YES"), ("nobody", "pw", "YES"), ("root", "", "NO"), ("nobody", "", "NO")],
)
async def test_access_denied_is_the_same_for_unknown_users(
    listener: Listener, user: str, password: str, using: str
) -> None:
    def run() -> Any:
        with pytest.raises(pymysql.err.OperationalError) as err:
            _pymysql(listener, user=user, password=password)
        return err.value.args

    code, message = await asyncio.to_thread(run)
    assert code == 1045
    assert message == f"Access denied for user '{user}'@'127.0.0.1' (using password: {using})"
    await asyncio.sleep(0.05)
    assert listener.node.released and not listener.node.sessions


async def test_no_password_user_and_database(listener: Listener) -> None:
    def run() -> Any:
        with _pymysql(listener, user="nopw", password="", database="db1") as conn, conn.cursor() as cur:
            cur.execute("WHOAMI")
            return cur.fetchall()

    assert await asyncio.to_thread(run) == (("nopw", "db1"),)

    def bad_db() -> Any:
        with pytest.raises(pymysql.err.OperationalError) as err:
            _pymysql(listener, database="nope")
        return err.value.args[0]

    assert await asyncio.to_thread(bad_db) == 1049


async def test_auth_switch_from_caching_sha2(listener: Listener) -> None:
    def run() -> Any:
        conn = mysql.connector.connect(**listener.kw(), use_pure=True, auth_plugin="caching_sha2_password")
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            return cur.fetchall()
        finally:
            conn.close()

    assert await asyncio.to_thread(run) == [(1,)]


async def test_tls_upgrade(listener: Listener, pki: Path) -> None:
    def run() -> Any:
        ssl_ca = str(pki / "c.pem")
        with _pymysql(listener, ssl={"ca": ssl_ca}) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchall(), conn._sock.version()  # type: ignore[attr-defined]

    rows, version = await asyncio.to_thread(run)
    assert rows == ((1,),) and version.startswith("TLS")


async def test_too_many_connections(listener: Listener) -> None:
    listener.node.exhausted = True

    def run() -> Any:
        with pytest.raises(pymysql.err.OperationalError) as err:
            _pymysql(listener)
        return err.value.args[0]

    assert await asyncio.to_thread(run) == 1040


async def test_handshake_deadline(listener: Listener) -> None:
    listener.server.connect_timeout = 0.2
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    greeting = await reader.read(1024)
    assert greeting[4] == 10
    assert await asyncio.wait_for(reader.read(1024), 2) == b""  # closed by the server, nothing sent
    writer.close()
    await asyncio.sleep(0.01)
    assert listener.node.released == [listener.node.next_id]


async def _raw_login(listener: Listener) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    header = await reader.readexactly(4)
    greeting = await reader.readexactly(int.from_bytes(header[:3], "little"))
    start = greeting.index(b"\x00", 1) + 5
    nonce = greeting[start : start + 8] + greeting[start + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10 :][:12]
    flags = hs.CLIENT_PROTOCOL_41 | hs.CLIENT_SECURE_CONNECTION | hs.CLIENT_PLUGIN_AUTH | hs.CLIENT_DEPRECATE_EOF
    scramble = auth.scramble("pw", nonce)
    response = struct.pack("<IIB23x", flags, 1 << 24, 45) + b"root\x00" + bytes((len(scramble),)) + scramble
    writer.write(frame([response + b"mysql_native_password\x00"], 1)[0])
    ok = await reader.readexactly(11)
    assert ok[4] == 0, ok
    return reader, writer


async def _answer(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(4)
    return await reader.readexactly(int.from_bytes(header[:3], "little"))


async def test_raw_protocol_errors(listener: Listener) -> None:
    reader, writer = await _raw_login(listener)
    writer.write(frame([b"\x03SELECT 1"], 0)[0])
    assert await _answer(reader) == b"\x01"  # one column
    await _answer(reader)  # its definition
    assert await _answer(reader) == b"\x011"
    assert (await _answer(reader))[:3] == b"\xfe\x00\x00"  # DEPRECATE_EOF terminator, 0 affected rows
    writer.write(frame([b"\x17\x01\x00\x00\x00"], 0)[0])  # truncated COM_STMT_EXECUTE
    assert (await _answer(reader))[:3] == b"\xff\x2b\x07"  # 1835 malformed packet
    writer.write(frame([b"\x99"], 0)[0])
    assert (await _answer(reader))[:3] == b"\xff\x17\x04"  # 1047 unknown command
    writer.write(frame([b"\x03"], 0)[0])
    assert (await _answer(reader))[:3] == b"\xff\x29\x04"  # 1065 empty query
    writer.write(frame([b"\x03" + b"x" * (1 << 20)], 0)[0])
    # 1153, then the connection ends (the server reads and drops the rest of the packet, so no reset)
    answer = await _answer(reader)
    assert answer[:3] == b"\xff\x81\x04", answer
    assert answer[3:9] == b"#08S01", answer
    assert b"max_allowed_packet" in answer
    assert await reader.read() == b""
    writer.close()


async def test_packets_out_of_one_write(listener: Listener) -> None:
    """A COM_QUERY answer arrives as one segment: the server writes it at once."""
    reader, writer = await _raw_login(listener)
    writer.write(frame([b"\x03TYPES"], 0)[0])
    await asyncio.sleep(0.1)
    data = await reader.read(65536)
    packets = split_packets(data)
    assert [seq for seq, _ in packets] == list(range(1, len(TYPES_NAMES) + 4))
    writer.close()


# ---------------------------------------------------------------- command phase


async def test_pymysql_commands(listener: Listener) -> None:
    def run() -> Any:
        out: dict[str, Any] = {}
        with _pymysql(listener, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS) as conn:
            with conn.cursor() as cur:
                cur.execute("TYPES")
                out["types"] = cur.fetchall()
                out["desc"] = [d[:2] for d in cur.description]
                out["affected"] = cur.execute("UPDATE t SET a = 1")
                with pytest.raises(pymysql.err.ProgrammingError) as err:
                    cur.execute("FAIL")
                out["err"] = err.value.args[0]
                with pytest.raises(pymysql.err.MySQLError) as err2:
                    cur.execute("BUG")
                out["bug"] = err2.value.args[0]
                cur.execute("SELECT 'a'; SELECT ';'")
                first = cur.fetchall()
                cur.nextset()
                out["multi"] = (first, cur.fetchall())
                cur.execute("SELECT %s", ("it's \\ \x00 \U0001f600",))
                out["escaped"] = cur.fetchall()[0][0]
                cur.execute("MANY")
                out["many"] = len(cur.fetchall())
            conn.ping()
            conn.select_db("db1")
            with pytest.raises(pymysql.err.OperationalError) as err3:
                conn.select_db("nope")
            out["bad_db"] = err3.value.args[0]
        return out

    out = await asyncio.to_thread(run)
    assert out["types"] == (
        (7, -1.5, Decimal("12.340"), "héllo", b"\x00\xff", dt.date(2024, 2, 29), TYPES_ROW[6], TYPES_ROW[7], None),
    )
    type_codes = [8, 5, 246, 253, 252, 10, 12, 11, 6]
    assert out["desc"] == list(zip(TYPES_NAMES, type_codes, strict=True))
    assert out["affected"] == 3
    assert out["err"] == 1064 and out["bug"] == 1105
    assert out["multi"] == ((("SELECT 'a'",),), (("SELECT ';'",),))
    assert out["escaped"] == "SELECT 'it\\'s \\\\ \\0 \U0001f600'"
    assert out["many"] == 20000
    assert out["bad_db"] == 1049


async def test_mariadb_connector_c(listener: Listener) -> None:
    def run() -> Any:
        conn = MySQLdb.connect(host="127.0.0.1", port=listener.port, user="root", password="pw", database="db1")
        try:
            cur = conn.cursor()
            cur.execute("TYPES")
            rows = cur.fetchall()
            cur.execute("SELECT 1")
            return rows, cur.fetchall()
        finally:
            conn.close()

    rows, one = await asyncio.to_thread(run)
    assert one == ((1,),)
    assert rows[0][:4] == (7, -1.5, Decimal("12.340"), "héllo")


PREPARED_CLIENT = """\
import datetime as dt, pickle, sys
from decimal import Decimal
import mysql.connector

port, use_pure = int(sys.argv[1]), sys.argv[2] == "pure"
conn = mysql.connector.connect(host="127.0.0.1", port=port, user="root", password="pw", use_pure=use_pure)
cur = conn.cursor(prepared=True)
out = []
big = 2**63 if use_pure else 2**63 - 1  # the C extension cannot bind an unsigned 64-bit value
for args in [(5, "a'b", None), (-1, "x", b"\\x00\\x01"), (big, "", Decimal("1.5"))]:
    cur.execute("SELECT ?, '?', ?, ? -- ?", args)
    out.append(cur.fetchall()[0][0])
cur.execute("SELECT ?", (dt.datetime(2024, 1, 2, 3, 4, 5),))
out.append(cur.fetchall()[0][0])
cur.execute("TYPES")
out.append(cur.fetchall())
cur.execute("UPDATE t SET a = ?", (1,))
out.append(cur.rowcount)
cur.close()
conn.close()
sys.stdout.buffer.write(pickle.dumps(out))
"""


def _prepared_client(port: int, use_pure: bool) -> Any:
    """Connector/Python in a child process.

    Its C extension (bundled libmysqlclient) crashes now and then with SIGSEGV,
    against MariaDB as much as against us (reproduced with a connect/prepare
    loop), so a crash is retried; any other failure is a failure.
    """
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", PREPARED_CLIENT, str(port), "pure" if use_pure else "cext"],
            capture_output=True,
            timeout=60,
        )
        if done.returncode != -signal.SIGSEGV:
            break
    assert done.returncode == 0, done.stderr[-2000:]
    return pickle.loads(done.stdout)


@pytest.mark.parametrize("use_pure", [False, True])
async def test_server_side_prepared_statements(listener: Listener, use_pure: bool) -> None:
    out = await asyncio.to_thread(_prepared_client, listener.port, use_pure)
    assert out[0] == "SELECT 5, '?', 'a\\'b', NULL -- ?"
    assert out[1] == "SELECT -1, '?', 'x', '\\0\x01' -- ?"  # Connector/Python binds bytes as a string type
    assert out[2] == f"SELECT {2**63 if use_pure else 2**63 - 1}, '?', '', 1.5 -- ?"
    assert out[3] == "SELECT '2024-01-02 03:04:05'"
    types_rows = out[4]
    assert list(types_rows[0][:7]) == [7, -1.5, Decimal("12.340"), "héllo", b"\x00\xff", TYPES_ROW[5], TYPES_ROW[6]]
    assert types_rows[0][8] is None
    assert out[5] == 3


async def test_connector_commands(listener: Listener) -> None:
    def run() -> Any:
        conn = mysql.connector.connect(**listener.kw(), use_pure=True)
        try:
            stats = conn.cmd_statistics()
            conn.cmd_reset_connection()
            conn.cmd_change_user(username="other", password="o", database="db1")
            cur = conn.cursor()
            cur.execute("WHOAMI")
            return stats, cur.fetchall()
        finally:
            conn.close()

    stats, who = await asyncio.to_thread(run)
    assert "Uptime" in stats
    assert who == [("other", "db1")]


async def test_kill_closes_the_connection(listener: Listener) -> None:
    def connect() -> Any:
        return _pymysql(listener)

    conn = await asyncio.to_thread(connect)
    listener.node.sessions[conn.thread_id()].close_transport()
    await asyncio.sleep(0.05)

    def query() -> Any:
        with pytest.raises(pymysql.err.OperationalError) as err:
            conn.cursor().execute("SELECT 1")
        return err.value.args[0]

    assert await asyncio.to_thread(query) in (2013, 2006)
    assert conn.thread_id() in listener.node.closed


@pytest.mark.parametrize("tls", [False, True])
def test_under_uvloop(pki: Path, tls: bool) -> None:
    """Production runs uvloop, whose transports differ from asyncio's (e.g. not asyncio.Transport)."""
    import threading

    import uvloop

    port = free_port()
    ready = threading.Event()
    stop: list[Callable[[], None]] = []

    async def serve() -> None:
        context = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(pki / "c.pem"), str(pki / "k.pem"))
        server = MysqlServer(FakeNode(), ssl_context=context)
        await server.start("127.0.0.1", port)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        stop.append(lambda: loop.call_soon_threadsafe(done.set))
        ready.set()
        await done.wait()
        server.close()
        server.abort_all()
        await server.wait_closed()

    thread = threading.Thread(target=uvloop.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        ssl_arg = {"ssl": {"ca": str(pki / "c.pem")}} if tls else {"ssl_disabled": True}
        with (
            pymysql.connect(host="127.0.0.1", port=port, user="root", password="pw", **ssl_arg) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("TYPES")
            assert cur.fetchall()[0][:4] == (7, -1.5, Decimal("12.340"), "héllo")
            cur.execute("MANY")
            assert len(cur.fetchall()) == 20000
    finally:
        stop[0]()
        thread.join(10)


JDBC_JAR = Path("/usr/share/java/mariadb-java-client.jar")
JDBC_PROGRAM = """\
import java.sql.*;
public class T {
  public static void main(String[] a) throws Exception {
    String url = "jdbc:mariadb://127.0.0.1:" + a[0] + "/?user=root&password=pw&useServerPrepStmts=" + a[1];
    try (Connection c = DriverManager.getConnection(url)) {
      try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("TYPES")) {
        ResultSetMetaData m = r.getMetaData();
        while (r.next())
          for (int i = 1; i <= m.getColumnCount(); i++)
            System.out.println(m.getColumnName(i) + "=" + r.getString(i));
      }
      try (Statement s = c.createStatement()) {
        System.out.println("update count " + s.executeUpdate("UPDATE t SET a=1"));
      }
      try (PreparedStatement p = c.prepareStatement("SELECT ?, ?, ?")) {
        for (int k = 0; k < 2; k++) {
          p.setInt(1, 5 + k); p.setString(2, "it's"); p.setBytes(3, new byte[]{0, 1, (byte) 255});
          try (ResultSet r = p.executeQuery()) { r.next(); System.out.println("prepared: " + r.getString(1)); }
        }
        p.setNull(1, Types.INTEGER);
        p.setTimestamp(2, Timestamp.valueOf("2024-01-02 03:04:05.5"));
        p.setBigDecimal(3, new java.math.BigDecimal("1.50"));
        try (ResultSet r = p.executeQuery()) { r.next(); System.out.println("prepared: " + r.getString(1)); }
      }
      try (PreparedStatement p = c.prepareStatement("TYPES"); ResultSet r = p.executeQuery()) {
        r.next();
        System.out.println("binary: " + r.getLong(1) + " " + r.getDouble(2) + " " + r.getBigDecimal(3) + " "
          + r.getString(4) + " " + r.getDate(6) + " " + r.getTimestamp(7) + " " + r.getString(9));
      }
    }
  }
}
"""


@pytest.mark.skipif(
    not JDBC_JAR.exists() or shutil.which("javac") is None, reason="needs javac and MariaDB Connector/J"
)
@pytest.mark.parametrize("server_prepared", ["true", "false"])
async def test_mariadb_connector_j(listener: Listener, tmp_path: Path, server_prepared: str) -> None:
    (tmp_path / "T.java").write_text(JDBC_PROGRAM)
    classpath = f"{JDBC_JAR}:{tmp_path}"

    def run() -> str:
        subprocess.run(["javac", "-cp", classpath, "T.java"], cwd=tmp_path, check=True, capture_output=True)
        done = subprocess.run(
            ["java", "-cp", classpath, "T", str(listener.port), server_prepared],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    out = await asyncio.to_thread(run)
    assert "d=12.340" in out and "t=-25:00:01" in out and "n=null" in out
    assert "update count 3" in out
    assert "prepared: SELECT 6, 'it\\'s'" in out
    assert "binary: 7 -1.5 12.340 héllo 2024-02-29 2024-01-02 03:04:05.000006 null" in out
