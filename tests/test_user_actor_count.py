"""The bound on live per-user actors, without Ray: admitting, releasing, and forgetting the
actors that ended without saying so."""

from __future__ import annotations

from tracker.user_actor_count import STARTING_S, UserActorCount


class Named:
    """The per-user actors that exist, as Ray's named actors would list them."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.asked = 0

    def __call__(self) -> set[str]:
        self.asked += 1
        return set(self.names)


def test_actors_are_admitted_up_to_the_limit_and_one_released_makes_room() -> None:
    named = Named()
    count = UserActorCount(2, named, monotonic_s=lambda: 100.0)
    assert count.admit("user-a") and count.admit("user-b")
    assert count.admit("user-a")  # counted already
    named.names = {"user-a", "user-b"}
    assert not count.admit("user-c")
    count.release("user-a")
    assert count.admit("user-c")
    assert set(count.live) == {"user-b", "user-c"}


def test_a_full_count_forgets_actors_that_ended_but_not_those_still_starting() -> None:
    now = [1000.0]
    named = Named("user-old")  # existing when the count (re)started
    count = UserActorCount(2, named, monotonic_s=lambda: now[0])
    assert count.admit("user-new")
    named.names = set()  # user-old ended without saying so; user-new is not listed yet
    assert count.admit("user-c")
    assert set(count.live) == {"user-new", "user-c"}
    now[0] += STARTING_S + 1
    named.names = {"user-c"}  # user-new never came up
    assert count.admit("user-d")
    assert set(count.live) == {"user-c", "user-d"}
    named.names = {"user-c", "user-d"}
    assert not count.admit("user-e")


def test_the_named_actors_are_listed_only_when_the_count_is_full() -> None:
    named = Named()
    count = UserActorCount(3, named, monotonic_s=lambda: 0.0)
    assert named.asked == 1  # at the start
    count.admit("user-a")
    count.admit("user-b")
    assert named.asked == 1
