"""What compression runs leave behind in MongoDB: ``compaction_log``, one record per run (outcome,
counts, LLM usage, duration), and ``compression_dead_letters``, one document per user whose job gave
up (latest failure wins).

Both are written at a run's end and fenced alike: none is left for a user erased meanwhile. Dead
letters are kept in MongoDB, not Redis, so a Redis restart does not forget them; a later successful
compression of the user removes the entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from memcompress.metrics import Metrics
from memcompress.models import CompactionRecord, DeadLetter, TokenUsage
from memcompress.repositories.database import COMPACTION_LOG, DEAD_LETTERS, MongoDatabase
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


class MongoDeadLetters:
    def __init__(self, database: MongoDatabase, metrics: Metrics | None = None) -> None:
        self._letters = database.collection(DEAD_LETTERS)
        self._erased = ErasedUsers(database)
        self._metrics = metrics or Metrics()

    async def record(self, letter: DeadLetter) -> None:
        """Store the user's dead letter; none is left if the user was erased meanwhile (raises
        ``UserErased``)."""
        await self._letters.replace_one({"_id": letter.user_id}, letter.model_dump(), upsert=True)
        await self._erased.undo_if_erased(
            letter.user_id, lambda: self._letters.delete_one({"_id": letter.user_id})
        )

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        docs = await self._letters.find().sort([("failed_at", -1), ("_id", 1)]).limit(limit).to_list()
        return valid_models(DeadLetter, DEAD_LETTERS, docs, self._metrics)

    async def find(self, user_id: str) -> DeadLetter | None:
        letters = valid_models(
            DeadLetter,
            DEAD_LETTERS,
            [doc] if (doc := await self._letters.find_one({"_id": user_id})) else [],
            self._metrics,
        )
        return letters[0] if letters else None

    async def count(self) -> int:
        return await self._letters.count_documents({})

    async def remove(self, user_id: str) -> bool:
        result = await self._letters.delete_one({"_id": user_id})
        return result.deleted_count == 1
