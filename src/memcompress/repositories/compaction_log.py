"""``compaction_log``: one record per compression run (outcome, counts, LLM usage, duration)."""

from __future__ import annotations

from datetime import datetime

from memcompress.metrics import Metrics
from memcompress.models import CompactionRecord, Outcome
from memcompress.repositories.database import COMPACTION_LOG, MongoDatabase
from memcompress.repositories.documents import valid_models
from memcompress.repositories.erasures import ErasedUsers


class MongoCompactionLog:
    def __init__(self, database: MongoDatabase, metrics: Metrics | None = None) -> None:
        self._log = database.collection(COMPACTION_LOG)
        self._erased = ErasedUsers(database)
        self._metrics = metrics or Metrics()

    async def record(self, entry: CompactionRecord) -> None:
        """Store one run's record; none is left if the user was erased meanwhile (raises ``UserErased``)."""
        inserted = await self._log.insert_one(entry.model_dump(mode="python"))
        await self._erased.undo_if_erased(
            entry.user_id, lambda: self._log.delete_one({"_id": inserted.inserted_id})
        )

    async def compressions_since(self, user_id: str, since: datetime) -> int:
        query = {"user_id": user_id, "finished_at": {"$gte": since}, "outcome": Outcome.COMPRESSED.value}
        return await self._log.count_documents(query)

    async def recent(self, limit: int = 20, user_id: str | None = None) -> list[CompactionRecord]:
        query = {} if user_id is None else {"user_id": user_id}
        docs = await self._log.find(query).sort([("finished_at", -1), ("_id", -1)]).limit(limit).to_list()
        return valid_models(CompactionRecord, COMPACTION_LOG, docs, self._metrics)
