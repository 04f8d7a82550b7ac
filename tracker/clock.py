"""The wall clock, in milliseconds since the epoch, and the type of a clock one can inject.

Hosts, the scheduler, the HTTP app and the Python API all timestamp with `wall_clock_ms`; code
that takes a clock takes a `NowMs`, so that tests can move time instead of waiting for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

NowMs = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000
