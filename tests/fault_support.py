"""The fault-injection scenarios' shared pieces: a bounded load generator and their figures.

A `Load` sends a fixed number of tracked events, each with its own `eventId`, in small batches
per user, with a bounded number of requests in flight and a deadline. A batch refused for a
transient reason (HTTP 503, a host being restarted, storage down) is sent again with the *same*
event IDs, as a real client would, until it is acknowledged or the deadline passes; retries are
idempotent because the tracker counts an event ID once. Afterwards a scenario reads every user's
history back and `figures` compares: every acknowledged event must be found (lost = 0).

Senders exist for HTTP (`http_sender`, against `/api/track`) and for the Python API
(`ray_sender`). The multi-node and cluster-restart scripts (`multinode_check.py`) import this
module too, outside a pytest run, so it imports no conftest (only the plain `support`).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import support

Send = Callable[[str, list[dict[str, Any]]], Awaitable[None]]


class Retry(Exception):
    """A transient refusal: the same events are to be sent again."""


@dataclass
class Figures:
    """What one scenario measured (printed, and written to bench/results/faults.json, which
    docs/reliability.md quotes)."""

    scenario: str
    sent: int
    acknowledged: int
    found: int
    lost: int
    refused: int
    recover_s: float | None
    note: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def anonymous_users(n: int) -> list[str]:
    """Anonymous visitor IDs (random UUIDs), which HTTP tracking accepts without a token."""
    return [str(uuid.uuid4()) for _ in range(n)]


def movement(user: str, event_id: str, i: int, session: str = "s1") -> dict[str, Any]:
    """`user`'s click number `i`, on one of seven pages."""
    data = {"path": f"/p/{i % 7}", "element": "button#go", "coordinates": {"x": i, "y": 1}}
    return support.movement(user, session, data=data, eventId=event_id)


class Load:
    """A bounded load: at most `events` events over `users`, `batch` per request, `concurrency`
    requests in flight (each worker pausing `pace_s` between them), until `stop()` or the
    deadline (events not acknowledged by then are just that)."""

    def __init__(
        self,
        send: Send,
        users: list[str],
        events: int,
        *,
        batch: int = 5,
        concurrency: int = 8,
        deadline_s: float = 60.0,
        pace_s: float = 0.0,
        session: str = "s1",
    ) -> None:
        self.send = send
        self.users = users
        self.deadline_s = deadline_s
        self.concurrency = concurrency
        self.pace_s = pace_s
        self.stopped = False
        tag = uuid.uuid4().hex[:8]
        self.batches: list[tuple[str, list[dict[str, Any]]]] = []
        for start in range(0, events, batch):
            user = users[(start // batch) % len(users)]
            self.batches.append(
                (
                    user,
                    [
                        movement(user, f"{tag}-{i}", i, session)
                        for i in range(start, min(events, start + batch))
                    ],
                )
            )
        self.events = events
        self.sent = 0
        self.refused = 0
        self.acked: dict[str, set[str]] = {u: set() for u in users}
        # (attempt started, acknowledged, user), monotonic seconds
        self.successes: list[tuple[float, float, str]] = []
        self._changed = asyncio.Event()

    @property
    def acknowledged(self) -> int:
        return sum(len(ids) for ids in self.acked.values())

    async def run(self) -> None:
        """Send every batch (retrying refusals) until all are acknowledged, `stop()` or the
        deadline."""
        deadline = time.monotonic() + self.deadline_s
        queue = list(reversed(self.batches))

        async def worker() -> None:
            while queue and not self.stopped and time.monotonic() < deadline:
                user, batch = queue.pop()
                self.sent += len(batch)
                await self._deliver(user, batch, deadline)
                if self.pace_s:
                    await asyncio.sleep(self.pace_s)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    def stop(self) -> None:
        """Send no more batches (those in flight are still delivered)."""
        self.stopped = True

    async def _deliver(self, user: str, batch: list[dict[str, Any]], deadline: float) -> None:
        backoff = 0.05
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                await asyncio.wait_for(self.send(user, batch), max(0.1, deadline - started))
            except (Retry, TimeoutError):
                self.refused += 1
                # Faster than Retry-After asks, so that recovery is measured to ~0.3 s.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.3)
                continue
            self.acked[user].update(m["eventId"] for m in batch)
            self.successes.append((started, time.monotonic(), user))
            self._changed.set()
            return

    async def reached(self, acknowledged: int, timeout_s: float = 60.0) -> None:
        """Wait until at least this many events are acknowledged (to inject a fault mid-load)."""
        deadline = time.monotonic() + timeout_s
        while self.acknowledged < acknowledged:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.acknowledged} of {acknowledged} events acknowledged in {timeout_s}s"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue

    def recovered_after(self, at: float, users: Iterable[str] | None = None) -> float | None:
        """Seconds from `at` (monotonic) to the first acknowledgement of a request *sent* after
        it, for these users (all by default); None when there was none."""
        wanted = set(self.users if users is None else users)
        ends = [end for start, end, user in self.successes if start >= at and user in wanted]
        return min(ends) - at if ends else None


def figures(
    scenario: str,
    loads: Iterable[Load],
    found: dict[str, Iterable[str]],
    recover_s: float | None,
    note: str = "",
) -> Figures:
    """Compare what the loads got acknowledged with what was read back afterwards (`found`:
    each user's event IDs)."""
    loads = list(loads)
    found_sets = {u: set(ids) for u, ids in found.items()}
    acknowledged = hits = 0
    for load in loads:
        for user, acked in load.acked.items():
            acknowledged += len(acked)
            hits += len(acked & found_sets.get(user, set()))
    return Figures(
        scenario=scenario,
        sent=sum(load.sent for load in loads),
        acknowledged=acknowledged,
        found=hits,
        lost=acknowledged - hits,
        refused=sum(load.refused for load in loads),
        recover_s=recover_s,
        note=note,
    )


# -- senders -----------------------------------------------------------------------------------


def http_sender(client: Any, base_url: str) -> Send:
    """POST batches to /api/track with an `httpx.AsyncClient`. A 503 must carry Retry-After."""
    import httpx

    async def send(user: str, batch: list[dict[str, Any]]) -> None:
        try:
            response = await client.post(f"{base_url}/api/track", json=batch)
        except httpx.TransportError as exc:
            raise Retry(f"transport: {exc!r}") from exc
        if response.status_code == 503:
            if "retry-after" not in response.headers:
                raise AssertionError(f"503 without Retry-After: {response.text}")
            raise Retry("503")
        if response.status_code != 200:
            raise AssertionError(f"{response.status_code}: {response.text}")
        accepted = response.json()["accepted"]
        if accepted != len(batch):
            raise AssertionError(f"accepted {accepted} of {len(batch)}")

    return send


def ray_sender(tracker: Any) -> Send:
    """Call `track_many` through the Python API; storage trouble and restarting or lost actors
    are transient."""
    from ray.exceptions import RayError, RayTaskError

    from tracker.errors import StorageUnavailable

    async def send(user: str, batch: list[dict[str, Any]]) -> None:
        try:
            await tracker.user(user).track_many.remote(batch)
        except StorageUnavailable as exc:
            raise Retry(f"storage: {exc}") from exc
        except RayTaskError:
            raise
        except RayError as exc:
            raise Retry(f"ray: {type(exc).__name__}") from exc

    return send


def event_ids(lines: Iterable[dict[str, Any]]) -> list[str]:
    """The event IDs in an export (NDJSON lines as dicts)."""
    return [line["eventId"] for line in lines if line.get("type") == "movement"]
