from __future__ import annotations

from contextlib import ExitStack

import pytest

from tracker.errors import ConfigError, RateLimited
from tracker.ratelimit import OpenRequests, ProxyCheck, RateLimiter, client_key


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spend(limiter: RateLimiter, key: str) -> int:
    """How many requests `key` gets through before the first refusal (bounded)."""
    for allowed in range(10_000):
        try:
            limiter.check(key)
        except RateLimited:
            return allowed
    raise AssertionError("never limited")


def test_a_new_key_may_spend_its_whole_burst_at_once() -> None:
    clock = Clock()
    limiter = RateLimiter(5, burst=8, clock=clock)
    assert spend(limiter, "1.2.3.4") == 8


def test_the_burst_defaults_to_twice_the_rate_and_at_least_two() -> None:
    assert spend(RateLimiter(50, clock=Clock()), "k") == 100
    assert spend(RateLimiter(0.1, clock=Clock()), "k") == 2


def test_tokens_refill_at_the_rate() -> None:
    clock = Clock()  # steps are powers of two so that the float sums are exact
    limiter = RateLimiter(8, burst=16, clock=clock)
    assert spend(limiter, "k") == 16
    clock.now += 0.5
    assert spend(limiter, "k") == 4
    clock.now += 0.0625
    assert spend(limiter, "k") == 0
    clock.now += 0.0625
    assert spend(limiter, "k") == 1


def test_refill_stops_at_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(10, burst=3, clock=clock)
    assert spend(limiter, "k") == 3
    clock.now += 3600
    assert spend(limiter, "k") == 3


def test_a_steady_client_at_the_rate_is_never_limited() -> None:
    clock = Clock()
    limiter = RateLimiter(8, burst=1, clock=clock)
    for _ in range(1000):
        limiter.check("k")
        clock.now += 0.125


def test_retry_after_is_the_time_until_one_token_is_back() -> None:
    clock = Clock()
    limiter = RateLimiter(4, burst=2, clock=clock)
    assert spend(limiter, "k") == 2
    with pytest.raises(RateLimited) as caught:
        limiter.check("k")
    assert caught.value.retry_after_s == 0.25
    clock.now += 0.125
    with pytest.raises(RateLimited) as caught:
        limiter.check("k")
    assert caught.value.retry_after_s == 0.125
    clock.now += caught.value.retry_after_s
    limiter.check("k")


def test_check_left_refuses_an_exhausted_key_as_check_would_and_spends_nothing() -> None:
    """For limits on failures: a request is refused before it runs when its key has no
    failure left, and charged only if it fails."""
    clock = Clock()
    limiter = RateLimiter(4, burst=2, clock=clock)
    for _ in range(5):
        limiter.check_left("k")  # a new key, or one with tokens: passes, spends nothing
    assert spend(limiter, "k") == 2
    with pytest.raises(RateLimited) as caught:
        limiter.check_left("k")
    assert caught.value.retry_after_s == 0.25
    clock.now += 0.25
    limiter.check_left("k")
    limiter.check("k")


def test_an_exhausted_key_does_not_limit_another_key() -> None:
    clock = Clock()
    limiter = RateLimiter(1, burst=2, clock=clock)
    assert spend(limiter, "10.0.0.1") == 2
    assert spend(limiter, "10.0.0.2") == 2
    with pytest.raises(RateLimited):
        limiter.check("10.0.0.1")


def test_a_rate_of_zero_disables_limiting_and_keeps_nothing() -> None:
    limiter = RateLimiter(0, clock=Clock())
    for _ in range(10_000):
        limiter.check("k")
    assert len(limiter) == 0


def test_memory_stays_bounded_under_a_flood_of_distinct_keys() -> None:
    clock = Clock()
    limiter = RateLimiter(1, burst=2, max_keys=1000, clock=clock)
    for i in range(200_000):
        limiter.check(f"k{i}")
        if i % 10_007 == 0:
            assert len(limiter) <= 1000
    assert len(limiter) == 1000


def test_eviction_forgets_the_least_recently_used_keys_first() -> None:
    clock = Clock()
    limiter = RateLimiter(1, burst=1, max_keys=100, clock=clock)
    limiter.check("busy")
    for i in range(1000):
        limiter.check(f"k{i}")
        if i % 50 == 0:
            with pytest.raises(RateLimited):
                limiter.check("busy")  # a refused request also counts as use
    assert len(limiter) == 100
    with pytest.raises(RateLimited):
        limiter.check("busy")


def test_refilled_buckets_are_dropped_as_traffic_moves_on() -> None:
    clock = Clock()
    limiter = RateLimiter(10, burst=2, max_keys=1000, clock=clock)
    for i in range(500):
        limiter.check(f"old{i}")
    assert len(limiter) == 500
    clock.now += 1  # every old bucket is full again: remembering it is pointless
    for _ in range(500):
        clock.now += 0.1
        limiter.check("steady")
    assert len(limiter) == 1


@pytest.mark.parametrize(
    ("rate", "burst", "max_keys"),
    [(-1, None, 10), (float("nan"), None, 10), (1, 0.5, 10), (1, None, 0)],
)
def test_nonsense_settings_are_configuration_errors(
    rate: float, burst: float | None, max_keys: int
) -> None:
    with pytest.raises(ConfigError):
        RateLimiter(rate, burst, max_keys=max_keys)


