"""The one place that owns the MongoDB client: connect (with a ping), hand out collections, close."""

from __future__ import annotations

from datetime import UTC
from types import TracebackType
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from memcompress.redaction import redact_url
from memcompress.repositories.errors import StoreUnavailable
from memcompress.settings import Settings

USER_MEMORY = "user_memory"
USER_MEMORY_ARCHIVE = "user_memory_archive"
USER_PROFILES = "user_profiles"
COMPACTION_LOG = "compaction_log"
DEAD_LETTERS = "compression_dead_letters"
OVERRIDES = "compression_overrides"
ERASED_USERS = "erased_users"  # tombstones of users `forget` erased (the erase fence)

Document = dict[str, Any]


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

    async def connect(self) -> AsyncDatabase[Document]:
        if self._client is None:
            client: AsyncMongoClient[Document] = AsyncMongoClient(
                self._uri, tz_aware=True, tzinfo=UTC, appname="memcompress", **self._client_options
            )
            try:
                await client.admin.command("ping")
            except PyMongoError as error:
                await client.close()
                raise StoreUnavailable(
                    f"cannot reach MongoDB at {redact_url(self._uri)}: {type(error).__name__}"
                ) from error
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
