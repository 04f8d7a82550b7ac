"""Object storage, both backends behind one interface: plain files and a real S3-protocol server."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import S3_BUCKET, free_port, record_folder_syncs, stored_items
from support import run

from tracker.errors import Fenced, StorageUnavailable
from tracker.storage import (
    FileStorage,
    ObjectExists,
    ObjectInfo,
    ObjectMissing,
    PreconditionFailed,
    Put,
    Storage,
    local_root,
    open_storage,
    put_all,
    put_fenced,
    read_tail,
)
from tracker.storage import files as storage_module


def test_put_get_list_and_delete(storage: Storage) -> None:
    async def scenario() -> None:
        etag = await storage.put("a/b/one", b"1")
        assert await storage.get("a/b/one") == (b"1", etag)
        await storage.put("a/two", b"22")
        await storage.put("z", b"333")
        listed = await storage.list_objects("a")
        assert [(i.key, i.size) for i in listed] == [("a/b/one", 1), ("a/two", 2)]
        assert listed[0].last_modified_s > time.time() - 120
        await storage.delete(["a/b/one", "a/missing"])
        assert [i.key for i in await storage.list_objects("a")] == ["a/two"]
        with pytest.raises(ObjectMissing):
            await storage.get("a/b/one")
        with pytest.raises(KeyError):
            await storage.get("never")
        assert await storage.list_objects("nothing/here") == []
        await storage.delete([])

    run(scenario())


def test_an_overwrite_changes_the_etag_and_the_content(storage: Storage) -> None:
    async def scenario() -> None:
        first = await storage.put("k", b"old")
        second = await storage.put("k", b"new!")
        assert first != second
        assert await storage.get("k") == (b"new!", second)

    run(scenario())


def test_a_create_only_write_to_a_taken_key_raises_object_exists(storage: Storage) -> None:
    async def scenario() -> None:
        await storage.put("once", b"first", if_absent=True)
        with pytest.raises(ObjectExists):
            await storage.put("once", b"second", if_absent=True)
        assert (await storage.get("once"))[0] == b"first"

    run(scenario())


def test_a_replace_of_a_changed_object_raises_precondition_failed(storage: Storage) -> None:
    async def scenario() -> None:
        etag = await storage.put("snap", b"v1", if_absent=True)
        newer = await storage.put("snap", b"v2", if_match=etag)
        with pytest.raises(PreconditionFailed):
            await storage.put("snap", b"v3", if_match=etag)
        assert await storage.get("snap") == (b"v2", newer)
        assert isinstance(PreconditionFailed("x"), StorageUnavailable)

    run(scenario())


def test_only_one_of_many_racing_create_only_writes_wins(storage: Storage) -> None:
    async def scenario() -> None:
        results = await asyncio.gather(
            *(storage.put("race", str(i).encode(), if_absent=True) for i in range(8)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, ObjectExists) for r in results if isinstance(r, BaseException))

    run(scenario())


def test_put_all_gives_each_writes_outcome_in_order(storage: Storage) -> None:
    """Many writes with every condition: each one lands or fails on its own, and its result
    sits at its place."""

    async def scenario() -> None:
        taken = await storage.put("taken", b"old")
        kept = await storage.put("kept", b"old")
        fresh = [Put(f"many/{i:03d}", str(i).encode(), if_absent=True) for i in range(70)]
        puts = [
            *fresh[:40],
            Put("taken", b"new", if_absent=True),
            Put("kept", b"new", if_match=kept),
            Put("taken", b"new", if_match="not-its-etag"),
            Put("../escape", b"x"),
            *fresh[40:],
        ]
        results = await put_all(storage, puts)
        assert len(results) == len(puts)
        assert isinstance(results[40], ObjectExists)
        assert isinstance(results[41], str)
        assert isinstance(results[42], PreconditionFailed)
        assert isinstance(results[43], ValueError)
        for put, result in zip(fresh, results[:40] + results[44:], strict=True):
            assert await storage.get(put.key) == (put.data, result)
        assert await storage.get("taken") == (b"old", taken)
        assert await storage.get("kept") == (b"new", results[41])
        assert await put_all(storage, []) == []

    run(scenario())


def test_put_all_goes_through_put_when_a_file_storage_overrides_it(file_storage: str) -> None:
    class Seen(FileStorage):
        keys: list[str] = []

        async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
            self.keys.append(key)
            return await super().put(key, data, **kwargs)

    seen = Seen(file_storage)
    results = run(put_all(seen, [Put(f"k{i}", b"v") for i in range(5)]))
    assert all(isinstance(r, str) for r in results)
    assert sorted(seen.keys) == [f"k{i}" for i in range(5)]


def test_a_fenced_write_lands_but_is_refused_once_its_fence_exists(storage: Storage) -> None:
    async def scenario() -> None:
        await put_fenced(storage, "log/1", b"one", "epochs/2")
        with pytest.raises(ObjectExists):
            await put_fenced(storage, "log/1", b"again", "epochs/2")
        await storage.put("epochs/2", b"", if_absent=True)
        with pytest.raises(Fenced):
            await put_fenced(storage, "log/2", b"two", "epochs/2")
        # Written all the same: deleting it is the caller's decision.
        assert (await storage.get("log/2"))[0] == b"two"
        assert (await storage.get("log/1"))[0] == b"one"
        with pytest.raises(ValueError):
            await put_fenced(storage, "log/3", b"three", "../epochs/2")

    run(scenario())


def test_a_listing_is_per_folder_not_per_string_prefix(storage: Storage) -> None:
    async def scenario() -> None:
        await storage.put("a/x", b"1")
        await storage.put("ab/x", b"2")
        await storage.put("a/deeper/y", b"3")
        assert [i.key for i in await storage.list_objects("a")] == ["a/deeper/y", "a/x"]
        assert [i.key for i in await storage.list_objects("ab")] == ["ab/x"]

    run(scenario())


def test_a_listing_under_an_object_or_a_missing_folder_is_empty(storage: Storage) -> None:
    async def scenario() -> None:
        await storage.put("a/x", b"1")
        assert await storage.list_objects("a/x") == []
        assert await storage.list_objects("a/x/deeper") == []
        assert await storage.list_objects("missing/folder") == []

    run(scenario())


def test_read_tail_reads_the_checkpoint_and_the_objects_picked_from_the_listing(
    storage: Storage,
) -> None:
    seen: list[tuple[bytes | None, list[str]]] = []

    def past(data: bytes | None, listed: list[ObjectInfo]) -> list[ObjectInfo]:
        seen.append((data, [i.key for i in listed]))
        after = int(data or b"0")
        return [i for i in listed if int(i.key.rsplit("/", 1)[1]) > after]

    async def scenario() -> None:
        for number in (1, 2, 3, 10):
            await storage.put(f"u/log/{number:04d}", f"record {number}".encode())
        keys = ["u/log/0001", "u/log/0002", "u/log/0003", "u/log/0010"]

        found, listed, picked = await read_tail(storage, "u/checkpoint", "u/log", past)
        assert found is None
        assert seen.pop() == (None, keys)
        assert [i.key for i in listed] == keys
        assert [(i.key, data) for i, data in picked] == [
            (key, f"record {int(key[-4:])}".encode()) for key in keys
        ]

        etag = await storage.put("u/checkpoint", b"2")
        found, listed, picked = await read_tail(storage, "u/checkpoint", "u/log", past)
        assert found == (b"2", etag)
        assert seen.pop() == (b"2", keys)
        assert [(i.key, i.size, data) for i, data in picked] == [
            ("u/log/0003", 8, b"record 3"),
            ("u/log/0010", 9, b"record 10"),
        ]

        found, _, picked = await read_tail(storage, None, "u/log", lambda d, ls: ls[-1:])
        assert found is None
        assert [data for _, data in picked] == [b"record 10"]
        assert await read_tail(storage, "none", "none", past) == (None, [], [])

    run(scenario())


def test_read_tail_goes_through_get_when_a_file_storage_overrides_it(file_storage: str) -> None:
    class Seen(FileStorage):
        keys: list[str] = []

        async def get(self, key: str) -> tuple[bytes, str]:
            self.keys.append(key)
            return await super().get(key)

    seen = Seen(file_storage)

    async def scenario() -> None:
        for name in ("checkpoint", "log/1", "log/2"):
            await seen.put(name, b"v")
        found, _, picked = await read_tail(seen, "checkpoint", "log", lambda d, ls: ls)
        assert found is not None and len(picked) == 2

    run(scenario())
    assert sorted(seen.keys) == ["checkpoint", "log/1", "log/2"]


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", "nul\0byte", "", "./a"])
def test_unsafe_keys_are_refused(storage: Storage, key: str) -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError):
            await storage.put(key, b"x")
        with pytest.raises(ValueError):
            await storage.get(key)

    run(scenario())


def test_delete_folder_deletes_everything_under_it_and_nothing_beside_it(
    storage_url: str,
) -> None:
    """On files that includes what a crash left (the hidden temporary file of an interrupted
    write) and the emptied folders, up to the first one still holding something."""
    storage = open_storage(storage_url)

    async def scenario() -> None:
        for key in ("users/ab/cd/chunks/1", "users/ab/cd/snapshot", "users/ab/ef/snapshot"):
            await storage.put(key, key.encode())
        if isinstance(storage, FileStorage):
            folder = Path(storage.path("users/ab/cd/chunks"))
            (folder / ".tmp-0123456789abcdef").write_bytes(b"users/ab/cd/chunks/2")
        assert await storage.delete_folder("users/ab/cd") == 2
        assert [i.key for i in await storage.list_objects("users")] == ["users/ab/ef/snapshot"]
        assert await storage.delete_folder("users/ab/cd") == 0  # nothing left: fine
        names = [name for name in stored_items(storage_url) if "ab/cd" in name]
        assert names == []

    run(scenario())


def test_a_file_store_writes_into_folders_made_on_demand_and_leaves_no_temporary_files(
    file_storage: str,
) -> None:
    storage = open_storage(file_storage)

    async def scenario() -> None:
        # Racing writers into one new folder, while deletes keep emptying (and pruning) it.
        for n in range(20):
            keys = [f"deep/folder/{n}-{i}" for i in range(4)]
            await asyncio.gather(
                *(storage.put(key, key.encode(), if_absent=True) for key in keys),
                storage.delete([f"deep/folder/{n - 1}-{i}" for i in range(4)]),
            )
            for key in keys:
                assert (await storage.get(key))[0] == key.encode()
            etag = await storage.put(keys[0], b"replaced", if_match=(await storage.get(keys[0]))[1])
            assert await storage.get(keys[0]) == (b"replaced", etag)
        root = local_root(file_storage)
        assert not [p for p in root.rglob("*") if p.name.startswith(".")]

    run(scenario())


def test_a_file_store_write_that_fails_leaves_no_temporary_file(
    file_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk fails the write: nothing of it may stay behind, hidden from listings (an
    erasure would leave it, and its folder)."""
    storage = open_storage(file_storage)

    def disk_full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    run(storage.put("users/ab/alice/chunks/1", b"kept"))
    monkeypatch.setattr(storage_module, "write_all", disk_full)
    with pytest.raises(StorageUnavailable, match="No space left"):
        run(storage.put("users/ab/alice/chunks/2", b"personal data"))
    monkeypatch.undo()
    root = local_root(file_storage)
    assert sorted(p.name for p in (root / "users/ab/alice/chunks").iterdir()) == ["1"]
    run(storage.delete(["users/ab/alice/chunks/1"]))
    assert not (root / "users").exists()


