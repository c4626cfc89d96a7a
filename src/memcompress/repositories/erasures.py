"""The store side of the erase fence: tombstones of erased users, and the check that undoes a write of
a user who was erased meanwhile. (The whole fence, and why it is enough: :mod:`memcompress.jobs.forget`.)

What it guarantees: a write that can create a document of a user (a new profile, archive copies, a
compaction record, a dead letter) leaves nothing behind if ``memcompress forget`` erased that user,
whatever the interleaving, as long as the user's tombstone still exists when the write is done.

How, in steps:

1. ``forget`` writes the user's tombstone (``erased_users``: ``_id`` = user id, ``erased_at``,
   ``expires_at``) before it erases anything: :meth:`ErasedUsers.mark`.
2. A writer that may have created a document of a user looks for the tombstone right after writing
   (:meth:`ErasedUsers.undo_if_erased`). Found: it removes exactly what it wrote and raises
   :class:`~memcompress.repositories.errors.UserErased`.
3. Not found: then the look came before the tombstone, so the write did too, and so did it come before
   the erase that follows the tombstone; the erase removes it. Either way nothing is left.

Reads go to the primary (the client's default), so a tombstone written before the look is seen. A
tombstone counts until its ``expires_at`` (``forget`` chooses that moment), whether or not MongoDB's
TTL monitor has removed it yet; the TTL index that removes it is made by ``migrate`` and, so that
erased ids never linger where ``migrate`` was not run, by every :meth:`ErasedUsers.mark`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel

from memcompress.models import utc_now
from memcompress.repositories.database import ERASED_USERS, MongoDatabase
from memcompress.repositories.errors import UserErased

# Each tombstone goes at its own expires_at.
TOMBSTONE_TTL = IndexModel([("expires_at", ASCENDING)], name="expires", expireAfterSeconds=0)


class ErasedUsers:
    def __init__(self, database: MongoDatabase) -> None:
        self._tombstones = database.collection(ERASED_USERS)

    async def mark(self, user_id: str, keep_s: float) -> None:
        """Write (or extend) the user's tombstone: it lives until ``keep_s`` seconds from now."""
        await self._tombstones.create_indexes([TOMBSTONE_TTL])  # idempotent; forget is rare
        now = utc_now()
        await self._tombstones.update_one(
            {"_id": user_id},
            {"$set": {"expires_at": now + timedelta(seconds=keep_s)}, "$setOnInsert": {"erased_at": now}},
            upsert=True,
        )

    async def erased(self, user_id: str) -> bool:
        """Whether the user has a tombstone that has not expired (one the TTL monitor has not removed
        yet counts no more: the fence's length is ``expires_at``, see :mod:`memcompress.jobs.forget`)."""
        live = {"_id": user_id, "expires_at": {"$gt": utc_now()}}
        return await self._tombstones.find_one(live, {"_id": 1}) is not None

    async def undo_if_erased(self, user_id: str, undo: Callable[[], Awaitable[Any]]) -> None:
        """Step 2, after a write of ``user_id``: when the user has a tombstone, ``undo()`` the write and
        raise :class:`UserErased`."""
        if await self.erased(user_id):
            await undo()
            raise UserErased("the user was erased (memcompress forget); what this run wrote is undone")
