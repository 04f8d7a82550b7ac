"""A host's index rebuilt from storage as it starts: the histories of the users placement
gives it, read from their history chunks (where a host's commits end up at compaction, and
all of them once the host has started: it compacts what its log replayed first)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tracker import codec
from tracker.errors import StorageUnavailable
from tracker.history import chunk_number
from tracker.query.index import HistoryIndex
from tracker.storage import ObjectInfo, Storage

log = logging.getLogger(__name__)
USERS = "users"


async def rebuild(index: HistoryIndex, storage: Storage, mine: Callable[[str], bool]) -> int:
    """Add to `index` every stored user for whom `mine(user_id)` holds; return how many.

    A user's folder is named by a hash of their ID: their first chunk names them, and only
    then are the others read."""
    folders: dict[str, list[ObjectInfo]] = {}
    for info in await storage.list_objects(USERS):
        folder, marker, _name = info.key.rpartition("/chunks/")
        if marker:
            folders.setdefault(folder, []).append(info)
    users = 0
    for folder, infos in folders.items():
        infos.sort(key=chunk_number)
        try:
            user_id, records = await _chunk(storage, infos[0])
            if not mine(user_id):
                continue
            for info in infos[1:]:
                records += (await _chunk(storage, info))[1]
        except StorageUnavailable as exc:
            # One unreadable history (a corrupt chunk) leaves its user out of the queries, and
            # must not keep the host from starting: activation tells that user's own story.
            log.warning("query index: %s left out: %s", folder, exc)
            continue
        index.apply(user_id, records)
        users += 1
    return users


async def _chunk(storage: Storage, info: ObjectInfo) -> tuple[str, list[codec.Record]]:
    """A chunk's user and records."""
    data, _etag = await storage.get(info.key)
    chunk = codec.decode("chunk", data, info.key)
    return chunk["user"], list(chunk["records"])
