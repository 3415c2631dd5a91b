"""The id layout at its edges (pure logic)."""

from __future__ import annotations

import re

import pytest

from coordinator import ids


def test_layout_round_trips_at_the_edges() -> None:
    for sid in (1, 2, 1023, ids.MAX_SERVER_ID):
        for local in (1, 2, ids.MAX_LOCAL - 1, ids.MAX_LOCAL):
            conn_id = ids.make_connection_id(sid, local)
            assert 0 < conn_id < 2**31  # positive even for clients reading a signed int
            assert ids.server_id_of(conn_id) == sid
            assert conn_id & ids.MAX_LOCAL == local


def test_max_id_fits_the_handshake_field() -> None:
    assert ids.MAX_CONNECTION_ID == ids.make_connection_id(ids.MAX_SERVER_ID, ids.MAX_LOCAL) == 2**31 - 1


@pytest.mark.parametrize("sid,local", [(0, 1), (ids.MAX_SERVER_ID + 1, 1), (1, 0), (1, ids.MAX_LOCAL + 1), (-1, 5)])
def test_out_of_range_parts_are_refused(sid: int, local: int) -> None:
    with pytest.raises(ValueError):
        ids.make_connection_id(sid, local)


@pytest.mark.parametrize("value", [0, -1, 1, ids.MAX_LOCAL, 1 << 20, 2**31, 2**32 - 1, 2**32, 99999999999])
def test_values_that_are_not_our_ids_have_no_owner(value: int) -> None:
    # 1..MAX_LOCAL has server id 0; 1<<20 has local 0; >= 2**31 sets the reserved bit.
    assert ids.server_id_of(value) is None


def test_allocator_skips_ids_in_use_and_wraps() -> None:
    alloc = ids.ConnectionIds(7)
    first = alloc.allocate(set())
    assert ids.server_id_of(first) == 7 and first & ids.MAX_LOCAL == 1
    taken = {ids.make_connection_id(7, 2), ids.make_connection_id(7, 3)}
    assert alloc.allocate(taken) == ids.make_connection_id(7, 4)
    alloc._seq = iter([ids.MAX_LOCAL, ids.MAX_LOCAL + 1])  # type: ignore[assignment]
    assert alloc.allocate(set()) & ids.MAX_LOCAL == ids.MAX_LOCAL
    assert alloc.allocate(set()) & ids.MAX_LOCAL == 1  # wrapped, never 0


def test_allocator_reports_exhaustion() -> None:
    alloc = ids.ConnectionIds(3)

    class Everything:
        def __contains__(self, item: object) -> bool:
            return True

    with pytest.raises(ids.IdsExhausted):
        alloc.allocate(Everything())


def test_query_ids_are_doris_shaped_unique_and_routable() -> None:
    q = ids.QueryIds(ids.MAX_SERVER_ID)
    seen = {q.next() for _ in range(10_000)}
    assert len(seen) == 10_000
    for qid in list(seen)[:50]:
        assert re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{16}", qid)
        assert ids.is_query_id(qid)
        assert ids.server_id_of_query(qid) == ids.MAX_SERVER_ID
    assert ids.server_id_of_query(ids.QueryIds(1).next()) == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "0000000000000000-0000000000000000",
        "ABCDEF0123456789-0123456789abcdef",
        "1-2",
        "g" * 16 + "-" + "0" * 16,
    ],
)
def test_bad_query_ids_route_nowhere(text: str) -> None:
    assert ids.server_id_of_query(text) is None
