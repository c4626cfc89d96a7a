"""``user_profiles``: one document per user; the running summary is fenced by ``summary_version``
(:class:`MongoUserProfileRepository`).

What the two summary stores share: ``user_profiles`` (one document per user) and the worker's fields
of a conversation document (the ``conversations`` layout). Both hold a running summary fenced by a
version; they differ only in where the fields are (:class:`SummaryFields`).

- The fold's one read (:func:`fold_state_pipeline`, :func:`fold_state`): the summary document, the
  unit's overrides and its recent runs in one aggregation.
- The fenced summary write (:func:`fenced_summary_write`). What it guarantees: a summary is stored only
  over the version (and, when asked, the text) the run read, and it records the folded refs as the
  pending trim of the new version in the same atomic write, so that the trim can always be finished
  later. How, in steps:

  1. The filter: the version read (0 and a missing field alike, for a document never summarised) and,
     given ``expected_summary``, the stored text as read (``None`` matches a missing field and a null).
  2. The update: the summary, the worker's own copy of it (``summary_copy``, which detects an app
     overwriting it), the new version, the watermark, the pending trim (none without refs), the time;
     the summary's hash pushed onto the last :data:`SUMMARY_HISTORY`; the lifetime count of
     summarised events increased.
  3. The caller sends both in one ``update_one`` on its own document (and adds its own conditions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from memcompress.metrics import Metrics
from memcompress.models import (
    PROFILE_FIELDS,
    FoldState,
    ProfileDefaults,
    RunNote,
    UserOverrides,
    UserProfile,
    Watermark,
    summary_hash,
    utc_now,
)
from memcompress.repositories.database import (
    COMPACTION_LOG,
    OVERRIDES,
    USER_PROFILES,
    Document,
    MongoDatabase,
)
from memcompress.repositories.documents import document_to_profile, valid_models
from memcompress.repositories.erasures import ErasedUsers
from memcompress.repositories.protocols import ANY_SUMMARY, ExpectedSummary

SUMMARY_HISTORY = 5  # hashes of the worker's recent summaries kept on the profile
# Keys under which `find_for_fold` returns the documents of the other collections it reads.
OVERRIDES_KEY, RUNS_KEY = "__overrides", "__runs"
RUNS_READ = 1_000  # at most this many runs of the period are read (the daily cap keeps them far fewer)


@dataclass(frozen=True, slots=True)
class SummaryFields:
    """Where a summary document keeps the worker's fields: ``summary`` and ``version`` by name, the
    rest (pending trim, watermark, copy, history, count, time) under ``state`` (a path prefix, ``""``
    for the document's top level)."""

    summary: str = "memory_summary"
    version: str = "summary_version"
    state: str = ""

    def at(self, name: str) -> str:
        """The path of one of the bookkeeping fields."""
        return self.state + name


def fenced_summary_write(
    fields: SummaryFields,
    *,
    expected_version: int,
    summary: str,
    watermark: Watermark | None,
    folded_refs: Sequence[Any],
    expected_summary: ExpectedSummary = ANY_SUMMARY,
) -> tuple[Document, Document]:
    """Steps 1 and 2 (see the module): the fence's conditions and the update of a summary write."""
    fence: Document = {fields.version: expected_version if expected_version else {"$in": [0, None]}}
    if expected_summary is not ANY_SUMMARY:  # None matches a missing field and a null alike
        fence[fields.summary] = expected_summary
    new_version = expected_version + 1
    pending = {"summary_version": new_version, "refs": list(folded_refs)} if folded_refs else None
    update: Document = {
        "$set": {
            fields.summary: summary,
            fields.at("summary_copy"): summary,
            fields.version: new_version,
            fields.at("watermark"): None if watermark is None else watermark.model_dump(),
            fields.at("pending_trim"): pending,
            fields.at("updated_at"): utc_now(),
        },
        "$push": {
            fields.at("summary_history"): {"$each": [summary_hash(summary)], "$slice": -SUMMARY_HISTORY}
        },
        "$inc": {fields.at("events_summarized"): len(folded_refs)},
    }
    return fence, update


def fold_state_pipeline(
    summary_stages: list[Document], user_id: str, compressed_since: datetime
) -> list[Document]:
    """What the fold knows of a user in one aggregation: the document ``summary_stages`` select (the
    profile; a conversation's summary fields), with the user's overrides and its runs since
    ``compressed_since`` (newest first: outcome, error class, LLM calls, when) added by ``$unionWith``,
    each under a key of its own."""
    since = {"user_id": user_id, "finished_at": {"$gte": compressed_since}}
    return [
        *summary_stages,
        {
            "$unionWith": {
                "coll": OVERRIDES,
                "pipeline": [{"$match": {"_id": user_id}}, {"$replaceWith": {OVERRIDES_KEY: "$$ROOT"}}],
            }
        },
        {
            "$unionWith": {
                "coll": COMPACTION_LOG,
                "pipeline": [
                    {"$match": since},
                    {"$sort": {"finished_at": -1}},
                    {"$limit": RUNS_READ},
                    {
                        "$group": {
                            "_id": None,
                            RUNS_KEY: {
                                "$push": {
                                    "outcome": "$outcome",
                                    "error_class": "$error_class",
                                    "llm_calls": "$llm_calls",
                                    "finished_at": "$finished_at",
                                }
                            },
                        }
                    },
                ],
            }
        },
    ]


def fold_state(
    rows: list[Document], profile_of: Callable[[Document], UserProfile | None], metrics: Metrics
) -> FoldState:
    """:func:`fold_state_pipeline`'s rows as a :class:`FoldState` (``profile_of``: the profile a summary
    row stands for, None when it stands for none)."""
    profile: UserProfile | None = None
    overrides: list[UserOverrides] = []
    runs: list[RunNote] = []
    for row in rows:
        if OVERRIDES_KEY in row:
            overrides = valid_models(UserOverrides, OVERRIDES, [row[OVERRIDES_KEY]], metrics)
        elif RUNS_KEY in row:
            runs = [_run_note(run) for run in row[RUNS_KEY]]
        else:
            profile = profile_of(row)
    return FoldState.of_runs(profile, overrides[0] if overrides else None, runs)


def _run_note(run: Document) -> RunNote:
    calls = run.get("llm_calls")
    return RunNote(
        outcome=str(run.get("outcome")),
        error_class=run.get("error_class") if isinstance(run.get("error_class"), str) else None,
        llm_calls=calls if isinstance(calls, int) else 0,
        finished_at=run.get("finished_at"),
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
