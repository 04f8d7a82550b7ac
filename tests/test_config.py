"""Settings described once: the host's and the user tracker's defaults are `Config`'s."""

from __future__ import annotations

from tracker.config import Config
from tracker.host_settings import HostSettings
from tracker.user_tracker import Limits


def test_the_default_limits_are_the_ones_the_default_config_sets() -> None:
    assert Limits() == Limits.from_config(Config())


def test_the_default_host_settings_are_the_ones_the_default_config_sets() -> None:
    assert HostSettings() == HostSettings.from_config(Config())


def test_host_settings_take_every_setting_of_the_config_in_milliseconds() -> None:
    config = Config(
        max_movements_per_session=7,
        max_sessions_per_user=3,
        session_timeout_s=1.5,
        alarm_interval_s=2,
        retention_s=3,
        passivate_after_s=4,
        compact_log_bytes=5,
        compact_interval_s=6,
        commit_linger_ms=0.5,
        opt_out=("dave",),
    )
    assert HostSettings.from_config(config, memory_bytes=9) == HostSettings(
        limits=Limits(
            max_movements=7,
            max_sessions=3,
            session_timeout_ms=1500,
            alarm_interval_ms=2000,
            retention_ms=3000,
        ),
        passivate_after_ms=4000,
        compact_log_bytes=5,
        compact_interval_ms=6000,
        commit_linger_ms=0.5,
        opt_out=frozenset({"dave"}),
        memory_bytes=9,
    )
