"""The one place that owns the MongoDB client: connect (with a ping), hand out collections, close.

``connect`` waits for the store whatever way it is not there yet: no server answering (pymongo's own
server-selection wait, ``MEMCOMPRESS_MONGODB_SERVER_SELECTION_TIMEOUT_MS``), or one that drops the first
connections (a server restarting: ``AutoReconnect``, which pymongo reports at once). By default it waits
that timeout; a worker starting waits longer (``STORE_START_WAIT_S``), so that a worker started while
MongoDB restarts, or beside it in one stack, comes up when the store does instead of exiting 1."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC
from types import TracebackType
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, PyMongoError

from memcompress.redaction import redact_url
from memcompress.repositories.errors import StoreUnavailable
from memcompress.settings import Settings
from memcompress.timing import CONNECT_RETRY_EVERY_S

USER_MEMORY = "user_memory"
USER_MEMORY_ARCHIVE = "user_memory_archive"
USER_PROFILES = "user_profiles"
COMPACTION_LOG = "compaction_log"
DEAD_LETTERS = "compression_dead_letters"
OVERRIDES = "compression_overrides"
ERASED_USERS = "erased_users"  # tombstones of users `forget` erased (the erase fence)

Document = dict[str, Any]
log = logging.getLogger(__name__)


class MongoDatabase:
    """Connection lifecycle (TL-02's DatabaseManager): idempotent ``connect``/``close``, ping on connect."""

    def __init__(
        self,
        uri: str,
        db_name: str,
        *,
        server_selection_timeout_ms: int = 5000,
        max_pool_size: int = 20,
        **client_options: Any,
    ) -> None:
        """``client_options`` go to ``AsyncMongoClient`` as they are (``event_listeners``, say)."""
        self._uri = uri
        self._db_name = db_name
        self._connect_wait_s = server_selection_timeout_ms / 1000
        self._client_options: dict[str, Any] = {
            "serverSelectionTimeoutMS": server_selection_timeout_ms,
            "maxPoolSize": max_pool_size,
            **client_options,
        }
        self._client: AsyncMongoClient[Document] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **client_options: Any) -> MongoDatabase:
        return cls(
            settings.mongodb_uri,
            settings.mongodb_db,
            server_selection_timeout_ms=settings.mongodb_server_selection_timeout_ms,
            max_pool_size=settings.mongodb_max_pool_size,
            **client_options,
        )

    def __repr__(self) -> str:
        return f"MongoDatabase({redact_url(self._uri)!r}, {self._db_name!r})"

    async def connect(self, *, wait_s: float | None = None) -> AsyncDatabase[Document]:
        """Connect and ping, waiting up to ``wait_s`` (default: the server-selection timeout) for a store
        that is not there yet; then :class:`StoreUnavailable`, one line."""
        if self._client is None:
            client: AsyncMongoClient[Document] = AsyncMongoClient(
                self._uri, tz_aware=True, tzinfo=UTC, appname="memcompress", **self._client_options
            )
            wait_s = self._connect_wait_s if wait_s is None else wait_s
            deadline, told = time.monotonic() + wait_s, False
            while True:
                try:
                    await client.admin.command("ping")
                    break
                except PyMongoError as error:
                    retry = isinstance(error, ConnectionFailure) and time.monotonic() < deadline
                    if not retry:
                        await client.close()
                        raise StoreUnavailable(
                            f"cannot reach MongoDB at {redact_url(self._uri)}: {type(error).__name__}"
                        ) from error
                    if wait_s > self._connect_wait_s and not told:  # a long wait says so, once
                        log.warning(
                            "MongoDB is not reachable yet (%s): waiting up to %.0f s",
                            type(error).__name__,
                            wait_s,
                        )
                        told = True
                    await asyncio.sleep(CONNECT_RETRY_EVERY_S)
            self._client = client
        return self._client[self._db_name]

    @property
    def db(self) -> AsyncDatabase[Document]:
        if self._client is None:
            raise RuntimeError("MongoDatabase.connect() has not been awaited")
        return self._client[self._db_name]

    def collection(self, name: str) -> AsyncCollection[Document]:
        return self.db[name]

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self) -> MongoDatabase:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
