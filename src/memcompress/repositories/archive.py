"""The archive of a history (``<collection>_archive``, ``RETENTION=archive``): the one sequence by which
both history adapters keep what they summarised.

What it guarantees: a summarised event is, at every moment, in the history or in the archive (a crash
between the steps leaves it in both, never in neither), and nothing is left in the archive of a user
``memcompress forget`` erased meanwhile (the erase fence, :mod:`memcompress.repositories.erasures`).

How, in steps (:meth:`Archive.move`; :meth:`Archive.keep` is steps 1 and 2, for what has no original):

1. Copy: one unordered bulk write of the copies, each an upsert by its ``_id`` (a repeat after a crash
   overwrites its copy) or an insert of a new document.
2. Fence: look for the user's tombstone; when there is one, delete the copies (``written``: the filter
   of exactly what step 1 wrote) and raise :class:`~memcompress.repositories.errors.UserErased` before
   anything is deleted from the history.
3. Delete the originals (``delete``: the adapter's own exact trim of what was copied).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from pymongo import InsertOne, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection

from memcompress.repositories.database import Document, MongoDatabase
from memcompress.repositories.erasures import ErasedUsers

Copy = InsertOne[Document] | ReplaceOne[Document]


class Archive:
    def __init__(self, database: MongoDatabase, name: str) -> None:
        self.name = name
        self.collection: AsyncCollection[Document] = database.collection(name)
        self._erased = ErasedUsers(database)

    async def keep(self, user_id: str, copies: Sequence[Copy], written: Document) -> None:
        """Steps 1 and 2: write ``copies`` of ``user_id``'s documents, undone if the user was erased."""
        await self.collection.bulk_write(list(copies), ordered=False)
        await self._erased.undo_if_erased(user_id, partial(self.collection.delete_many, written))

    async def move(
        self, user_id: str, copies: Sequence[Copy], written: Document, delete: Callable[[], Awaitable[int]]
    ) -> int:
        """Steps 1 to 3; returns what ``delete`` removed."""
        await self.keep(user_id, copies, written)
        return await delete()
