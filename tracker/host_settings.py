"""A host's settings: what `Config` sets for it, in milliseconds, and its memory budget."""

from __future__ import annotations

from dataclasses import dataclass, field

from tracker.config import Config
from tracker.user_tracker import Limits


@dataclass
class HostSettings:
    # The defaults are `Config`'s, in milliseconds.
    limits: Limits = field(default_factory=Limits)
    passivate_after_ms: int = int(Config.passivate_after_s * 1000)
    compact_log_bytes: int = Config.compact_log_bytes
    compact_interval_ms: int = int(Config.compact_interval_s * 1000)
    commit_linger_ms: float = Config.commit_linger_ms
    # Users whose events are dropped, whoever sends them (`TRACKER_OPT_OUT`).
    opt_out: frozenset[str] = frozenset()
    # RSS the host stays under by passivating users (0: no budget; `TRACKER_HOST_MEMORY_MB`).
    memory_bytes: int = 0

    @classmethod
    def from_config(cls, config: Config, memory_bytes: int = 0) -> HostSettings:
        """The settings `config` sets (seconds made milliseconds, as the defaults are), with
        the memory budget the host's node allows (`tracker.memory`)."""
        return cls(
            limits=Limits.from_config(config),
            passivate_after_ms=int(config.passivate_after_s * 1000),
            compact_log_bytes=config.compact_log_bytes,
            compact_interval_ms=int(config.compact_interval_s * 1000),
            commit_linger_ms=config.commit_linger_ms,
            opt_out=frozenset(config.opt_out),
            memory_bytes=memory_bytes,
        )
