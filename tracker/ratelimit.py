"""Limits per key (a client address, a user ID): token buckets, bounded in memory, and counts
of the requests a key has open at once.

Each key may spend `burst` requests at once and regains `rate_per_s` tokens a second. Buckets
and counts live only in this process's memory, never in storage: their keys are client IP
addresses.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType

from starlette.types import Scope

from tracker.errors import ConfigError, RateLimited

# How an IPv4-mapped IPv6 address (::ffff:a.b.c.d) begins.
_IPV4_MAPPED = bytes(10) + b"\xff\xff"


def client_key(address: str) -> str:
    """The key a client address's limits are counted under: an IPv6 address by its /64 (one
    subscriber's network: every address in it is theirs to pick, so per address each would
    be a fresh bucket, and enough of them would evict everyone else's), an IPv4-mapped IPv6
    address as its IPv4 address, and anything else (IPv4, or not an address) as it is."""
    if ":" not in address:
        return address  # the common case, without parsing
    # The C parser: `ipaddress.IPv6Address` took about ten times as long.
    try:
        packed = socket.inet_pton(socket.AF_INET6, address.partition("%")[0])
    except OSError:
        return address
    if packed[:12] == _IPV4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return f"{socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8))}/64"


def client_of(scope: Scope) -> str:
    """The key the client's address is limited under (`client_key`). Client IPs stay in this
    process's memory only (the rate limiter's); they are never stored."""
    client = scope.get("client")
    return client_key(client[0]) if client else "?"


class ProxyCheck:
    """Notices, once, a request that came through a proxy whose `X-Forwarded-For` the server
    does not trust.

    Behind a load balancer whose addresses are not in `FORWARDED_ALLOW_IPS`, every request
    arrives from the balancer with the visitor's address in `X-Forwarded-For`, which the server
    then ignores: all visitors share one rate limit and one open-request limit, and the site is
    throttled as one client (docs/deploy.md). The sign: a private address (a balancer's, inside
    the network) sending an `X-Forwarded-For` that does not name it. A trusted proxy's header
    has been applied already, so the address seen is one the header names; a visitor's own
    proxy comes from a public address."""

    def __init__(self) -> None:
        self.noticed: str | None = None  # the first such proxy's address

    def first_untrusted(self, peer: str, forwarded: str) -> bool:
        """Whether a request from `peer` with `X-Forwarded-For: forwarded` is the first sign of
        an untrusted proxy (the caller then warns; later ones are not looked at)."""
        # Cheapest first: behind a trusted balancer every request carries the header, and
        # names the address seen; parsing that address each time would be wasted.
        if self.noticed is not None or peer in {part.strip() for part in forwarded.split(",")}:
            return False
        try:
            private = ipaddress.ip_address(peer.partition("%")[0]).is_private
        except ValueError:
            return False
        if not private:
            return False
        self.noticed = peer
        return True


class RateLimiter:
    """`check(key)` spends one token of `key`'s bucket or raises `RateLimited`.

    At most `max_keys` buckets are kept, least recently used first out. Forgetting a bucket
    is harmless once it has refilled (a missing bucket counts as full), and merely lenient
    before that, so a flood of distinct keys costs memory only up to the bound. Every call is
    O(1). `rate_per_s == 0` turns limiting off.
    """

    __slots__ = ("_buckets", "_burst", "_clock", "_lock", "_max_keys", "_rate")

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate_per_s >= 0:
            raise ConfigError(f"rate_per_s={rate_per_s!r}: must be >= 0")
        if burst is None:
            burst = max(rate_per_s, 1.0) * 2
        if not burst >= 1:
            raise ConfigError(f"burst={burst!r}: must be at least 1")
        if max_keys < 1:
            raise ConfigError(f"max_keys={max_keys!r}: must be at least 1")
        self._rate = rate_per_s
        self._burst = burst
        self._max_keys = max_keys
        self._clock = clock
        # key -> (tokens left, clock reading when counted), least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str, cost: float = 1.0) -> None:
        """Spend `cost` tokens of `key` (at most a whole burst), or raise `RateLimited` with the
        wait until they are back."""
        rate = self._rate
        if rate == 0:
            return
        cost = min(cost, self._burst)
        buckets = self._buckets
        with self._lock:
            now = self._clock()
            # pop + insert moves the key to the most recently used end.
            entry = buckets.pop(key, None)
            if entry is None:
                tokens = self._burst
            else:
                tokens = min(self._burst, entry[0] + (now - entry[1]) * rate)
            if len(buckets) >= self._max_keys:
                buckets.popitem(last=False)
            elif buckets:
                # Drop the least recently used bucket if it has refilled: this keeps memory
                # near the number of active keys, not the bound, at O(1) per call.
                oldest, (left, counted) = next(iter(buckets.items()))
                if left + (now - counted) * rate >= self._burst:
                    del buckets[oldest]
            if tokens < cost:
                buckets[key] = (tokens, now)
                raise RateLimited((cost - tokens) / rate)
            buckets[key] = (tokens - cost, now)

    def check_left(self, key: str, cost: float = 1.0) -> None:
        """Raise `RateLimited`, as `check` would, unless `key` has `cost` tokens left; spend
        none (for limits on failures, charged only once a request has failed)."""
        rate = self._rate
        if rate == 0:
            return
        cost = min(cost, self._burst)
        with self._lock:
            entry = self._buckets.get(key)
            if entry is None:
                return
            tokens = min(self._burst, entry[0] + (self._clock() - entry[1]) * rate)
        if tokens < cost:
            raise RateLimited((cost - tokens) / rate)

    @property
    def burst(self) -> float:
        """The most tokens a bucket holds."""
        return self._burst

    def __len__(self) -> int:
        """How many buckets are held (not yet full or not yet evicted)."""
        return len(self._buckets)


# What a client over its open requests is told to wait: one of them may end any moment.
OPEN_RETRY_AFTER_S = 1.0


class OpenRequests:
    """`hold(key)` counts one more open request of `key` for as long as the `with` block it
    guards runs, or raises `RateLimited` when `key` already has `limit` open.

    A rate limit alone does not bound how many requests one client has open: each request
    whose body stalls costs one token but holds a request slot until its body's deadline.
    Only keys with a request open are kept, so memory follows the open requests (which the
    server bounds), not the keys ever seen. `limit == 0` turns counting off.
    """

    __slots__ = ("_limit", "_lock", "_open")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ConfigError(f"limit={limit!r}: must be >= 0")
        self._limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def hold(self, key: str) -> AbstractContextManager[None]:
        """Count a request of `key` as open until the `with` block ends, however it ends."""
        if self._limit == 0:
            return _NOT_HELD
        with self._lock:
            count = self._open.get(key, 0)
            if count >= self._limit:
                raise RateLimited(OPEN_RETRY_AFTER_S)
            self._open[key] = count + 1
        return _Held(self, key)

    def _release(self, key: str) -> None:
        with self._lock:
            count = self._open[key] - 1
            if count:
                self._open[key] = count
            else:
                del self._open[key]

    def open(self, key: str) -> int:
        """How many requests `key` has open."""
        return self._open.get(key, 0)

    def __len__(self) -> int:
        """How many keys have a request open."""
        return len(self._open)


class _Held:
    """One counted request; leaving the `with` block (on any exit) releases it."""

    __slots__ = ("_key", "_owner")

    def __init__(self, owner: OpenRequests, key: str) -> None:
        self._owner = owner
        self._key = key

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._owner._release(self._key)


# What `hold` returns when counting is off; reusable, as it holds nothing.
_NOT_HELD: AbstractContextManager[None] = nullcontext()
