"""One document per event (``user_memory``, or the ``messages`` layout): read bounded slices, trim
exactly the summarised events, scan for backlog (the app appends; see ``memcompress.testing.app_layouts``
for how the tests and the demo do it).

The names come from the :class:`~memcompress.layouts.StoreLayout`: the collection, the field naming the
user (``user_id``; ``lead_id`` for ``messages``) and the one ordering the history (``created_at``;
``timestamp``). Documents are read as they are stored and seen by the rest of memcompress under the
default names (:meth:`MongoUserMemoryRepository._as_event`), so one fold serves both layouts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable, Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Any
from uuid import uuid4

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.command_cursor import AsyncCommandCursor

from memcompress.layouts import StoreLayout
from memcompress.metrics import Metrics
from memcompress.models import (
    SUMMARY_LINE_ROLE,
    Backlog,
    HistorySize,
    InvalidUserId,
    MemoryEvent,
    RecentHistory,
    StoredEvent,
    UserBacklog,
    shown_user_id,
    utc_now,
    valid_user_id,
)
from memcompress.repositories.archive import Archive, Copy
from memcompress.repositories.database import Document, MongoDatabase
from memcompress.repositories.documents import DATED, EventRules, valid_events
from memcompress.settings import BATCH_SIZE

# Upper bound on ids per delete/archive command, to keep each command small.
REFS_PER_COMMAND = 1000
# Users per aggregation of an incremental scan (their ids are in the command).
USERS_PER_SCAN_QUERY = 1000


def _chunks(refs: Sequence[Any], size: int = REFS_PER_COMMAND) -> list[list[Any]]:
    return [list(refs[i : i + size]) for i in range(0, len(refs), size)]


def _trim_queries(
    user_id: str, refs: Sequence[Any], owner: str = "user_id", order: str = "created_at"
) -> list[Document]:
    """The filters that match exactly the documents ``refs`` name (see ``documents.event_ref``), and
    only documents of ``user_id``, at most ``REFS_PER_COMMAND`` refs per filter.

    Every filter names the user, so another user's document is never matched, even one with a reused
    ``_id`` (and on a cluster sharded by ``user_id`` the command goes to one shard). A ref that names an
    ``event_id`` also matches on it, and one without on its ``created_at``, so a document that took
    over the ``_id`` of a summarised one is kept. Refs written by earlier versions name no time, or are
    bare ``_id``s: matched by what they name and the user. A ref of another user is skipped.

    The user is matched with ``$in`` of that one id: the same match as an equality (and a shard key
    match all the same), but it keeps a server that plans by the first usable index (SecantusDB) on
    the ``_id`` index instead of reading the whole of the user's history for every trim.

    ``owner`` and ``order``: the layout's names of ``user_id`` and ``created_at`` (refs use the latter).
    """
    user = {"$in": [user_id]}
    by_kind: dict[str, list[Any]] = {"event_id": [], "created_at": [], "undated": [], "bare": []}
    for ref in refs:
        if not isinstance(ref, dict):
            by_kind["bare"].append(ref)
        elif ref.get("user_id") == user_id:
            kind = next((key for key in ("event_id", "created_at") if key in ref), "undated")
            by_kind[kind].append(ref)
    queries: list[Document] = []
    for part in _chunks(by_kind["event_id"]):
        ids, event_ids = [r["_id"] for r in part], [r["event_id"] for r in part]
        queries.append({"_id": {"$in": ids}, owner: user, "event_id": {"$in": event_ids}})
    for part in _chunks(by_kind["created_at"]):
        ids, times = [r["_id"] for r in part], [r["created_at"] for r in part]
        dated = {"$in": times}
        queries.append({"_id": {"$in": ids}, owner: user, "event_id": {"$exists": False}, order: dated})
    for part in _chunks(by_kind["undated"]):  # refs of an earlier version
        ids = [r["_id"] for r in part]
        queries.append({"_id": {"$in": ids}, owner: user, "event_id": {"$exists": False}})
    for part in _chunks(by_kind["bare"]):
        queries.append({"_id": {"$in": part}, owner: user})
    return queries


def _own_refs(user_id: str, refs: Sequence[Any]) -> list[Any]:
    """The refs ``_trim_queries`` may match: bare ``_id``s and refs of ``user_id``."""
    return [ref for ref in refs if not isinstance(ref, dict) or ref.get("user_id") == user_id]


def _key(value: Any) -> Hashable:
    return value if isinstance(value, Hashable) else repr(value)


def _names(ref: Any, doc: Document, order: str) -> bool:
    """Whether ``doc`` (one of the ref's user, with the ref's ``_id``) is the document ``ref`` names:
    the check ``_trim_queries`` makes on the server, made in code (the same cases, in the same order)."""
    if not isinstance(ref, dict):
        return True
    if "event_id" in ref:
        return bool(doc.get("event_id") == ref["event_id"])
    if "event_id" in doc:
        return False
    return "created_at" not in ref or bool(doc.get(order) == ref["created_at"])


def _named_by(refs: Iterable[Any], doc: Document, order: str) -> Any | None:
    """The first of ``refs`` (those with the document's ``_id``) that names ``doc``, if any."""
    return next((ref for ref in refs if _names(ref, doc, order)), None)


# Characters of a string `content` (content-part lists and tool calls count as 0: an estimate).
CONTENT_CHARS = {"$cond": [{"$eq": [{"$type": "$content"}, "string"]}, {"$strLenCP": "$content"}, 0]}


class MongoUserMemoryRepository:
    def __init__(
        self,
        database: MongoDatabase,
        metrics: Metrics | None = None,
        rules: EventRules | None = None,
        layout: StoreLayout | None = None,
    ) -> None:
        self._layout = layout = layout or StoreLayout()
        self._events = database.collection(layout.collection)
        self._archive = Archive(database, layout.archive)
        self._metrics = metrics or Metrics()
        self._rules = rules or EventRules()
        self._owner, self._order = layout.owner, layout.order
        # The fold's total order. The (owner, order, _id) index serves both directions.
        self._oldest_first = [(layout.order, 1), ("_id", 1)]
        self._newest_first = [(layout.order, -1), ("_id", -1)]

    def _as_event(self, doc: Document) -> Document:
        """A stored document under the default names (``user_id``, ``created_at``) the rest reads."""
        if (self._owner, self._order) == ("user_id", "created_at"):
            return doc
        renamed = {k: v for k, v in doc.items() if k not in ("user_id", "created_at")}
        for name, field in (("user_id", self._owner), ("created_at", self._order)):
            if field in doc:
                renamed[name] = doc[field]
        return renamed

    def _valid(self, collection: str, docs: Iterable[Document]) -> Iterable[StoredEvent]:
        return valid_events(collection, docs, self._metrics, self._rules)

    async def get_recent_events(self, user_id: str, limit: int) -> list[MemoryEvent]:
        """The newest ``limit`` documents of the user, oldest first; malformed ones are skipped."""
        if limit <= 0:
            return []
        query = {self._owner: user_id}
        docs = await self._events.find(query).sort(self._newest_first).limit(limit).to_list()
        return [
            stored.event
            for stored in self._valid(self._layout.collection, map(self._as_event, reversed(docs)))
        ]

    async def count_events(self, user_id: str) -> int:
        return await self._events.count_documents({self._owner: user_id})

    async def recent_history(self, user_id: str, limit: int, pending: Sequence[Any] = ()) -> RecentHistory:
        """The user's newest ``limit`` documents in one index range read, newest first, and the sizes
        of the whole history: counted from those documents when they are all of the user's (fewer
        than ``limit``), else by one aggregation. ``pending`` (a pending trim's refs): whether any of
        the documents they name may still be stored."""
        query = {self._owner: user_id}
        docs = [
            self._as_event(doc)
            for doc in await self._events.find(query).sort(self._newest_first).limit(limit).to_list()
        ]
        docs.reverse()
        complete = len(docs) < limit
        foldable = [
            doc for doc in docs if isinstance(doc.get("created_at"), datetime) and self._rules.foldable(doc)
        ]
        events = list(self._valid(self._layout.collection, foldable))
        if not complete:
            return RecentHistory(await self._history_size(user_id), events, complete, pending_stored=True)
        size = HistorySize(
            events=len(foldable),
            chars=sum(len(doc["content"]) for doc in foldable if isinstance(doc.get("content"), str)),
            stored=len(docs),
            pinned=sum(self._rules.pinned(doc) for doc in docs),
        )
        pending_ids = [ref["_id"] if isinstance(ref, dict) else ref for ref in pending]
        stored = any(doc["_id"] in pending_ids for doc in docs) if pending_ids else False
        return RecentHistory(size, events, complete, pending_stored=stored)

    async def _history_size(self, user_id: str) -> HistorySize:
        """All of the user's documents, the pinned ones and the foldable ones (see
        ``documents.EventRules``: what the threshold, the scan and ``keep_last`` count, with their
        content's characters), in one aggregation."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {self._owner: user_id}},
            {
                "$facet": {
                    "stored": [{"$count": "n"}],
                    "pinned": [{"$match": self._rules.pinned_query()}, {"$count": "n"}],
                    "foldable": [
                        {"$match": {self._order: DATED, **self._rules.foldable_query()}},
                        {"$group": {"_id": None, "n": {"$sum": 1}, "chars": {"$sum": CONTENT_CHARS}}},
                    ],
                }
            },
        ]
        rows = await (await self._events.aggregate(pipeline)).to_list()
        facets = rows[0] if rows else {}

        def first(name: str, field: str = "n") -> int:
            found = facets.get(name) or [{}]
            return int(found[0].get(field, 0))

        return HistorySize(
            events=first("foldable"),
            chars=first("foldable", "chars"),
            stored=first("stored"),
            pinned=first("pinned"),
        )

    async def unfoldable_refs(self, user_id: str, limit: int) -> list[Any]:
        """``_id``s of the user's documents the fold cannot use (kept, never counted; pinned ones are not
        among them), for the run's report."""
        foldable = {self._order: DATED, **self._rules.foldable_query()}
        query = {self._owner: user_id, "$nor": [foldable, self._rules.pinned_query()]}
        return [doc["_id"] for doc in await self._events.find(query, {"_id": 1}).limit(limit).to_list()]

    async def iter_oldest(
        self, user_id: str, *, max_documents: int | None = None, batch_size: int = BATCH_SIZE
    ) -> AsyncIterator[StoredEvent]:
        """The user's events oldest first in ``(created_at, _id)`` order, one bounded query per batch.

        Pages by keyset (never skip/offset), so deleting already-yielded events is safe. Only
        documents with a date ``created_at`` can be ordered; documents that are not foldable are
        passed over without being counted, and ``max_documents`` counts the foldable ones (the same
        ones ``foldable_size`` counts), so the caller's "all but the newest N" keeps exactly
        the newest N foldable events. Documents that fail validation are skipped, logged by ``_id``.
        """
        events, name = self._events, self._layout.collection
        async for stored in self._iter_oldest(events, name, user_id, max_documents, batch_size):
            yield stored

    async def iter_archived_oldest(
        self, user_id: str, *, batch_size: int = BATCH_SIZE
    ) -> AsyncIterator[StoredEvent]:
        """The user's archived events (``<collection>_archive``, written with ``RETENTION=archive``) in
        the fold's order and by the same rules as :meth:`iter_oldest`, one bounded query per batch."""
        archive = self._archive
        async for stored in self._iter_oldest(archive.collection, archive.name, user_id, None, batch_size):
            yield stored

    async def _iter_oldest(
        self,
        collection: AsyncCollection[Document],
        name: str,
        user_id: str,
        max_documents: int | None,
        batch_size: int,
    ) -> AsyncIterator[StoredEvent]:
        remaining = max_documents
        after: tuple[datetime, Any] | None = None
        while remaining is None or remaining > 0:
            size = batch_size if remaining is None else min(batch_size, remaining)
            docs = [self._as_event(doc) for doc in await self._page(collection, user_id, after, size)]
            foldable = [doc for doc in docs if self._rules.foldable(doc)]
            for stored in self._valid(name, foldable):
                yield stored
            if len(docs) < size:
                return
            if remaining is not None:
                remaining -= len(foldable)
            after = (docs[-1]["created_at"], docs[-1]["_id"])

    async def _page(
        self,
        collection: AsyncCollection[Document],
        user_id: str,
        after: tuple[datetime, Any] | None,
        size: int,
    ) -> list[Document]:
        """The next ``size`` documents after ``after`` in ``(created_at, _id)`` order.

        Two index range reads rather than one ``$or`` query, which some servers answer with a
        collection scan: first the rest of the tie at ``after``'s ``created_at``, then later ones.
        """
        owner, order, oldest_first = self._owner, self._order, self._oldest_first
        if after is None:
            query: Document = {owner: user_id, order: DATED}
            return await collection.find(query).sort(oldest_first).limit(size).to_list()
        created_at, ref = after
        tie = {owner: user_id, order: created_at, "_id": {"$gt": ref}}
        docs = await collection.find(tie).sort([("_id", 1)]).limit(size).to_list()
        if len(docs) < size:
            later = {owner: user_id, order: {"$gt": created_at}}
            docs += await collection.find(later).sort(oldest_first).limit(size - len(docs)).to_list()
        return docs

    async def delete_by_refs(self, user_id: str, refs: Sequence[Any]) -> int:
        """Delete exactly these documents of ``user_id``; deleting one that is already gone is a no-op."""
        deleted = 0
        for query in _trim_queries(user_id, refs, self._owner, self._order):
            result = await self._events.delete_many(query)
            deleted += result.deleted_count
        return deleted

    async def archive_by_refs(self, user_id: str, refs: Sequence[Any]) -> int:
        """Move exactly these documents of ``user_id`` to the archive collection; safe to repeat after
        a crash.

        By the archive's sequence (:mod:`memcompress.repositories.archive`): copies first (an upsert by
        ``_id`` and user, so a repeat does not duplicate), undone for a user erased meanwhile, deletes
        last.

        The documents to copy are read by ``_id`` and user only, with no hint, and the rest of each ref
        (``event_id``, or ``created_at``) is checked in code (:func:`_names`). On MongoDB the planner
        serves that read from the ``_id`` index, one point bound per ref (the user's index would read the
        user's whole history); SecantusDB looks each ``_id`` up. (Hinting ``{_id: 1}`` made SecantusDB
        decode and sort every document of the collection, ~3 s a call at the demo's size, and an
        ``event_id`` ``$in`` in the read doubles its cost.) The delete then takes only what was copied,
        with the exact filters of ``_trim_queries``: a document that takes a summarised ``_id`` over
        between the read and the delete is neither copied nor deleted.
        """
        moved = 0
        archived_at = utc_now()
        user = {"$in": [user_id]}  # as in _trim_queries: SecantusDB plans by the first usable index
        for part in _chunks(_own_refs(user_id, refs)):
            by_id: dict[Hashable, list[Any]] = {}
            for ref in part:
                by_id.setdefault(_key(ref["_id"] if isinstance(ref, dict) else ref), []).append(ref)
            ids = [ref["_id"] if isinstance(ref, dict) else ref for ref in part]
            found = await self._events.find({"_id": {"$in": ids}, self._owner: user}).to_list()
            named = ((doc, _named_by(by_id.get(_key(doc["_id"]), []), doc, self._order)) for doc in found)
            copied = [(doc, ref) for doc, ref in named if ref is not None]
            if not copied:
                continue
            copies = [
                Copy({**doc, "archived_at": archived_at}, {"_id": doc["_id"], self._owner: user_id})
                for doc, _ in copied
            ]
            written = {"_id": {"$in": [doc["_id"] for doc, _ in copied]}, self._owner: user_id}
            moved += await self._archive.move(
                user_id, copies, written, partial(self.delete_by_refs, user_id, [ref for _, ref in copied])
            )
        return moved

    async def archive_summary_lines(self, user_id: str, lines: Sequence[str]) -> None:
        if not lines:
            return
        now = utc_now()
        docs = [
            {
                "_id": ObjectId(),
                self._owner: user_id,
                "event_id": str(uuid4()),
                "role": SUMMARY_LINE_ROLE,
                "content": line,
                self._order: now,
                "archived_at": now,
            }
            for line in lines
        ]
        written = {"_id": {"$in": [doc["_id"] for doc in docs]}, self._owner: user_id}
        await self._archive.keep(user_id, [Copy(doc, {"_id": doc["_id"]}) for doc in docs], written)

    async def users_over_threshold(self, threshold: int, limit: int | None = None) -> list[UserBacklog]:
        """Users with more than ``threshold`` foldable events, most first (one aggregation). Counts what
        the fold counts, so a user whose documents it must skip is not queued again and again."""
        return (await self.scan_backlog(threshold, limit)).users

    async def scan_backlog(
        self, threshold: int, limit: int | None = None, since: datetime | None = None
    ) -> Backlog:
        """``users_over_threshold``, and the ``user_id`` values over ``threshold`` that no job can take
        (not a string, empty, too long), from the same aggregation. ``limit`` counts both.

        With ``since`` (an incremental scan), the users are first found on the ``(created_at,
        user_id)`` index: those with an event created since then; then only their events are counted,
        ``USERS_PER_SCAN_QUERY`` users per aggregation on the ``(user_id, ...)`` index. Its cost
        follows the events appended since, not the whole history.
        """
        if since is None:
            return await self._backlog(await self._events.aggregate(self._backlog_pipeline(threshold, limit)))
        recent: list[dict[str, Any]] = [
            {"$match": {self._order: {"$gte": since}}},
            {"$group": {"_id": "$" + self._owner}},
        ]
        active = [row["_id"] async for row in await self._events.aggregate(recent)]
        backlog = Backlog(users=[], invalid=[], active_users=len(active))
        for part in _chunks(active, USERS_PER_SCAN_QUERY):
            pipeline = [{"$match": {self._owner: {"$in": part}}}, *self._backlog_pipeline(threshold, limit)]
            found = await self._backlog(await self._events.aggregate(pipeline))
            backlog.users.extend(found.users)
            backlog.invalid.extend(found.invalid)
        backlog.users.sort(key=lambda user: (-user.event_count, user.user_id))
        backlog.invalid.sort(key=lambda invalid: -invalid.event_count)
        if limit is not None:  # as the full scan: most events first, invalid ids included in the count
            backlog.users[:] = backlog.users[:limit]
            backlog.invalid[:] = backlog.invalid[: limit - len(backlog.users)]
        return backlog

    def _backlog_pipeline(self, threshold: int, limit: int | None) -> list[dict[str, Any]]:
        pipeline: list[dict[str, Any]] = [
            {"$match": {self._order: DATED}},
            {"$match": self._rules.foldable_query()},
            {
                "$group": {
                    "_id": "$" + self._owner,
                    "event_count": {"$sum": 1},
                    "chars": {"$sum": CONTENT_CHARS},
                    "newest": {"$max": "$" + self._order},
                }
            },
            {"$match": {"event_count": {"$gt": threshold}}},
            {"$sort": {"event_count": -1, "_id": 1}},
        ]
        if limit is not None:
            pipeline.append({"$limit": limit})
        return pipeline

    @staticmethod
    async def _backlog(cursor: AsyncCommandCursor[Document]) -> Backlog:
        backlog = Backlog(users=[], invalid=[])
        async for row in cursor:
            if valid_user_id(row["_id"]):
                backlog.users.append(
                    UserBacklog(
                        row["_id"], row["event_count"], newest_event_at=row["newest"], chars=row["chars"]
                    )
                )
            else:
                backlog.invalid.append(InvalidUserId(shown_user_id(row["_id"]), row["event_count"]))
        return backlog
