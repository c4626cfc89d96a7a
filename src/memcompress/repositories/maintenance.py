"""The store as a whole: index creation (``memcompress migrate``), what it holds about one user and
erasing it (``memcompress forget``), and dropping a throw-away database (the demo)."""

from __future__ import annotations

from memcompress.repositories.database import (
    COMPACTION_LOG,
    DEAD_LETTERS,
    OVERRIDES,
    USER_MEMORY,
    USER_MEMORY_ARCHIVE,
    USER_PROFILES,
    MongoDatabase,
)
from memcompress.repositories.erasures import ErasedUsers
from memcompress.repositories.indexes import TTL_INDEX, ensure_indexes

# Every collection holding documents of a user, by the field that names the user.
USER_COLLECTIONS = {
    USER_MEMORY: "user_id",
    USER_MEMORY_ARCHIVE: "user_id",
    USER_PROFILES: "user_id",
    COMPACTION_LOG: "user_id",
    DEAD_LETTERS: "_id",
    OVERRIDES: "_id",
}


class MongoMaintenance:
    def __init__(self, database: MongoDatabase, *, memory_ttl_days: int | None = None) -> None:
        """``memory_ttl_days``: the TTL on ``user_memory`` the operator asked for (none by default)."""
        self._database = database
        self._erased = ErasedUsers(database)
        self._memory_ttl_s = None if memory_ttl_days is None else memory_ttl_days * 86_400
        self._memory_ttl_days = memory_ttl_days

    async def ensure_indexes(self) -> list[str]:
        return await ensure_indexes(self._database, memory_ttl_days=self._memory_ttl_days)

    async def memory_ttl_risks(self) -> list[str]:
        """TTL indexes on ``user_memory`` that nobody asked for: each deletes events whether or not they
        were summarised. One line per index, naming it and the fix."""
        risks = []
        async for index in await self._database.collection(USER_MEMORY).list_indexes():
            ttl_s = index.get("expireAfterSeconds")
            if ttl_s is None or (index["name"] == TTL_INDEX and int(ttl_s) == self._memory_ttl_s):
                continue
            days = int(ttl_s) / 86_400
            risks.append(
                f"{USER_MEMORY} has TTL index {index['name']!r} (expireAfterSeconds={int(ttl_s)}, {days:g} days) "
                f"that MEMCOMPRESS_MEMORY_TTL_DAYS did not ask for: it deletes events whether or not they "
                f"were summarised. Fix: db.{USER_MEMORY}.dropIndex({index['name']!r}) "
                f"(or set MEMCOMPRESS_MEMORY_TTL_DAYS={days:g} to accept that loss)"
            )
        return risks

    async def count_user_data(self, user_id: str) -> dict[str, int]:
        return {
            name: await self._database.collection(name).count_documents({field: user_id})
            for name, field in USER_COLLECTIONS.items()
        }

    async def mark_erased(self, user_id: str, keep_s: float) -> None:
        await self._erased.mark(user_id, keep_s)

    async def is_erased(self, user_id: str) -> bool:
        return await self._erased.erased(user_id)

    async def erase_user_data(self, user_id: str) -> dict[str, int]:
        removed: dict[str, int] = {}
        for name, field in USER_COLLECTIONS.items():
            result = await self._database.collection(name).delete_many({field: user_id})
            removed[name] = result.deleted_count
        return removed

    async def drop_database(self) -> None:
        await self._database.db.client.drop_database(self._database.db.name)
