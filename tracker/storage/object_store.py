"""S3 and the other object stores obstore speaks (`s3://bucket/prefix`, `gs://`, `az://`,
`memory://`), with endpoint and credentials from the usual environment variables
(`AWS_*`)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from tracker.errors import ConfigError, StorageUnavailable
from tracker.storage.base import (
    ObjectExists,
    ObjectInfo,
    ObjectMissing,
    PreconditionFailed,
    check_key,
)


class ObstoreStorage:
    """S3 and the other object stores obstore speaks, configured from the environment."""

    def __init__(self, url: str) -> None:
        import obstore.store

        self.url = url
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT", "")
        client: Any = {"timeout": "10s", "connect_timeout": "3s"}
        if endpoint.startswith("http://"):
            client["allow_http"] = True
        retry: Any = {"max_retries": 2, "retry_timeout": timedelta(seconds=5)}
        try:
            self._store: Any = obstore.store.from_url(
                url, client_options=client, retry_config=retry
            )
        except Exception as exc:
            raise ConfigError(f"TRACKER_STORAGE={url!r}: {exc}") from exc

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        check_key(key)
        mode: Any = "overwrite"
        if if_absent:
            mode = "create"
        elif if_match is not None:
            mode = {"e_tag": if_match}
        try:
            result = await obstore.put_async(self._store, key, data, mode=mode)
        except AlreadyExistsError:
            raise ObjectExists(f"{key} already exists") from None
        except PreconditionError:
            raise PreconditionFailed(f"{key} changed since it was read") from None
        except Exception as exc:
            raise StorageUnavailable(f"cannot write {key}: {exc}") from exc
        return str(result.get("e_tag") or "")

    async def get(self, key: str) -> tuple[bytes, str]:
        import obstore
        from obstore.exceptions import NotFoundError

        check_key(key)
        try:
            result = await obstore.get_async(self._store, key)
            data = await result.bytes_async()
        except (NotFoundError, FileNotFoundError):
            raise ObjectMissing(key) from None
        except Exception as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc}") from exc
        return bytes(data), str(result.meta.get("e_tag") or "")

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        import obstore

        try:
            found: list[ObjectInfo] = []
            stream = obstore.list(self._store, prefix=prefix)
            async for batch in stream:
                for meta in batch:
                    found.append(
                        ObjectInfo(
                            str(meta["path"]), int(meta["size"]), meta["last_modified"].timestamp()
                        )
                    )
        except Exception as exc:
            raise StorageUnavailable(f"cannot list {prefix}: {exc}") from exc
        found.sort(key=lambda info: info.key)
        return found

    async def delete(self, keys: list[str]) -> None:
        import obstore

        if not keys:
            return
        try:
            await obstore.delete_async(self._store, keys)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise StorageUnavailable(f"cannot delete: {exc}") from exc

    async def delete_folder(self, prefix: str) -> int:
        # An object store keeps no folders, and a write that did not complete left nothing.
        objects = await self.list_objects(prefix)
        await self.delete([info.key for info in objects])
        return len(objects)
