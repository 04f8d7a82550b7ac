"""How the HTTP replica groups tracking requests into calls to a host."""

from __future__ import annotations

import asyncio

from tracker.dispatch import MAX_CALL_BYTES, MAX_COALESCED, HostQueue


def queued(sizes: list[int]) -> HostQueue:
    queue = HostQueue(handle=None)  # type: ignore[arg-type]  # `take` never calls the host
    loop = asyncio.get_running_loop()
    for index, size in enumerate(sizes):
        # Two sessions' blobs: a request's size is the sum of its blobs'.
        entries = [("s1", b"x" * (size // 2)), ("s2", b"x" * (size - size // 2))]
        queue.add(f"user-{index}", entries, loop.create_future())
    return queue


def test_a_call_takes_the_oldest_requests_that_fit_in_ray_inline_arguments() -> None:
    async def scenario() -> None:
        third = MAX_CALL_BYTES // 3
        queue = queued([third, third, third, third + 1, 10])
        futures = list(queue.futures)
        items, taken = queue.take()
        assert [user for user, _ in items] == ["user-0", "user-1", "user-2"]
        assert taken == futures[:3]
        items, taken = queue.take()  # a third plus one more byte would not fit beside it
        assert [user for user, _ in items] == ["user-3", "user-4"]
        assert taken == futures[3:]
        assert queue.take() == ([], [])

    asyncio.run(scenario())


def test_a_request_larger_than_the_budget_goes_alone_and_many_small_ones_are_capped() -> None:
    async def scenario() -> None:
        queue = queued([MAX_CALL_BYTES * 2, 1])
        assert [user for user, _ in queue.take()[0]] == ["user-0"]
        assert [user for user, _ in queue.take()[0]] == ["user-1"]
        many = queued([1] * (MAX_COALESCED + 5))
        assert len(many.take()[0]) == MAX_COALESCED
        assert len(many.take()[0]) == 5

    asyncio.run(scenario())