def test_a_file_store_syncs_each_folder_it_makes_into_its_parent(
    file_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file synced into a new folder is only durable once the folder's own entry is."""
    storage = open_storage(file_storage)
    root = local_root(file_storage)
    run(storage.put("a/existing", b"1"))
    synced = record_folder_syncs(monkeypatch, root)
    run(storage.put("a/b/c/key", b"2"))
    assert synced == ["a", "a/b"]  # the folders holding the new "b" and "c"
    synced.clear()
    run(storage.put("a/b/c/other", b"3"))
    assert synced == []  # nothing new: only the publishing folder is synced (by descriptor)
    assert run(storage.get("a/b/c/key"))[0] == b"2"


def test_make_folders_makes_every_missing_level_of_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage_module.make_folders("data/users/ab")
    storage_module.make_folders("data/users/ab")  # there already: nothing to do
    assert (tmp_path / "data/users/ab").is_dir()


def test_a_file_store_listing_it_cannot_read_raises_storage_unavailable(
    file_storage: str,
) -> None:
    storage = open_storage(file_storage)
    run(storage.put("u/chunks/1", b"1"))
    loop = local_root(file_storage) / "u/chunks/2"
    loop.symlink_to(loop)  # a link to itself: its type cannot be read
    for call in (
        storage.list_objects("u"),
        read_tail(storage, "u/snapshot", "u/chunks", lambda d, listed: listed),
    ):
        with pytest.raises(StorageUnavailable, match="u/chunks/2"):
            run(call)


@pytest.mark.parametrize("overridden", [False, True], ids=["one-hop", "through-get"])
def test_read_tail_of_an_object_deleted_after_the_listing_raises_storage_unavailable(
    file_storage: str, overridden: bool
) -> None:
    """An erasure or retention can delete a listed object before it is read: that is a
    transient failure (503, try again), not a missing key."""

    class ThroughGet(FileStorage):
        async def get(self, key: str) -> tuple[bytes, str]:
            return await super().get(key)

    storage = ThroughGet(file_storage) if overridden else FileStorage(file_storage)
    run(storage.put("u/chunks/1", b"1"))
    run(storage.put("u/chunks/2", b"2"))

    def deleting(data: bytes | None, listed: list[ObjectInfo]) -> list[ObjectInfo]:
        os.remove(storage.path("u/chunks/2"))
        return listed

    with pytest.raises(StorageUnavailable, match="u/chunks/2 was deleted"):
        run(read_tail(storage, None, "u/chunks", deleting))


def test_a_file_store_never_shows_a_partly_written_object(file_storage: str) -> None:
    storage = open_storage(file_storage)

    async def scenario() -> None:
        await storage.put("big", b"x" * 1_000_000)
        writes = [storage.put("big", bytes([i]) * 1_000_000) for i in range(4)]
        reads = [storage.get("big") for _ in range(20)]
        results = await asyncio.gather(*writes, *reads)
        for data, _etag in results[4:]:
            assert len(data) == 1_000_000 and len(set(data)) == 1
        assert [i.key for i in await storage.list_objects("")] == ["big"]

    run(scenario())


# -- outages ----------------------------------------------------------------------------------


@pytest.fixture
def own_s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto server of this test's own (so stopping it harms no other test)."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket=S3_BUCKET
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    try:
        yield server
    finally:
        server.stop()


def timed_failure(storage: Storage, call: str) -> float:
    """Seconds until `call` fails with StorageUnavailable (it must not succeed or hang)."""

    async def attempt() -> None:
        if call == "put":
            await storage.put("after", b"x")
        elif call == "get":
            await storage.get("before")
        else:
            await storage.list_objects("")

    start = time.monotonic()
    with pytest.raises(StorageUnavailable):
        run(asyncio.wait_for(attempt(), timeout=60))
    return time.monotonic() - start


def test_a_stopped_s3_server_raises_storage_unavailable_promptly(own_s3: Any) -> None:
    storage = open_storage(f"s3://{S3_BUCKET}/outage")
    run(storage.put("before", b"x"))
    own_s3.stop()
    took = {call: timed_failure(storage, call) for call in ("put", "get", "list")}
    print(f"S3 outage (server stopped) detected in {took}")
    assert max(took.values()) < 15, took


def test_an_s3_server_that_never_answers_raises_storage_unavailable(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A socket that accepts connections but never replies: the slowest kind of outage.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        storage = open_storage(f"s3://{S3_BUCKET}/silent")
        took = timed_failure(storage, "put")
    print(f"S3 outage (server silent) detected in {took:.1f}s")
    assert took < 30, took


def test_a_file_store_that_cannot_write_raises_storage_unavailable(file_storage: str) -> None:
    storage = open_storage(file_storage)
    run(storage.put("a", b"a file where a folder is needed"))
    with pytest.raises(StorageUnavailable) as info:
        run(storage.put("a/y", b"2"))
    assert "a/y" in str(info.value)
