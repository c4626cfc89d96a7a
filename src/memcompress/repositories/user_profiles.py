"""``user_profiles``: one document per user; the running summary is fenced by ``summary_version``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from memcompress.metrics import Metrics
from memcompress.models import PROFILE_FIELDS, FoldState, ProfileDefaults, UserProfile, Watermark, utc_now
from memcompress.repositories.database import USER_PROFILES, Document, MongoDatabase
from memcompress.repositories.documents import document_to_profile
from memcompress.repositories.erasures import ErasedUsers
from memcompress.repositories.protocols import ANY_SUMMARY, ExpectedSummary
from memcompress.repositories.summaries import (
    SummaryFields,
    fenced_summary_write,
    fold_state,
    fold_state_pipeline,
)

PROFILE_SUMMARY = SummaryFields()  # every field at the profile's top level


class MongoUserProfileRepository:
    def __init__(
        self,
        database: MongoDatabase,
        metrics: Metrics | None = None,
        defaults: ProfileDefaults | None = None,
    ) -> None:
        self._profiles = database.collection(USER_PROFILES)
        self._metrics = metrics or Metrics()
        self._defaults = defaults or ProfileDefaults()
        self._erased = ErasedUsers(database)

    def _new_document(self, user_id: str) -> Document:
        return UserProfile.new(user_id, self._defaults).model_dump(mode="python")

    async def get(self, user_id: str) -> UserProfile:
        """The user's profile, created with the defaults on first read (atomically).

        A profile created here for a user erased meanwhile (``memcompress forget``) is removed again
        and :class:`~memcompress.repositories.errors.UserErased` raised (the erase fence)."""
        created = ObjectId()  # the _id this call gives a profile it creates: how it knows it created one
        doc = await self._profiles.find_one_and_update(
            {"user_id": user_id},
            {"$setOnInsert": {"_id": created, **self._new_document(user_id)}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        self._metrics.profile_reads.inc()
        assert doc is not None  # upsert with AFTER always returns the document
        if doc["_id"] == created:
            await self._erased.undo_if_erased(user_id, lambda: self._profiles.delete_one({"_id": created}))
        return document_to_profile(USER_PROFILES, doc)

    async def find(self, user_id: str) -> UserProfile | None:
        """The user's profile if there is one; creates nothing (dry runs use this)."""
        doc = await self._profiles.find_one({"user_id": user_id})
        self._metrics.profile_reads.inc()
        return None if doc is None else document_to_profile(USER_PROFILES, doc)

    async def find_for_fold(self, user_id: str, compressed_since: datetime) -> FoldState:
        """The profile if there is one (creates nothing), the user's overrides and how many runs
        compressed the user since ``compressed_since``: one aggregation (:func:`fold_state_pipeline`)."""
        match: list[Document] = [{"$match": {"user_id": user_id}}, {"$limit": 1}]
        pipeline = fold_state_pipeline(match, user_id, compressed_since)
        rows = await (await self._profiles.aggregate(pipeline)).to_list()
        self._metrics.profile_reads.inc()
        return fold_state(rows, lambda row: document_to_profile(USER_PROFILES, row), self._metrics)

    async def save(self, profile: UserProfile) -> None:
        """Upsert the app-owned fields. The summary and its bookkeeping are never overwritten here:
        a stale copy of the profile must not roll back a summary whose events are already trimmed."""
        now = utc_now()
        owned = {name: getattr(profile, name) for name in PROFILE_FIELDS}
        on_insert = {k: v for k, v in self._new_document(profile.user_id).items() if k not in owned}
        on_insert.pop("updated_at")
        await self._profiles.update_one(
            {"user_id": profile.user_id},
            {"$set": {**owned, "updated_at": now}, "$setOnInsert": on_insert},
            upsert=True,
        )
        self._metrics.profile_writes.labels(kind="save").inc()

    async def update_summary_if_version(
        self,
        user_id: str,
        *,
        expected_version: int,
        summary: str,
        watermark: Watermark | None,
        folded_refs: Sequence[Any],
        profile_ref: Any = None,
        create: bool = False,
        expected_summary: ExpectedSummary = ANY_SUMMARY,
    ) -> bool:
        """Store a new summary only if the version is still ``expected_version`` (fencing; a profile
        the app created has no version yet, which counts as 0), given ``expected_summary`` only if
        ``memory_summary`` is still that text (``None`` matches a missing field and a null alike: both
        read as no summary; the app writes the summary without bumping the version), and, given
        ``profile_ref``
        (``UserProfile.ref``), only into that very profile document: a profile created after the one
        read (after a ``forget``, say) is another document, and a summary of the erased history never
        lands in it. With ``create`` (the user had no profile when read), this write creates the
        profile, with the defaults, and writes into no other: when a profile of the user appeared
        meanwhile (the app's, or one made after a ``forget``), the unique index on ``user_id`` refuses
        it and this writer lost. One created for a user erased meanwhile is removed again and
        :class:`~memcompress.repositories.errors.UserErased` raised (the erase fence).

        Records ``folded_refs`` as the pending trim of the new version in the same atomic write, so
        the events' removal can always be finished later (it replaces the mark of an earlier version,
        whose trim is finished before any new summary is stored), and keeps the worker's own copy of
        the summary (``summary_copy``, ``summary_history``) that detects an app overwriting it.
        Returns whether this writer won. Writes only fields the worker owns (and ``updated_at``; a
        profile it creates gets the defaults).
        """
        fence, update = fenced_summary_write(
            PROFILE_SUMMARY,
            expected_version=expected_version,
            summary=summary,
            watermark=watermark,
            folded_refs=folded_refs,
            expected_summary=expected_summary,
        )
        created = ObjectId()  # the _id of a profile this write creates
        if create:  # matches no document: inserts one, or fails on the unique index
            query: Document = {"user_id": user_id, "_id": created}
            written_above = {*update["$set"], "summary_history", "events_summarized", "user_id"}
            defaults = self._new_document(user_id).items()
            update["$setOnInsert"] = {name: value for name, value in defaults if name not in written_above}
        else:
            query = {"user_id": user_id, **fence}
            if profile_ref is not None:
                query["_id"] = profile_ref
        try:
            result = await self._profiles.update_one(query, update, upsert=create)
        except DuplicateKeyError:  # the user has a profile by now: this writer lost
            return False
        if result.upserted_id is not None:
            await self._erased.undo_if_erased(user_id, lambda: self._profiles.delete_one({"_id": created}))
        won = result.modified_count == 1 or result.upserted_id is not None
        if won:
            self._metrics.profile_writes.labels(kind="summary").inc()
        return won

    async def clear_pending_trim(self, user_id: str, summary_version: int) -> bool:
        result = await self._profiles.update_one(
            {"user_id": user_id, "pending_trim.summary_version": summary_version},
            {"$set": {"pending_trim": None}},
        )
        return result.modified_count == 1
