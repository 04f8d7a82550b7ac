"""What `GET /metrics` exposes, from one replica's `Metrics`: requests by route, method and
status, their latency by route, the events accepted, the calls to hosts and the requests they
carry, and the users each host has set aside, as Prometheus text."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from tracker.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the rendered text, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_requests_are_counted_by_route_method_and_status_and_timed_by_route() -> None:
    metrics = Metrics()
    for status in (200, 200, 400):
        metrics.observe("/api/track", "POST", status, time.perf_counter())
    metrics.observe("/healthz", "GET", 200, time.perf_counter())

    track = {"route": "/api/track", "method": "POST"}
    assert value(metrics, "tracker_http_requests_total", **track, status="200") == 2
    assert value(metrics, "tracker_http_requests_total", **track, status="400") == 1
    healthz = {"route": "/healthz", "method": "GET", "status": "200"}
    assert value(metrics, "tracker_http_requests_total", **healthz) == 1
    duration = "tracker_http_request_duration_seconds"
    assert value(metrics, f"{duration}_count", route="/api/track") == 3
    assert value(metrics, f"{duration}_count", route="/healthz") == 1
    assert value(metrics, f"{duration}_bucket", route="/healthz", le="+Inf") == 1


def test_a_request_is_timed_from_when_it_started() -> None:
    metrics = Metrics()
    metrics.observe("/api/track", "POST", 200, time.perf_counter() - 2.0)
    duration = "tracker_http_request_duration_seconds"
    assert value(metrics, f"{duration}_bucket", route="/api/track", le="1.0") == 0
    assert value(metrics, f"{duration}_bucket", route="/api/track", le="+Inf") == 1
    assert (value(metrics, f"{duration}_sum", route="/api/track") or 0) >= 2.0


def test_calls_to_hosts_are_timed_and_count_the_requests_they_carry() -> None:
    metrics = Metrics()
    for carried in (1, 3, 40):
        metrics.observe_host_call(carried, time.perf_counter())
    assert value(metrics, "tracker_host_call_duration_seconds_count") == 3
    assert value(metrics, "tracker_host_call_requests_count") == 3
    assert value(metrics, "tracker_host_call_requests_sum") == 44
    assert value(metrics, "tracker_host_call_requests_bucket", le="2.0") == 1
    assert value(metrics, "tracker_host_call_requests_bucket", le="4.0") == 2
    assert value(metrics, "tracker_host_call_requests_bucket", le="64.0") == 3


def test_the_users_a_host_sets_aside_are_its_latest_figure() -> None:
    metrics = Metrics()
    metrics.observe_hosts([{"name": "host-0", "setAside": 2}, {"name": "host-1", "setAside": 0}])
    metrics.observe_hosts([{"name": "host-0", "setAside": 1}])
    assert value(metrics, "tracker_host_users_set_aside", host="host-0") == 1
    assert value(metrics, "tracker_host_users_set_aside", host="host-1") == 0


def test_accepted_events_are_a_counter_starting_at_zero() -> None:
    metrics = Metrics()
    assert value(metrics, "tracker_events_accepted_total") == 0
    metrics.events.inc(5)
    assert value(metrics, "tracker_events_accepted_total") == 5


def test_each_replica_counts_alone() -> None:
    first, second = Metrics(), Metrics()
    first.observe("/healthz", "GET", 200, time.perf_counter())
    labels = {"route": "/healthz", "method": "GET", "status": "200"}
    assert value(first, "tracker_http_requests_total", **labels) == 1
    assert value(second, "tracker_http_requests_total", **labels) is None
