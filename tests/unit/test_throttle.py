"""Wrong tokens counted per address (engine.web.throttle)."""

from __future__ import annotations

from engine.web.throttle import FailedAttempts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_after_the_limit_until_its_oldest_try_is_a_window_old():
    clock = Clock()
    attempts = FailedAttempts(limit=3, window_s=60, clock=clock)
    for _ in range(2):
        attempts.failed("10.0.0.1")
        clock.now += 10
    assert attempts.retry_after("10.0.0.1") is None  # two wrong tries: a third is allowed
    attempts.failed("10.0.0.1")  # at 1020
    assert attempts.retry_after("10.0.0.1") == 40  # the first (at 1000) leaves the window at 1060
    assert attempts.retry_after("10.0.0.2") is None  # another address is not affected
    clock.now = 1060
    assert attempts.retry_after("10.0.0.1") is None  # one try back
    attempts.failed("10.0.0.1")
    assert attempts.retry_after("10.0.0.1") == 10  # the second (at 1010) leaves at 1070


def test_a_refused_address_waits_at_least_a_second_and_is_forgotten_once_quiet():
    clock = Clock()
    attempts = FailedAttempts(limit=1, window_s=5, clock=clock)
    attempts.failed("a")
    clock.now += 4.9
    assert attempts.retry_after("a") == 1
    clock.now += 0.2
    assert attempts.retry_after("a") is None
    assert attempts._tries == {}


def test_the_least_recently_failed_addresses_are_forgotten_beyond_the_cap():
    clock = Clock()
    attempts = FailedAttempts(limit=1, window_s=60, max_addresses=2, clock=clock)
    for address in ("a", "b", "c"):
        attempts.failed(address)
    assert attempts.retry_after("a") is None  # forgotten: memory stays bounded under a flood of addresses
    assert attempts.retry_after("b") is not None and attempts.retry_after("c") is not None
