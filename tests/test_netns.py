"""Network faults between hosts in namespaces (issue 16): the lab itself, and the fenced lease."""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.support import Running, error_code, fails, wait_running

pytestmark = pytest.mark.slow


def test_lab_hosts_cut_heal_and_delay(net_cluster, netlab) -> None:  # type: ignore[no-untyped-def]
    cluster = net_cluster(2, lease_ttl=3.0, peer_timeout=1.0)
    fe1, fe2 = cluster.fes
    with contextlib.closing(fe1.connect()) as c1, contextlib.closing(fe2.connect()) as c2:
        assert {r[12] for r in fe1.query("SHOW PROCESSLIST")} == {fe1.address, fe2.address}
        outcome, _ = (Running(c1, "SELECT SLEEP(30)"), None)
        wait_running(fe2, c1.thread_id())
        with c2.cursor() as cur:
            cur.execute(f"KILL QUERY {c1.thread_id()}")
        assert error_code(outcome.join()) == 1317
        netlab.cut("fe1", "fe2")
        start = time.monotonic()
        code, message = fails(c2, f"KILL QUERY {c1.thread_id()}")
        assert code == 1105 and fe1.address in message, message
        assert time.monotonic() - start < 1.0 + 0.5
        netlab.heal("fe1", "fe2")
        assert netlab.faults() == []
        netlab.set_delay("fe1", 0.1)  # fe2 -> fe1 calls: +200 ms round trip
        start = time.monotonic()
        with c2.cursor() as cur:
            cur.execute("SHOW PROCESSLIST")
        took = time.monotonic() - start
        assert 0.2 <= took < 1.0, took
