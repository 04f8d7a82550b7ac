"""Segment batch ingest: `/v1/batch` beside `/api/track`'s batches, on one tracker on Ray Serve.

The same generator (the asyncio client), the same users, the same number of events per request
(50) and the same durability; alternating rounds, so that the machine's other load falls on
both alike. A Segment batch carries 50 `track` messages of one user, each with its session
(`context.sessionId`), message ID, time and a few properties, as a server-side SDK sends them.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import secrets
import time
import uuid
from datetime import UTC, datetime

from bench import loadgen
from bench.cluster import (
    bench_config,
    free_port_range,
    ray_session,
    settle,
    start_serve,
    temp_storage,
    wait_ports,
)
from bench.loadgen import Load
from bench.report import Row
from tracker import server

EVENTS = 50
CONNECTIONS = 64


class SegmentBodies:
    """`/v1/batch` bodies of `EVENTS` track messages of one user of the pool."""

    def __init__(self) -> None:
        self.users = loadgen.user_pool()
        self.prefix = uuid.uuid4().hex[:16]
        self.counter = itertools.count(1)

    def message(self, user: str, at: str) -> dict[str, object]:
        return {
            "type": "track",
            "userId": user,
            "event": "Clicked Buy",
            "properties": {
                "path": f"/products/{random.randrange(50)}",
                "element": "button#buy",
                "x": random.randrange(1280),
                "y": random.randrange(3000),
            },
            "context": {"sessionId": f"s-{user[:8]}"},
            "timestamp": at,
            "messageId": f"{self.prefix}-{next(self.counter)}",
        }

    def __call__(self) -> bytes:
        user = random.choice(self.users)
        at = datetime.fromtimestamp(time.time(), UTC).isoformat()
        batch = [self.message(user, at) for _ in range(EVENTS)]
        return json.dumps({"batch": batch, "sentAt": at}).encode()


def run(quick: bool) -> list[Row]:
    duration = 3.0 if quick else 8.0
    rounds = 1 if quick else 3
    key = secrets.token_urlsafe(24)
    auth = "Authorization: Basic " + base64.b64encode(f"{key}:".encode()).decode() + "\r\n"
    with ray_session(), temp_storage() as storage:
        first = free_port_range(1)
        start_serve(first, 1)
        config = bench_config(storage, http_port=first, write_keys=(key,))
        server.run(config, block=False)
        (port,) = wait_ports(first, 1, "/healthz", 1, 60)
        loadgen.activate([port], "/api/track")
        runs: dict[str, list[Load]] = {"http": [], "segment": []}
        for _ in range(rounds):
            settle(config)
            runs["http"].append(
                loadgen.run_asyncio(
                    [port], "/api/track", batch=EVENTS, connections=CONNECTIONS, duration_s=duration
                )
            )
            settle(config)
            runs["segment"].append(
                loadgen.run_asyncio(
                    [port],
                    "/v1/batch",
                    batch=EVENTS,
                    connections=CONNECTIONS,
                    duration_s=duration,
                    bodies=SegmentBodies(),
                    headers=auth,
                )
            )
        best = {
            name: max(loads, key=lambda load: load.events_per_s) for name, loads in runs.items()
        }
        row = Row(
            name="segment: batch ingest, 50 messages per request, durable",
            value=best["segment"].events_per_s,
            unit="events/s",
            baseline="HTTP /api/track batches of 50 events, same run",
            baseline_value=best["http"].events_per_s,
            target=">= 0.8x baseline",
            details={
                "segment_runs": [load.summary() for load in runs["segment"]],
                "baseline_runs": [load.summary() for load in runs["http"]],
            },
        )
        errors = best["segment"].errors + best["http"].errors
        row.met = (row.ratio or 0) >= 0.8 and errors == 0
        return [row]
