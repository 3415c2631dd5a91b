"""frontend.throttle: MySQL connection-control's model of growing delays after failed logins."""

from __future__ import annotations

import logging

import pytest

from frontend.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sequential(throttle: LoginThrottle, clock: Clock, user: str, address: str, n: int) -> list[float]:
    """n wrong passwords one after another, each after its delay: the delays seen."""
    delays = []
    for _ in range(n):
        delay = throttle.delay_for(user, address)
        delays.append(delay)
        clock.now += delay
        throttle.failed(user, address)
    return delays


def test_three_free_failures_then_one_second_more_per_failure_up_to_two_minutes() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    delays = sequential(throttle, clock, "root", "10.0.0.9", 130)
    assert delays[:3] == [0.0, 0.0, 0.0]
    assert delays[3:8] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert max(delays) == 120.0 and delays[-1] == 120.0
    # 10,000 guesses from one address would cost far more than 10 minutes: 130 already cost
    assert sum(delays) > 600


def test_a_success_forgets_the_pair_and_a_quiet_period_forgets_everything() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    sequential(throttle, clock, "bob", "10.0.0.9", 5)
    assert throttle.delay_for("bob", "10.0.0.9") > 0
    throttle.succeeded("bob", "10.0.0.9")
    assert throttle.delay_for("bob", "10.0.0.9") == 0.0
    sequential(throttle, clock, "eve", "10.0.0.9", 6)
    clock.now += 10_000  # the quiet period passes
    assert throttle.delay_for("eve", "10.0.0.9") == 0.0 and throttle.failures("eve", "10.0.0.9") == 0


def test_other_addresses_and_users_are_not_delayed() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    sequential(throttle, clock, "root", "10.0.0.9", 10)
    assert throttle.delay_for("root", "10.0.0.9") > 0
    assert throttle.delay_for("root", "10.0.0.10") == 0.0  # root logs in from elsewhere
    assert throttle.delay_for("alice", "10.0.0.9") == 0.0  # below the address's own allowance


def test_rotating_user_names_from_one_address_still_costs() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    delays = []
    for i in range(110):
        delay = throttle.delay_for(f"user{i}", "10.0.0.9")
        delays.append(delay)
        clock.now += delay
        throttle.failed(f"user{i}", "10.0.0.9")
    assert delays[:100] == [0.0] * 100
    assert delays[100:103] == [1.0, 2.0, 3.0]


def test_concurrent_attempts_line_up_instead_of_multiplying_the_rate() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    sequential(throttle, clock, "root", "10.0.0.9", 4)  # the next attempt waits 2 s
    waits = [throttle.delay_for("root", "10.0.0.9") for _ in range(5)]
    assert waits == [2.0, 4.0, 6.0, 8.0, 10.0]
    many = [throttle.delay_for("root", "10.0.0.9") for _ in range(200)]
    assert max(many) == 120.0  # never beyond the longest delay


def test_an_unknown_user_costs_what_a_wrong_password_does() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    known = sequential(throttle, clock, "root", "10.0.0.1", 8)
    unknown = sequential(throttle, clock, "nobody-" + "x" * 10, "10.0.0.2", 8)
    assert known == unknown


def test_memory_is_bounded_and_names_are_cut() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock, capacity=100)
    for i in range(5000):
        throttle.failed(f"u{i}" + "x" * 10_000, f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100
    assert all(len(key[0] or "") <= 128 for key in throttle._entries)


def test_the_threshold_is_logged_for_an_operator(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    with caplog.at_level(logging.WARNING, logger="fecluster.auth"):
        sequential(throttle, clock, "root", "192.0.2.7", 8)
    lines = [r.getMessage() for r in caplog.records if r.name == "fecluster.auth"]
    first = "3 failed logins for user 'root' from 192.0.2.7; delaying each further attempt by 1 s (up to 120 s)"
    assert lines[0] == first
    assert len(lines) == 3  # 3, then 4 and 8 (each doubling), not one per failure
