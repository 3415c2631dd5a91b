"""The client side of the codec (``frontend.wire.client``) against the server side's own encoders."""

from __future__ import annotations

from coordinator.users import native_password_hash
from frontend.wire import client as wc
from frontend.wire import handshake as hs
from frontend.wire import results as rs
from frontend.wire.auth import verify_native


def test_a_greeting_round_trips_and_the_answer_authenticates() -> None:
    nonce = hs.make_nonce()
    greeting = wc.parse_greeting(hs.build_handshake(262145, nonce, status=2))
    assert (greeting.thread_id, greeting.nonce, greeting.plugin) == (262145, nonce, hs.NATIVE_PASSWORD)
    answer = hs.parse_handshake_response(wc.handshake_response(greeting, "svc", "pw"))
    assert answer.user == "svc" and answer.plugin == hs.NATIVE_PASSWORD
    assert answer.capabilities & hs.CLIENT_DEPRECATE_EOF
    assert verify_native(native_password_hash("pw"), nonce, answer.auth_response)
    assert not verify_native(native_password_hash("other"), nonce, answer.auth_response)


def test_ok_err_and_end_packets() -> None:
    ok = wc.parse_ok(rs.ok_packet(300, 70000, rs.SERVER_STATUS_IN_TRANS, 2))
    assert (ok.affected_rows, ok.last_insert_id, ok.status, ok.warnings) == (300, 70000, 1, 2)
    end = rs.result_end(True, rs.SERVER_STATUS_AUTOCOMMIT, 1)
    assert wc.is_end(end) and wc.parse_ok(end).warnings == 1 and wc.parse_ok(end).status == 2
    assert wc.parse_err(rs.err_packet(1317, "Query execution was interrupted", "70100")) == (
        1317,
        "70100",
        "Query execution was interrupted",
    )


def test_column_definitions_and_rows_are_relayed_unchanged() -> None:
    column = rs.Column("amount", rs.NEWDECIMAL, 14, rs.NOT_NULL_FLAG, 63, 3, "t", "t", "db", "amount")
    assert wc.parse_column_definition(rs.column_definition(column)) == column
    long = b"x" * 300
    assert wc.parse_text_row(rs.text_row([b"1.500", None, long]), 3) == (b"1.500", None, long)
