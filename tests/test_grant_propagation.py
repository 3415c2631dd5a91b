"""A GRANT or REVOKE answered OK on one FE is in force for the very next statement on every
FE (issue 20): a client behind a balancer grants through one FE and queries through another."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable

import pymysql
import pytest

from tests.support import Cluster, fails

ROUNDS = 200


@pytest.mark.slow
def test_grant_and_revoke_count_on_every_fe_for_the_very_next_statement(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    fe1, fe2, fe3 = cluster.fes
    user, db = f"u{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
    fe1.query(f"CREATE USER {user} IDENTIFIED BY 'pw'")
    for fe in (fe2, fe3):  # each FE has its own SQLite: the table is there for the engine
        fe.query(f"CREATE DATABASE {db}")
        fe.query(f"CREATE TABLE {db}.t (a INT)")
        fe.query(f"INSERT INTO {db}.t VALUES (1)")
    with (
        contextlib.closing(fe1.connect()) as admin,
        contextlib.closing(fe2.connect(user, "pw")) as on2,
        contextlib.closing(fe3.connect(user, "pw")) as on3,
    ):
        granted: list[float] = []
        revoked: list[float] = []
        for i in range(ROUNDS):
            reader = on2 if i % 2 else on3
            with admin.cursor() as cur:
                start = time.perf_counter()
                cur.execute(f"GRANT SELECT_PRIV ON {db}.* TO {user}")
                granted.append(time.perf_counter() - start)
            with reader.cursor() as cur:
                try:
                    cur.execute(f"SELECT a FROM {db}.t")
                except pymysql.err.MySQLError as e:
                    raise AssertionError(f"round {i}: refused right after the GRANT answered OK: {e}") from e
                assert cur.fetchall() == ((1,),)
            with admin.cursor() as cur:
                start = time.perf_counter()
                cur.execute(f"REVOKE SELECT_PRIV ON {db}.* FROM {user}")
                revoked.append(time.perf_counter() - start)
            code, message = fails(reader, f"SELECT a FROM {db}.t")
            assert code == 1142, f"round {i}: {code} {message}"
            assert "SELECT command denied" in message
    granted.sort()
    revoked.sort()
    print(
        f"\nGRANT p50 {granted[ROUNDS // 2] * 1000:.1f} ms p99 {granted[ROUNDS * 99 // 100] * 1000:.1f} ms; "
        f"REVOKE p50 {revoked[ROUNDS // 2] * 1000:.1f} ms p99 {revoked[ROUNDS * 99 // 100] * 1000:.1f} ms (3 FEs)"
    )
