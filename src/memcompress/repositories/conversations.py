"""The ``conversations`` layout: one document per conversation, its messages in an array the app appends
to with ``$push`` (``{_id, context_id, user_id, messages: [{role, content, timestamp}], created_at,
updated_at}``). The unit of compression is one conversation, named by its ``_id`` as a string.

What the worker owns on a conversation document (the app never writes these):

- ``memory_summary``: the running summary of the messages removed from the front of the array;
- ``memory_summary_version``: the fence of every summary write (missing counts as 0);
- ``memory_trimmed``: how many messages have been removed from the front so far. With it every message
  has a fixed sequence number (``memory_trimmed`` + its position), which is its ref: messages have no
  ids of their own, and positions move when the front is cut;
- ``memory_state``: the rest of the fold's bookkeeping (pending trim, watermark, the worker's copy of
  the summary and hashes of its recent ones, the lifetime count of summarised messages).

How the guarantees carry over (the fold itself is :mod:`memcompress.jobs.compress`, unchanged):

1. The summary write is conditional on ``memory_summary_version`` and on the conversation's ``_id``;
   it never creates a document (a conversation that is gone takes no summary).
2. The trim cuts the array's front up to the end of the summarised run of sequence numbers, in one
   pipeline update that computes the cut from ``memory_trimmed`` on the server: a message appended
   meanwhile (at the back) is never cut, and a repeated trim cuts nothing (``memory_trimmed`` is
   already past it). It only cuts a run that starts where the front is; the fold never reads past a
   message it cannot use (:meth:`MongoConversationMemory.iter_oldest`), so every run it summarises does.
   One predicate (:meth:`MongoConversationMemory._parse`) decides for every read whether the fold may
   use a message, so what is counted, summarised and cut never disagree; an empty message (no text,
   no tool calls) is used, shown to the summariser as ``[empty message]``, and cut with its run.
3. Reads are bounded: the newest ``limit`` messages with ``$slice``, older ones page by page, never the
   whole array.
4. It relies on the app only appending (its repository has no other write to ``messages``): a program
   that removes or reorders messages would make sequence numbers name other messages. Each ref
   carries a hash of its message's role, content and timestamp, and a trim first checks that the
   messages at the cut's positions are the ones summarised, then cuts on condition that the front is
   still exactly those messages. When they are not, nothing is cut and the trim raises
   :class:`ConversationChanged`: the fold drops its pending trim and stops with that reason, and the
   next run summarises the messages still stored again (repeated in the summary, never lost; the one
   case where a message is sent to the LLM twice, caused by a program that broke the append-only
   rule).
5. ``RETENTION=archive`` copies the messages to ``conversations_archive`` (``_id`` = conversation id and
   sequence number, so a repeat overwrites) before the cut.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import bson
from bson import ObjectId

from memcompress.layouts import StoreLayout
from memcompress.metrics import Metrics
from memcompress.models import (
    SUMMARY_LINE_ROLE,
    Backlog,
    FoldState,
    HistorySize,
    InvalidUserId,
    MemoryEvent,
    RecentHistory,
    StoredEvent,
    UserBacklog,
    UserProfile,
    Watermark,
    utc_now,
)
from memcompress.repositories.archive import Archive, Copy
from memcompress.repositories.database import Document, MongoDatabase
from memcompress.repositories.documents import (
    EventRules,
    document_to_event,
    document_to_profile,
    report_malformed,
)
from memcompress.repositories.errors import HistoryChanged, MalformedDocument
from memcompress.repositories.protocols import ANY_SUMMARY, ExpectedSummary
from memcompress.repositories.user_profiles import (
    SummaryFields,
    fenced_summary_write,
    fold_state,
    fold_state_pipeline,
)
from memcompress.settings import BATCH_SIZE

SUMMARY, VERSION, TRIMMED, STATE = (
    "memory_summary",
    "memory_summary_version",
    "memory_trimmed",
    "memory_state",
)
WORKER_FIELDS = (SUMMARY, VERSION, TRIMMED, STATE)
CONVERSATION_SUMMARY = SummaryFields(SUMMARY, VERSION, f"{STATE}.")
_TRIMMED = {"$ifNull": ["$" + TRIMMED, 0]}
CUT_ATTEMPTS = 3  # a cut whose front changed between its check and its write is checked again this often


EMPTY_MESSAGE = "[empty message]"  # what the summariser is shown for a message with no text at all


def _blank(part: Any) -> bool:
    """A content part with no text: an empty or blank string, or a text part whose text is one."""
    if isinstance(part, dict) and part.get("type", "text") == "text":
        part = part.get("text")
    return isinstance(part, str) and not part.strip()


def is_empty(message: Document) -> bool:
    """A message with no text and no tool calls: content missing, blank, or only blank text parts."""
    content, calls = message.get("content"), message.get("tool_calls")
    if isinstance(calls, list) and calls:
        return False
    return content is None or _blank(content) or (isinstance(content, list) and all(map(_blank, content)))


def message_hash(message: Any, order: str) -> str:
    """What a trim checks a message by before cutting it: its role, content and timestamp, hashed."""
    doc = message if isinstance(message, dict) else {}
    fields = {"role": doc.get("role"), "content": doc.get("content"), "at": doc.get(order)}
    return hashlib.sha256(bson.encode(fields)).hexdigest()[:24]


class ConversationChanged(HistoryChanged):
    """The messages at a trim's cut position are not the ones summarised: another program removed or
    reordered messages during the run. Nothing is cut."""

    def __init__(self, collection: str, conversation_id: str) -> None:
        super().__init__(collection, conversation_id, ["messages (changed by another program: not cut)"])


@dataclass(frozen=True, slots=True)
class _Front:
    """What a trim checked: the front's ``memory_trimmed``, the run's first stored sequence number
    ``base``, its end, and the messages from ``base`` to ``end`` as read."""

    trimmed: int
    base: int
    end: int
    page: list[Any]


def conversation_key(conversation_id: str) -> ObjectId | str:
    """The ``_id`` a conversation id names: an ObjectId when it reads as one (the app's), else as is."""
    return ObjectId(conversation_id) if ObjectId.is_valid(conversation_id) else conversation_id


def _seq(ref: Any) -> int | None:
    return ref.get("seq") if isinstance(ref, dict) and isinstance(ref.get("seq"), int) else None


def trimmed_through(refs: Sequence[Any]) -> tuple[int, int] | None:
    """The run of sequence numbers ``refs`` covers from its smallest on, as ``(first, end)``: a trim
    cuts the front up to ``end`` when the front is at ``first`` or past it (and not yet at ``end``)."""
    seqs = sorted({seq for seq in map(_seq, refs) if seq is not None})
    if not seqs:
        return None
    end = seqs[0]
    for seq in seqs:
        if seq != end:
            break
        end += 1
    return seqs[0], end


class MongoConversationMemory:
    """The history port over the conversations' arrays (see the module)."""

    def __init__(
        self,
        database: MongoDatabase,
        metrics: Metrics | None = None,
        rules: EventRules | None = None,
        layout: StoreLayout | None = None,
    ) -> None:
        self._layout = layout = layout or StoreLayout.default("conversations")
        self._conversations = database.collection(layout.collection)
        self._archive = Archive(database, layout.archive)
        self._metrics = metrics or Metrics()
        self._rules = rules or EventRules()
        field = "$" + layout.messages_field
        # The array as an expression; a conversation whose field is missing or not an array (written
        # by another program) reads as empty, and is never cut (see ``delete_by_refs``).
        self._array: Document = {"$cond": [{"$isArray": field}, field, []]}

    # --- reading ---------------------------------------------------------------------------------

    async def _read(self, conversation_id: str, stage: Document) -> Document | None:
        """One aggregation over the conversation, projecting ``stage`` (never the whole array)."""
        pipeline = [{"$match": {"_id": conversation_key(conversation_id)}}, {"$project": stage}]
        rows = await (await self._conversations.aggregate(pipeline)).to_list()
        return rows[0] if rows else None

    def _as_event(self, conversation_id: str, seq: int, message: Any) -> Document:
        """A message under the names the fold reads, with its sequence number as ``_id`` and its hash;
        an empty message (see :func:`is_empty`) reads as :data:`EMPTY_MESSAGE`."""
        doc = dict(message) if isinstance(message, dict) else {}
        ref_hash = message_hash(message, self._layout.order)
        if self._layout.order in doc:
            doc["created_at"] = doc.pop(self._layout.order)
        if isinstance(message, dict) and is_empty(doc):
            doc["content"] = EMPTY_MESSAGE
        ids = {"_id": seq, "user_id": conversation_id, "event_id": f"{conversation_id}:{seq}"}
        return {**doc, **ids, "hash": ref_hash}

    def _events(self, conversation_id: str, first_seq: int, messages: list[Any]) -> list[Document]:
        return [self._as_event(conversation_id, first_seq + i, m) for i, m in enumerate(messages)]

    def _parse(self, doc: Document) -> StoredEvent | MalformedDocument:
        """The one test of a message, for every read: the fold uses a message exactly when it parses
        (dated, a role, text or tool calls; an empty message is text, see :meth:`_as_event`), so what
        is counted, what is summarised and what a trim may cut never disagree."""
        if not isinstance(doc.get("created_at"), datetime):
            return MalformedDocument(self._layout.collection, doc["_id"], ["timestamp (not a date)"])
        try:
            stored = document_to_event(self._layout.collection, doc, self._rules)
        except MalformedDocument as bad:
            return bad
        ref = {"seq": doc["_id"], "user_id": stored.event.user_id, "hash": doc["hash"]}
        return StoredEvent(ref, stored.event)

    def _usable(self, docs: list[Document]) -> list[StoredEvent]:
        return [parsed for parsed in map(self._parse, docs) if isinstance(parsed, StoredEvent)]

    async def get_recent_events(self, conversation_id: str, limit: int) -> list[MemoryEvent]:
        if limit <= 0:
            return []
        recent = await self.recent_history(conversation_id, limit)
        return [stored.event for stored in recent.events]

    async def count_events(self, conversation_id: str) -> int:
        row = await self._read(conversation_id, {"n": {"$size": self._array}})
        return int(row["n"]) if row else 0

    async def recent_history(
        self, conversation_id: str, limit: int, pending: Sequence[Any] = ()
    ) -> RecentHistory:
        """The newest ``limit`` messages and the array's size, in one read. The sizes of an array longer
        than ``limit`` are its length, less the unusable messages among those read (the rest is not
        read: a message the fold cannot use further back stops it there, see :meth:`iter_oldest`)."""
        stage = {
            "n": {"$size": self._array},
            "trimmed": _TRIMMED,
            "recent": {"$slice": [self._array, -limit]},
        }
        row = await self._read(conversation_id, stage) or {"n": 0, "trimmed": 0, "recent": []}
        total, trimmed, recent = int(row["n"]), int(row["trimmed"]), list(row["recent"])
        docs = self._events(conversation_id, trimmed + total - len(recent), recent)
        events = self._usable(docs)
        # With a message the fold cannot use among them, the fold pages from the front instead
        # (``complete`` False), and stops there (:meth:`iter_oldest`): every trim is a run from the front.
        unusable = len(docs) - len(events)
        complete = len(recent) == total and not unusable
        size = HistorySize(
            events=total - unusable,
            chars=sum(len(doc["content"]) for doc in docs if isinstance(doc.get("content"), str)),
            stored=total,
            pinned=sum(self._rules.pinned(doc) for doc in docs),
        )
        span = trimmed_through(pending)
        return RecentHistory(size, events, complete, pending_stored=span is not None and trimmed < span[1])

    async def unfoldable_refs(self, conversation_id: str, limit: int) -> list[Any]:
        recent = await self._read(
            conversation_id, {"trimmed": _TRIMMED, "recent": {"$slice": [self._array, -1000]}}
        )
        if not recent:
            return []
        messages = list(recent.get("recent") or [])
        n = await self.count_events(conversation_id)
        docs = self._events(conversation_id, int(recent["trimmed"]) + n - len(messages), messages)
        return [doc["_id"] for doc in docs if not isinstance(self._parse(doc), StoredEvent)][:limit]

    async def iter_oldest(
        self, conversation_id: str, *, max_documents: int | None = None, batch_size: int = BATCH_SIZE
    ) -> AsyncIterator[StoredEvent]:
        """The messages from the front, page by page by sequence number (a cut between pages moves no
        message's number), up to ``max_documents``; it stops before the first message the fold cannot
        use, which stays, with everything after it (logged as malformed)."""
        next_seq: int | None = None
        remaining = max_documents
        while remaining is None or remaining > 0:
            size = batch_size if remaining is None else min(batch_size, remaining)
            start: Any = (
                {"$literal": 0} if next_seq is None else {"$max": [0, {"$subtract": [next_seq, _TRIMMED]}]}
            )
            row = await self._read(
                conversation_id,
                {
                    "trimmed": _TRIMMED,
                    "start": start,
                    "page": {"$slice": [self._array, start, size]},
                },
            )
            if row is None:
                return
            first = int(row["trimmed"]) + int(row["start"])
            docs = self._events(conversation_id, first, list(row["page"]))
            for doc in docs:
                parsed = self._parse(doc)
                if isinstance(parsed, MalformedDocument):
                    report_malformed(parsed, self._metrics)
                    return
                yield parsed
            if len(docs) < size:
                return
            next_seq = first + len(docs)
            if remaining is not None:
                remaining -= len(docs)

    async def iter_archived_oldest(
        self, conversation_id: str, *, batch_size: int = BATCH_SIZE
    ) -> AsyncIterator[StoredEvent]:
        query = {"conversation_id": conversation_id}
        async for doc in self._archive.collection.find(query).sort([("seq", 1)]).batch_size(batch_size):
            parsed = self._parse(self._as_event(conversation_id, int(doc["seq"]), doc.get("message")))
            if isinstance(parsed, MalformedDocument):
                report_malformed(parsed, self._metrics)
            else:
                yield parsed

    # --- trimming --------------------------------------------------------------------------------

    async def _verified_front(self, conversation_id: str, refs: Sequence[Any]) -> _Front | None:
        """The messages still stored of the run ``refs`` covers, read and checked against the hashes
        the refs carry (refs without one, from before hashes were kept, are taken as they are); None
        when nothing of the run is stored. Raises :class:`ConversationChanged` when a message at the
        run's positions is not the one summarised (another program removed or reordered messages)."""
        span = trimmed_through(refs)
        if span is None:
            return None
        first, end = span
        start = {"$max": [0, {"$subtract": [first, _TRIMMED]}]}
        count = {"$max": [1, {"$subtract": [end, {"$max": [first, _TRIMMED]}]}]}
        row = await self._read(
            conversation_id,
            {
                "trimmed": _TRIMMED,
                "is_array": {"$isArray": "$" + self._layout.messages_field},
                "page": {"$slice": [self._array, start, count]},
            },
        )
        if row is None or not row["is_array"] or not first <= int(row["trimmed"]) < end:
            return None
        trimmed = int(row["trimmed"])
        base = max(first, trimmed)
        page = list(row["page"])[: end - base]
        hashes = {_seq(ref): ref.get("hash") for ref in refs if isinstance(ref, dict)}
        found = [message_hash(message, self._layout.order) for message in page]
        if len(page) < end - base or any(
            hashes.get(seq) not in (None, found[i]) for i, seq in enumerate(range(base, end))
        ):
            raise ConversationChanged(self._layout.collection, conversation_id)
        return _Front(trimmed, base, end, page)

    async def delete_by_refs(self, conversation_id: str, refs: Sequence[Any]) -> int:
        """Cut the front of the array through the run ``refs`` names, after checking it holds the
        messages summarised (:meth:`_verified_front`); a repeat cuts nothing. The cut is conditional
        on the front being exactly the messages checked, so a change between the check and the cut
        is caught too."""
        for _ in range(CUT_ATTEMPTS):
            front = await self._verified_front(conversation_id, refs)
            if front is None:
                return 0
            array = self._array
            position = front.base - front.trimmed
            result = await self._conversations.update_one(
                {
                    "_id": conversation_key(conversation_id),
                    TRIMMED: front.trimmed if front.trimmed else {"$in": [0, None]},
                    "$expr": {
                        "$eq": [{"$slice": [array, position, len(front.page)]}, {"$literal": front.page}]
                    },
                },
                [
                    {
                        "$set": {
                            self._layout.messages_field: {
                                "$slice": [array, front.end - front.trimmed, {"$max": [1, {"$size": array}]}]
                            },
                            TRIMMED: front.end,
                        }
                    }
                ],
            )
            if result.modified_count == 1:
                return front.end - front.trimmed
        raise ConversationChanged(self._layout.collection, conversation_id)

    async def archive_summary_lines(self, conversation_id: str, lines: Sequence[str]) -> None:
        """As archived messages of role ``summary`` at sequence number -1 (before every message)."""
        if not lines:
            return
        now = utc_now()
        copies = [
            _copy(
                f"{conversation_id}:summary:{hashlib.sha256(line.encode()).hexdigest()[:16]}",
                {
                    "conversation_id": conversation_id,
                    "seq": -1,
                    "message": {"role": SUMMARY_LINE_ROLE, "content": line, "timestamp": now},
                    "archived_at": now,
                },
            )
            for line in lines
        ]
        written = {"conversation_id": conversation_id, "seq": -1, "archived_at": now}
        await self._archive.keep(conversation_id, copies, written)

    async def archive_by_refs(self, conversation_id: str, refs: Sequence[Any]) -> int:
        """Copy the run's messages still in the array to the archive, then cut them, by the archive's
        sequence (:mod:`memcompress.repositories.archive`). Only checked messages are copied
        (:meth:`_verified_front`)."""
        front = await self._verified_front(conversation_id, refs)
        if front is None:
            return 0
        copies = [
            _copy(
                f"{conversation_id}:{seq}",
                {
                    "conversation_id": conversation_id,
                    "seq": seq,
                    "message": message,
                    "archived_at": utc_now(),
                },
            )
            for seq, message in enumerate(front.page, start=front.base)
        ]
        written = {"conversation_id": conversation_id, "seq": {"$gte": front.base, "$lt": front.end}}
        return await self._archive.move(
            conversation_id, copies, written, partial(self.delete_by_refs, conversation_id, refs)
        )

    # --- the scan ----------------------------------------------------------------------------------

    async def users_over_threshold(self, threshold: int, limit: int | None = None) -> list[UserBacklog]:
        return (await self.scan_backlog(threshold, limit)).users

    async def scan_backlog(
        self, threshold: int, limit: int | None = None, since: datetime | None = None
    ) -> Backlog:
        """Conversations whose array holds more than ``threshold`` messages, most first, by the arrays'
        sizes (one aggregation; no message is read). With ``since``: only conversations updated since
        (the app sets ``updated_at`` on every append), on the ``{updated_at: 1}`` index migrate makes."""
        pipeline: list[Document] = []
        if since is not None:
            pipeline.append({"$match": {"updated_at": {"$gte": since}}})
        pipeline += [
            {"$project": {"n": {"$size": self._array}, "newest": "$updated_at"}},
            {"$match": {"n": {"$gt": threshold}}},
            {"$sort": {"n": -1, "_id": 1}},
        ]
        if limit is not None:
            pipeline.append({"$limit": limit})
        backlog = Backlog(users=[], invalid=[])
        async for row in await self._conversations.aggregate(pipeline):
            key = row["_id"]
            if isinstance(key, ObjectId | str) and str(key):
                newest = row.get("newest") if isinstance(row.get("newest"), datetime) else None
                backlog.users.append(UserBacklog(str(key), int(row["n"]), newest_event_at=newest))
            else:
                backlog.invalid.append(InvalidUserId(repr(type(key).__name__), int(row["n"])))
        return backlog


class MongoConversationSummaries:
    """The summary port on the conversation documents themselves (see the module): a "profile" here is
    the worker's fields of one conversation."""

    def __init__(
        self, database: MongoDatabase, metrics: Metrics | None = None, layout: StoreLayout | None = None
    ) -> None:
        layout = layout or StoreLayout.default("conversations")
        self._name = layout.collection
        self._conversations = database.collection(layout.collection)
        self._metrics = metrics or Metrics()

    def _profile(self, conversation_id: str, doc: Document) -> UserProfile:
        found = doc.get(STATE)
        state: Document = found if isinstance(found, dict) else {}
        return document_to_profile(
            self._name,
            {
                **state,
                "_id": doc["_id"],
                "user_id": conversation_id,
                "memory_summary": doc.get(SUMMARY),
                "summary_version": doc.get(VERSION),
            },
        )

    async def find(self, conversation_id: str) -> UserProfile | None:
        doc = await self._conversations.find_one(
            {"_id": conversation_key(conversation_id)}, dict.fromkeys(WORKER_FIELDS, 1)
        )
        self._metrics.profile_reads.inc()
        return None if doc is None else self._profile(conversation_id, doc)

    async def get(self, conversation_id: str) -> UserProfile:
        """The conversation's summary state; one with no conversation document is empty (never created)."""
        return await self.find(conversation_id) or UserProfile.new(conversation_id)

    async def find_for_fold(self, conversation_id: str, compressed_since: datetime) -> FoldState:
        """The worker's fields of the conversation (none of its messages), its overrides and its runs
        since ``compressed_since``, in one aggregation, as for ``user_profiles``."""
        match: list[Document] = [
            {"$match": {"_id": conversation_key(conversation_id)}},
            {"$project": dict.fromkeys(WORKER_FIELDS, 1)},
        ]
        rows = await (
            await self._conversations.aggregate(fold_state_pipeline(match, conversation_id, compressed_since))
        ).to_list()
        self._metrics.profile_reads.inc()

        def profile_of(row: Document) -> UserProfile | None:
            # A conversation never summarised has nothing of the worker's: the first write is a create.
            return self._profile(conversation_id, row) if row.get(VERSION) is not None else None

        return fold_state(rows, profile_of, self._metrics)

    async def save(self, profile: UserProfile) -> None:
        """Conversations have no app-owned profile fields: nothing to save."""

    async def update_summary_if_version(
        self,
        conversation_id: str,
        *,
        expected_version: int,
        summary: str,
        watermark: Watermark | None,
        folded_refs: Sequence[Any],
        profile_ref: Any = None,
        create: bool = False,
        expected_summary: ExpectedSummary = ANY_SUMMARY,
    ) -> bool:
        """The fenced write into the conversation document, on the version and, given
        ``expected_summary``, on the summary text read (``create`` is moot: the document is the app's,
        and a conversation that is gone takes no summary)."""
        fence, update = fenced_summary_write(
            CONVERSATION_SUMMARY,
            expected_version=expected_version,
            summary=summary,
            watermark=watermark,
            folded_refs=folded_refs,
            expected_summary=expected_summary,
        )
        query: Document = {"_id": conversation_key(conversation_id), **fence}
        result = await self._conversations.update_one(query, update)
        won = result.modified_count == 1
        if won:
            self._metrics.profile_writes.labels(kind="summary").inc()
        return won

    async def clear_pending_trim(self, conversation_id: str, summary_version: int) -> bool:
        result = await self._conversations.update_one(
            {
                "_id": conversation_key(conversation_id),
                f"{STATE}.pending_trim.summary_version": summary_version,
            },
            {"$set": {f"{STATE}.pending_trim": None}},
        )
        return result.modified_count == 1


def _copy(archive_id: str, document: Document) -> Copy:
    """An archived message: its ``_id`` names the conversation, so the ``_id`` alone is its key."""
    return Copy({"_id": archive_id, **document}, {"_id": archive_id})
