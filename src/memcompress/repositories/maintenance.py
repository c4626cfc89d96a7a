"""The store as a whole: index creation (``memcompress migrate``), what it holds about one user and
erasing it (``memcompress forget``; the tombstones that fence the erase are
:mod:`memcompress.repositories.erasures`), and dropping a throw-away database (the demo)."""

from __future__ import annotations

from pymongo.errors import ConnectionFailure

from memcompress.repositories.database import (
    COMPACTION_LOG,
    DEAD_LETTERS,
    OVERRIDES,
    USER_PROFILES,
    MongoDatabase,
)
from memcompress.repositories.indexes import ensure_indexes
from memcompress.repositories.storage_layouts import TTL_INDEX, StorageLayout, storage_layout


class MongoMaintenance:
    def __init__(
        self,
        database: MongoDatabase,
        *,
        memory_ttl_days: int | None = None,
        layout: StorageLayout | None = None,
    ) -> None:
        """``memory_ttl_days``: the TTL on ``user_memory`` the operator asked for (none by default);
        ``layout``: where the history is (the default layout without)."""
        self._database = database
        self._layout = layout or storage_layout()
        self._collections = {
            **self._layout.unit_collections(),
            COMPACTION_LOG: "user_id",
            DEAD_LETTERS: "_id",
            OVERRIDES: "_id",
        }
        self._memory_ttl_s = None if memory_ttl_days is None else memory_ttl_days * 86_400
        self._memory_ttl_days = memory_ttl_days

    async def ensure_indexes(self) -> list[str]:
        return await ensure_indexes(
            self._database, memory_ttl_days=self._memory_ttl_days, layout=self._layout.names
        )

    async def index_risks(self) -> list[str]:
        """What the store's indexes put at risk, one line each naming the fix: TTL indexes on the
        history's collection that nobody asked for, and a missing unique index on the profiles'
        ``user_id``. A store that does not answer (restarting, say) is one line too: a worker starting
        meanwhile runs on and rides out the restart as its jobs do, rather than exiting."""
        try:
            return await self._memory_ttl_risks() + await self._profile_index_risks()
        except ConnectionFailure as error:
            return [
                f"the indexes could not be checked (the store did not answer: {type(error).__name__}); "
                "memcompress status checks them again"
            ]

    async def _profile_index_risks(self) -> list[str]:
        """The worker creates a user's profile trusting the unique index on ``user_id`` to refuse a second
        one (the app's, or another worker's, made meanwhile): without it a user can end up with two
        profiles, and the summary written into one of them is not the one the app reads."""
        if USER_PROFILES not in self._collections:  # per conversation: the summary is in the conversation
            return []
        async for index in await self._database.collection(USER_PROFILES).list_indexes():
            if list(index["key"]) == ["user_id"] and index.get("unique"):
                return []
        return [
            f"{USER_PROFILES} has no unique index on user_id: two profiles of one user can be created, and "
            "a summary written into the one the app does not read. Fix: memcompress migrate"
        ]

    async def _memory_ttl_risks(self) -> list[str]:
        """TTL indexes on the history's collection that nobody asked for: each deletes events whether or
        not they were summarised."""
        risks = []
        history = self._layout.names.collection
        async for index in await self._database.collection(history).list_indexes():
            ttl_s = index.get("expireAfterSeconds")
            if ttl_s is None or (index["name"] == TTL_INDEX and int(ttl_s) == self._memory_ttl_s):
                continue
            days = int(ttl_s) / 86_400
            accept = self._layout.keep_an_age_limit(days)
            risks.append(
                f"{history} has TTL index {index['name']!r} (expireAfterSeconds={int(ttl_s)}, {days:g} days) "
                f"that MEMCOMPRESS_MEMORY_TTL_DAYS did not ask for: it deletes events whether or not they "
                f"were summarised. Fix: db.{history}.dropIndex({index['name']!r}){accept}"
            )
        return risks

    async def count_user_data(self, user_id: str) -> dict[str, int]:
        return {
            name: await self._database.collection(name).count_documents(
                self._layout.unit_filter(name, field, user_id)
            )
            for name, field in self._collections.items()
        }

    async def erase_user_data(self, user_id: str) -> dict[str, int]:
        removed: dict[str, int] = {}
        for name, field in self._collections.items():
            result = await self._database.collection(name).delete_many(
                self._layout.unit_filter(name, field, user_id)
            )
            removed[name] = result.deleted_count
        return removed

    async def drop_database(self) -> None:
        await self._database.db.client.drop_database(self._database.db.name)