@pytest.mark.parametrize(("wait_s", "whole_s"), [(0.04, 1), (1.0, 1), (1.2, 2), (9.99, 10)])
def test_the_error_says_the_whole_seconds_a_retry_after_header_can_say(
    wait_s: float, whole_s: int
) -> None:
    error = RateLimited(wait_s)
    assert error.retry_after_s == wait_s
    assert error.retry_after_whole_s == whole_s
    assert str(error) == f"rate limited; retry after {whole_s} s"


# -- open requests ------------------------------------------------------------------------------


def test_a_key_may_hold_its_limit_of_open_requests_and_the_next_is_refused() -> None:
    open_requests = OpenRequests(3)
    with ExitStack() as held:
        for _ in range(3):
            held.enter_context(open_requests.hold("a"))
        with pytest.raises(RateLimited) as refused:
            open_requests.hold("a")
        assert refused.value.retry_after_whole_s == 1
        assert open_requests.open("a") == 3
        # Another key is not limited by this one's open requests.
        with open_requests.hold("b"):
            assert open_requests.open("b") == 1
    assert open_requests.open("a") == 0
    with open_requests.hold("a"):
        assert open_requests.open("a") == 1


def test_an_open_request_is_released_however_its_block_ends() -> None:
    open_requests = OpenRequests(1)
    for ending in (ValueError("bad body"), KeyboardInterrupt()):
        with pytest.raises(type(ending)), open_requests.hold("a"):
            raise ending
        assert open_requests.open("a") == 0
    with open_requests.hold("a"):
        pass
    assert open_requests.open("a") == 0


def test_only_keys_with_a_request_open_are_kept() -> None:
    open_requests = OpenRequests(2)
    for key in range(1000):
        with open_requests.hold(str(key)):
            assert len(open_requests) == 1
    assert len(open_requests) == 0


def test_an_open_request_limit_of_zero_counts_nothing() -> None:
    open_requests = OpenRequests(0)
    with ExitStack() as held:
        for _ in range(1000):
            held.enter_context(open_requests.hold("a"))
        assert open_requests.open("a") == 0 and len(open_requests) == 0
    with pytest.raises(ConfigError):
        OpenRequests(-1)


# -- client keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        # Every address of one /64 is one client: its owner may use any of them.
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:0:0:0:7", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        # An IPv4 client seen through an IPv6 socket is that IPv4 client.
        ("::ffff:203.0.113.7", "203.0.113.7"),
        # Not an address (a Unix socket's peer, a test client): as it is.
        ("testclient", "testclient"),
        ("not:an:address", "not:an:address"),
        ("", ""),
    ],
)
def test_ipv6_clients_are_keyed_by_their_64_prefix_and_others_as_they_are(
    address: str, key: str
) -> None:
    assert client_key(address) == key


def test_one_ipv6_network_gets_one_bucket_whichever_of_its_addresses_it_uses() -> None:
    limiter = RateLimiter(1.0, burst=2, clock=Clock())
    for host in range(1, 3):
        limiter.check(client_key(f"2001:db8:1:2::{host:x}"))
    for host in range(3, 1000):
        with pytest.raises(RateLimited):
            limiter.check(client_key(f"2001:db8:1:2::{host:x}"))
    assert len(limiter) == 1
    limiter.check(client_key("2001:db8:1:3::1"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "untrusted"),
    [
        ("10.0.1.5", "203.0.113.9", True),  # a balancer in the network, its header ignored
        ("fd00::5", "2001:db8::9", True),
        ("10.0.1.5", "203.0.113.9, 10.0.1.5", False),  # the header names it: applied
        # (Documentation ranges count as private: public addresses stand in for visitors.)
        ("8.8.4.4", "1.1.1.1", False),  # a visitor's own proxy, on the internet
        ("1.1.1.1", "1.1.1.1", False),  # a trusted balancer's header, applied
        ("not-an-address", "203.0.113.9", False),
    ],
)
def test_a_private_address_forwarding_for_others_is_an_untrusted_proxy(
    peer: str, forwarded: str, untrusted: bool
) -> None:
    assert ProxyCheck().first_untrusted(peer, forwarded) is untrusted


def test_an_untrusted_proxy_is_noticed_once() -> None:
    check = ProxyCheck()
    assert check.first_untrusted("10.0.1.5", "203.0.113.9")
    assert not check.first_untrusted("10.0.1.5", "203.0.113.10")
    assert not check.first_untrusted("10.0.1.6", "203.0.113.9")
    assert check.noticed == "10.0.1.5"


def test_a_costly_request_spends_its_cost_and_waits_for_all_of_it() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=10, clock=clock)
    limiter.check("a", 7)
    with pytest.raises(RateLimited) as raised:
        limiter.check("a", 4)  # 3 left
    assert raised.value.retry_after_s == pytest.approx(0.5)  # one more token, at 2 a second
    clock.now += 0.5
    limiter.check("a", 4)
    assert spend(limiter, "a") == 0
    # A cost over the burst costs the burst: it can pass once the bucket is full.
    clock.now += 5
    limiter.check("a", 1_000)
    assert spend(limiter, "a") == 0
