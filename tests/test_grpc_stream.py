"""Issue 20, item 6: a statement's rows stream on the gRPC path too (Session and
ExecuteStream answer in several messages), in bounded memory, on both backends."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psutil
import pytest

from frontend.grpc_client import Client, FeError, RowStream
from frontend.wire.answer import RowDecoder
from frontend.wire.packets import frame
from frontend.wire.results import LONGLONG, Column, column_definition
from tests.support import Cluster, Fe, wait_for, wait_running

ROWS = 300_000
BIG = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {n}) SELECT n, n * 2 AS d FROM c"


# ------------------------------------------------------------ the decoder (pure)


def _answer(rows: int, deprecate_eof: bool = True) -> bytes:
    col = Column("n", LONGLONG)
    packets = [b"\x01", column_definition(col)]
    if not deprecate_eof:
        packets.append(b"\xfe\x00\x00\x02\x00")
    packets += [bytes((len(str(i)),)) + str(i).encode() for i in range(rows)]
    packets.append(b"\xfe\x00\x00\x02\x00\x01\x00" if deprecate_eof else b"\xfe\x01\x00\x02\x00")
    return frame(packets, 1)[0]


@pytest.mark.parametrize("deprecate_eof", [True, False])
def test_the_decoder_gives_rows_chunk_by_chunk(deprecate_eof: bool) -> None:
    data = _answer(2500, deprecate_eof)
    # cut at packet boundaries, as the relay yields: about 1 KB per chunk
    cuts, pos = [], 0
    while pos < len(data):
        start = pos
        while pos < len(data) and pos - start < 1024:
            pos += 4 + int.from_bytes(data[pos : pos + 3], "little")
        cuts.append(data[start:pos])
    decoder = RowDecoder(deprecate_eof)
    rows: list[tuple[bytes | None, ...]] = []
    for chunk in cuts:
        got = decoder.feed(chunk)
        assert len(got) < 400  # a chunk's rows, never the result's
        rows += got
    assert decoder.done and decoder.error is None and decoder.warnings == 1
    assert [c.name for c in decoder.columns or []] == ["n"]
    assert rows == [(str(i).encode(),) for i in range(2500)]


def test_the_decoder_reads_an_error_and_an_ok() -> None:
    decoder = RowDecoder()
    decoder.feed(frame([b"\xff\x25\x05#70100Query execution was interrupted"], 1)[0])
    assert decoder.done and decoder.error == (1317, "70100", "Query execution was interrupted")
    decoder = RowDecoder()
    decoder.feed(frame([b"\x00\x03\x07\x02\x00\x00\x00"], 1)[0])
    assert decoder.done and decoder.affected_rows == 3 and decoder.last_insert_id == 7 and decoder.columns is None


# ------------------------------------------------------------ real FEs


# MariaDB's sequence engine (its recursive CTEs stop at 1,000 rows here)
SEQ = "SELECT seq AS n, seq * 2 AS d FROM gstream.seq_1_to_{n}"


@pytest.fixture(params=["sqlite", "mysql"])
def stream_case(request: pytest.FixtureRequest) -> tuple[Fe, str]:
    """An FE and a statement whose rows are (n, 2n) for n = 1 .. {n}."""
    if request.param == "sqlite":
        return request.getfixturevalue("cluster3").fes[0], BIG
    fe: Fe = request.getfixturevalue("mysql_backend_fe")
    fe.query("CREATE DATABASE IF NOT EXISTS gstream")  # the sequence engine's tables live in a database
    return fe, SEQ


def _backend(fe: Fe) -> str:
    return "MariaDB" if any(a.startswith("mysql://") for a in fe.args) else "SQLite"


def _read_all(stream: RowStream, process: psutil.Process) -> tuple[int, int, int]:
    """(rows, messages, peak RSS) of a stream whose rows are (n, 2n), checked as they come."""
    count, peak = 0, process.memory_info().rss
    for batch in stream.batches():
        for n, d in batch:
            count += 1
            assert (n, d) == (count, 2 * count)
        if stream.messages % 50 == 0:
            peak = max(peak, process.memory_info().rss)
    return count, stream.messages, max(peak, process.memory_info().rss)


@pytest.mark.slow  # seconds of real waiting: left to CI, out of the quick loop
def test_a_large_result_streams_over_session_in_bounded_memory(stream_case: tuple[Fe, str]) -> None:
    fe, big = stream_case
    process = psutil.Process(fe.proc.pid)
    with Client(fe.address) as client, client.session() as session:
        assert session.execute("SELECT 1").rows == [(1,)]  # warm: the backend connection opens
        before = process.memory_info().rss
        with session.stream(big.format(n=ROWS)) as stream:
            assert stream.columns == ["n", "d"]
            count, messages, peak = _read_all(stream, process)
        assert count == ROWS and messages > 100
        # assembled by execute for callers that want one result
        whole = session.execute(big.format(n=5000))
        assert len(whole.rows) == 5000 and whole.rows[-1] == (5000, 10000) and whole.columns == ["n", "d"]
        assert session.execute("SELECT 2").rows == [(2,)]  # the session goes on
    grew = (peak - before) >> 20
    print(f"{ROWS} rows over Frontend.Session on {_backend(fe)}: {messages} messages, FE RSS grew by {grew} MB")
    assert peak - before < 40 << 20, f"the FE grew by {grew} MB streaming {ROWS} rows"


@pytest.mark.slow  # seconds of real waiting: left to CI, out of the quick loop
def test_execute_stream_and_the_unary_execute(stream_case: tuple[Fe, str]) -> None:
    fe, big = stream_case
    process = psutil.Process(fe.proc.pid)
    with Client(fe.address) as client:
        before = process.memory_info().rss
        with client.execute_stream(big.format(n=ROWS), timeout=120) as stream:
            count, messages, peak = _read_all(stream, process)
        assert count == ROWS and messages > 100 and stream.query_id
        grew = (peak - before) >> 20
        on = _backend(fe)
        print(f"{ROWS} rows over Frontend.ExecuteStream on {on}: {messages} messages, FE RSS grew by {grew} MB")
        assert peak - before < 40 << 20
        small = client.execute("SELECT 1 AS one")
        assert small.columns == ["one"] and small.rows == [(1,)]
        with pytest.raises(FeError) as e, client.execute_stream("SELECT * FROM no_such_db.t") as stream:
            list(stream)
        assert e.value.code in (1049, 1146, 1142, 1044)


class Reader:
    """Reads a stream in a thread: the rows that came, then how it ended."""

    def __init__(self, open_stream: Any) -> None:
        self.rows = 0
        self.outcome: Any = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(open_stream,), daemon=True)
        self.thread.start()

    def _run(self, open_stream: Any) -> None:
        try:
            with open_stream() as stream:
                for batch in stream.batches():
                    self.rows += len(batch)
                    self.started.set()
            self.outcome = "finished"
        except Exception as e:  # noqa: BLE001
            self.outcome = e
        self.started.set()

    def join(self, timeout: float = 30) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        return self.outcome


HUGE = 3_000_000


def _statement_running(fe: Fe, text: str) -> int:
    def find() -> int:
        for row in fe.query("SHOW FULL PROCESSLIST"):
            if row[7] == "Query" and text in (row[11] or ""):
                return int(row[1])
        return 0

    return wait_for(find, 20, what="the statement in the processlist")


def _kill_query(fe: Fe, conn_id: int) -> None:
    with contextlib.closing(fe.connect()) as mysql, mysql.cursor() as cur:
        cur.execute(f"KILL QUERY {conn_id}")


def test_kill_query_ends_a_streaming_session_statement_from_another_fe(cluster3: Cluster) -> None:
    owner, _, other = cluster3.fes
    with Client(owner.address) as client, client.session() as session:
        reader = Reader(lambda: session.stream(BIG.format(n=HUGE)))
        assert reader.started.wait(30)
        wait_running(other, session.connection_id)
        sent = time.monotonic()
        _kill_query(other, session.connection_id)
        outcome = reader.join()
        assert isinstance(outcome, FeError) and outcome.code == 1317 and outcome.sqlstate == "70100", outcome
        assert time.monotonic() - sent < 5 and 0 < reader.rows < HUGE
        assert session.execute("SELECT 3").rows == [(3,)]


def test_kill_query_ends_a_streaming_statement_over_the_mysql_backend(mysql_backend_fe: Fe) -> None:
    fe = mysql_backend_fe
    fe.query("CREATE DATABASE IF NOT EXISTS gstream")
    sql = "SELECT seq, REPEAT('x', 100) FROM gstream.seq_1_to_30000000 /* stream-kill */"
    with Client(fe.address) as client, client.session() as session:
        reader = Reader(lambda: session.stream(sql))
        assert reader.started.wait(30)
        wait_running(fe, session.connection_id)
        _kill_query(fe, session.connection_id)
        outcome = reader.join()
        assert isinstance(outcome, FeError) and outcome.code == 1317, outcome
        assert "KILL QUERY" in outcome.message or "interrupted" in outcome.message.lower()
        assert 0 < reader.rows < 30_000_000
        assert session.execute("SELECT 3").rows == [(3,)]
        # ExecuteStream the same
        reader = Reader(lambda: client.execute_stream(sql.replace("stream-kill", "stream-kill-2"), timeout=120))
        assert reader.started.wait(30)
        conn_id = _statement_running(fe, "stream-kill-2")
        _kill_query(fe, conn_id)
        outcome = reader.join()
        assert isinstance(outcome, FeError) and outcome.code == 1317, outcome


def test_kill_query_ends_execute_stream_on_the_embedded_backend(cluster3: Cluster) -> None:
    owner, _, other = cluster3.fes
    sql = BIG.format(n=HUGE) + " /* estream-kill */"
    with Client(owner.address) as client:
        reader = Reader(lambda: client.execute_stream(sql, timeout=120))
        assert reader.started.wait(30)
        conn_id = _statement_running(other, "estream-kill")
        _kill_query(other, conn_id)
        outcome = reader.join()
        assert isinstance(outcome, FeError) and outcome.code == 1317, outcome
        assert 0 < reader.rows < HUGE
