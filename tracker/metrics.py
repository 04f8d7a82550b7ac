"""Prometheus metrics of one HTTP replica, rendered for `GET /metrics`.

A registry of this process's own (not the global one), so each app instance counts alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tracker_http_requests",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tracker_http_request_duration_seconds",
            "Time to answer HTTP requests, by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.events = Counter(
            "tracker_events_accepted",
            "Movements stored (durable; a retried eventId counts once).",
            registry=self.registry,
        )
        self.host_calls = Histogram(
            "tracker_host_call_duration_seconds",
            "Round trip of a coalesced tracking call to a host: Ray's call and the host's commit.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.host_call_requests = Histogram(
            "tracker_host_call_requests",
            "Tracking requests carried by one call to a host (coalesced while others are out).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )

        self.set_aside = Gauge(
            "tracker_host_users_set_aside",
            "Users whose history a host cannot write (kept in its log, tried again at each "
            "compaction; `tracker status` names their storage folders), by host.",
            ["host"],
            registry=self.registry,
        )

    def observe_hosts(self, stats: Iterable[dict[str, Any]]) -> None:
        """Take the hosts' figures from their stats (`UserHost.stats`)."""
        for host in stats:
            self.set_aside.labels(host["name"]).set(host["setAside"])

    def observe(self, route: str, method: str, status: int, started: float) -> None:
        # `labels()` builds and looks up its key under a lock on every call: keep the children.
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            requests = self.requests.labels(route, method, str(status))
            children = self._children[key] = (requests, self.latency.labels(route))
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    def observe_host_call(self, requests: int, started: float) -> None:
        self.host_calls.observe(time.perf_counter() - started)
        self.host_call_requests.observe(requests)

    def render(self) -> bytes:
        return generate_latest(self.registry)
