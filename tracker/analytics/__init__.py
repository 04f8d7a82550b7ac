"""Site-wide analytics: one module per metric, composed by `SiteStats` (`site.py`), shipped
by hosts (`outbox.py`) and merged and saved by the aggregator (`aggregator.py`)."""

from __future__ import annotations

from tracker.analytics.counting import HOUR_MS, MINUTE_MS, user_key
from tracker.analytics.sequences import SessionSequences
from tracker.analytics.site import SiteStats

__all__ = ["HOUR_MS", "MINUTE_MS", "SessionSequences", "SiteStats", "user_key"]
