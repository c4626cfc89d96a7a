"""``compression_dead_letters``: one document per user whose job gave up (latest failure wins).

Kept in MongoDB, not Redis, so a Redis restart does not forget them. A later successful compression
of the user removes the entry.
"""

from __future__ import annotations

from memcompress.metrics import Metrics
from memcompress.models import DeadLetter
from memcompress.repositories.database import DEAD_LETTERS, MongoDatabase
from memcompress.repositories.documents import valid_models
from memcompress.repositories.erasures import ErasedUsers


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
