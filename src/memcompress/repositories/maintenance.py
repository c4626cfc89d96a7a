"""The store as a whole: index creation (``memcompress migrate``), what it holds about one user and
erasing it (``memcompress forget``), and dropping a throw-away database (the demo)."""

from __future__ import annotations

from memcompress.repositories.database import (
    COMPACTION_LOG,
    DEAD_LETTERS,
    USER_MEMORY,
    USER_MEMORY_ARCHIVE,
    USER_PROFILES,
    MongoDatabase,
)
from memcompress.repositories.indexes import ensure_indexes

# Every collection holding documents of a user, by the field that names the user.
USER_COLLECTIONS = {
    USER_MEMORY: "user_id",
    USER_MEMORY_ARCHIVE: "user_id",
    USER_PROFILES: "user_id",
    COMPACTION_LOG: "user_id",
    DEAD_LETTERS: "_id",
}


class MongoMaintenance:
    def __init__(self, database: MongoDatabase) -> None:
        self._database = database

    async def ensure_indexes(self, *, memory_ttl_days: int | None = None) -> list[str]:
        return await ensure_indexes(self._database, memory_ttl_days=memory_ttl_days)

    async def count_user_data(self, user_id: str) -> dict[str, int]:
        return {
            name: await self._database.collection(name).count_documents({field: user_id})
            for name, field in USER_COLLECTIONS.items()
        }

    async def erase_user_data(self, user_id: str) -> dict[str, int]:
        removed: dict[str, int] = {}
        for name, field in USER_COLLECTIONS.items():
            result = await self._database.collection(name).delete_many({field: user_id})
            removed[name] = result.deleted_count
        return removed

    async def drop_database(self) -> None:
        await self._database.db.client.drop_database(self._database.db.name)
