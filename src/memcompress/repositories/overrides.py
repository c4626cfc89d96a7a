"""``compression_overrides``: per-user settings (one document per user, ``_id`` = user id), written by
``memcompress override`` and read by the scan, the job and dry runs."""

from __future__ import annotations

from memcompress.metrics import Metrics
from memcompress.models import UserOverrides
from memcompress.repositories.database import OVERRIDES, MongoDatabase
from memcompress.repositories.documents import valid_models

READ_AT_MOST = 100_000


class MongoUserOverrides:
    def __init__(self, database: MongoDatabase, metrics: Metrics | None = None) -> None:
        self._overrides = database.collection(OVERRIDES)
        self._metrics = metrics or Metrics()

    async def get(self, user_id: str) -> UserOverrides | None:
        doc = await self._overrides.find_one({"_id": user_id})
        found = valid_models(UserOverrides, OVERRIDES, [doc] if doc else [], self._metrics)
        return found[0] if found else None

    async def all(self) -> dict[str, UserOverrides]:
        docs = await self._overrides.find().limit(READ_AT_MOST).to_list()
        return {
            str(doc["_id"]): model
            for doc in docs
            for model in valid_models(UserOverrides, OVERRIDES, [doc], self._metrics)
        }

    async def set(self, user_id: str, overrides: UserOverrides) -> None:
        await self._overrides.replace_one(
            {"_id": user_id}, overrides.model_dump(exclude_none=True), upsert=True
        )

    async def clear(self, user_id: str) -> bool:
        return (await self._overrides.delete_one({"_id": user_id})).deleted_count == 1
