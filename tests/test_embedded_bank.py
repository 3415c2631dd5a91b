"""The bank workload of issue 22 on the embedded backend: 3 FEs sharing one
data directory, 8 clients moving money between accounts in transactions.
Every conflict must be answered as MySQL answers one (1205 lock wait timeout,
1213 deadlock, the transaction rolled back), the client retries, and at the
end no money was made or lost and no transfer was lost or applied twice."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.support import Cluster, Fe

pytestmark = pytest.mark.slow

ACCOUNTS = 10
START = 1000
CLIENTS = 8
TRANSFERS = 25  # per client
RETRYABLE = (1205, 1213)


def _client(fe: Fe, db: str, number: int, out: dict[str, Any], lock: threading.Lock) -> None:
    rng = random.Random(number)
    conflicts: Counter[int] = Counter()
    done = 0
    conn = fe.connect(database=db, read_timeout=120)
    try:
        cur = conn.cursor()
        for i in range(TRANSFERS):
            transfer = number * 1000 + i  # unique: a transfer applied twice fails its PRIMARY KEY
            a, b = rng.sample(range(1, ACCOUNTS + 1), 2)
            amount = rng.randint(1, 50)
            deadline = time.monotonic() + 60
            while True:
                try:
                    conn.begin()
                    cur.execute("SELECT balance FROM accounts WHERE id = %s", (a,))
                    cur.fetchall()
                    cur.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, a))
                    cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, b))
                    cur.execute("INSERT INTO transfers VALUES (%s, %s, %s, %s)", (transfer, a, b, amount))
                    conn.commit()
                    done += 1
                    break
                except pymysql.err.MySQLError as e:
                    code = e.args[0]
                    if code not in RETRYABLE or time.monotonic() > deadline:
                        raise
                    conflicts[code] += 1
                    with contextlib.suppress(pymysql.err.MySQLError):
                        conn.rollback()
    except BaseException as e:  # noqa: BLE001 - reported to the test
        with lock:
            out.setdefault("errors", []).append(f"client {number}: {e!r}")
    finally:
        conn.close()
        with lock:
            out["done"] = out.get("done", 0) + done
            out.setdefault("conflicts", Counter()).update(conflicts)


def test_bank_transfers_on_three_fes_sharing_a_directory(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    cluster = make_cluster(3, backend=f"sqlite://{tmp_path / 'shared'}")
    fes = cluster.fes
    db = "bank"
    with contextlib.closing(fes[0].connect()) as c, c.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"USE {db}")
        cur.execute("CREATE TABLE accounts (id INT PRIMARY KEY, balance INT NOT NULL)")
        cur.execute("CREATE TABLE transfers (id INT PRIMARY KEY, src INT, dst INT, amount INT)")
        cur.execute("INSERT INTO accounts VALUES " + ", ".join(f"({i}, {START})" for i in range(1, ACCOUNTS + 1)))
    out: dict[str, Any] = {}
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_client, args=(fes[n % 3], db, n, out, lock), daemon=True) for n in range(CLIENTS)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
        assert not t.is_alive(), "a client is still running after 300 s"
    elapsed = time.monotonic() - start
    assert not out.get("errors"), out["errors"]
    assert out["done"] == CLIENTS * TRANSFERS
    with contextlib.closing(fes[1].connect(database=db)) as c, c.cursor() as cur:
        cur.execute("SELECT SUM(balance) FROM accounts")
        assert cur.fetchone()[0] == ACCOUNTS * START  # no money made or lost
        cur.execute("SELECT COUNT(*) FROM transfers")
        assert cur.fetchone()[0] == CLIENTS * TRANSFERS  # none lost, none twice (PRIMARY KEY)
        cur.execute(
            "SELECT a.id, a.balance, COALESCE((SELECT SUM(amount) FROM transfers WHERE dst = a.id), 0)"
            " - COALESCE((SELECT SUM(amount) FROM transfers WHERE src = a.id), 0) FROM accounts a"
        )
        for account, balance, net in cur.fetchall():
            assert balance == START + net, f"account {account}: {balance} != {START} + {net}"
    print(f"bank: {CLIENTS * TRANSFERS} transfers in {elapsed:.1f} s, conflicts {dict(out['conflicts'])}")
