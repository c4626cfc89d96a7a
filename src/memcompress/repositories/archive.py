"""The archive of a history (``<collection>_archive``, ``RETENTION=archive``): the one sequence by which
both history adapters keep what they summarised.

What it guarantees: a summarised event is, at every moment, in the history or in the archive (a crash
between the steps leaves it in both, never in neither), and nothing is left in the archive of a user
``memcompress forget`` erased meanwhile (the erase fence, :mod:`memcompress.repositories.erasures`).

How, in steps (:meth:`Archive.move`; :meth:`Archive.keep` is steps 1 and 2, for what has no original):

1. Copy: one unordered insert of the copies; those the archive already holds (a repeat after a crash
   between copy and delete) are upserted by their key instead (the ``_id`` and, where ids are not the
   unit's own, its owner, so that another user's document with that ``_id`` still fails the trim). One
   insert costs the store about a quarter of one upsert per copy (docs/benchmarks.md).
2. Fence: look for the user's tombstone; when there is one, delete the copies (``written``: the filter
   of exactly what step 1 wrote) and raise :class:`~memcompress.repositories.errors.UserErased` before
   anything is deleted from the history.
3. Delete the originals (``delete``: the adapter's own exact trim of what was copied).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from memcompress.repositories.database import Document, MongoDatabase
from memcompress.repositories.erasures import ErasedUsers

DUPLICATE_KEY = 11000  # the server's error code for a write that would duplicate a unique key


@dataclass(frozen=True, slots=True)
class Copy:
    """One document for the archive (with its ``_id``), and the filter a repeat is upserted by."""

    document: Document
    key: Document


class Archive:
    def __init__(self, database: MongoDatabase, name: str) -> None:
        self.name = name
        self.collection: AsyncCollection[Document] = database.collection(name)
        self._erased = ErasedUsers(database)

    async def keep(self, user_id: str, copies: Sequence[Copy], written: Document) -> None:
        """Steps 1 and 2: write ``copies`` of ``user_id``'s documents, undone if the user was erased."""
        await self._copy(copies)
        await self._erased.undo_if_erased(user_id, partial(self.collection.delete_many, written))

    async def move(
        self, user_id: str, copies: Sequence[Copy], written: Document, delete: Callable[[], Awaitable[int]]
    ) -> int:
        """Steps 1 to 3; returns what ``delete`` removed."""
        await self.keep(user_id, copies, written)
        return await delete()

    async def _copy(self, copies: Sequence[Copy]) -> None:
        try:
            await self.collection.insert_many([copy.document for copy in copies], ordered=False)
        except BulkWriteError as error:
            failed = error.details.get("writeErrors", [])
            if error.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in failed):
                raise
            again = [copies[e["index"]] for e in failed]
            await self.collection.bulk_write(
                [ReplaceOne(copy.key, copy.document, upsert=True) for copy in again], ordered=False
            )
