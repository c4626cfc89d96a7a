"""``compaction_log``: one record per compression run (outcome, counts, LLM usage, duration)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from memcompress.metrics import Metrics
from memcompress.models import CompactionRecord, TokenUsage
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

    async def token_usage_since(self, since: datetime) -> TokenUsage:
        pipeline: list[dict[str, Any]] = [
            {"$match": {"finished_at": {"$gte": since}}},
            {
                "$group": {
                    "_id": None,
                    "calls": {"$sum": "$llm_calls"},
                    "prompt": {"$sum": "$prompt_tokens"},
                    "completion": {"$sum": "$completion_tokens"},
                }
            },
        ]
        rows = await (await self._log.aggregate(pipeline)).to_list()
        if not rows:
            return TokenUsage()
        return TokenUsage(int(rows[0]["calls"]), int(rows[0]["prompt"]), int(rows[0]["completion"]))

    async def recent(self, limit: int = 20, user_id: str | None = None) -> list[CompactionRecord]:
        query = {} if user_id is None else {"user_id": user_id}
        docs = await self._log.find(query).sort([("finished_at", -1), ("_id", -1)]).limit(limit).to_list()
        return valid_models(CompactionRecord, COMPACTION_LOG, docs, self._metrics)
