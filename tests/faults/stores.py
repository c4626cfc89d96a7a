"""The fault run's writes and reads in each layout (:mod:`memcompress.layouts`): one :class:`FaultStore`
per layout, the fault suite's only place that knows where a layout keeps what. What the app writes (a
message, its indexes, its unit ids, what finds a stored message) is the layout's
:class:`~memcompress.testing.app_layouts.AppLayout`; what is the fault suite's own concern is here: the
writes made repeatable through a Mongo restart, the history read into the checker's one shape
(:func:`take_snapshot`), the sizes the drain watches, and where a pending trim is marked.

Every write can be repeated after a Mongo restart without storing a message twice: documents carry their
own ``_id`` (a repeat is a duplicate key), and a conversation's ``$push`` is conditional on the message
not being in the array yet (the app's ``append_message`` update, with that one extra condition in its
filter; contents are unique in these runs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from bson import ObjectId

from memcompress.layouts import LayoutName, StoreLayout
from memcompress.models import MemoryEvent, utc_now
from memcompress.repositories.conversations import STATE, SUMMARY, TRIMMED, VERSION, conversation_key
from memcompress.repositories.database import COMPACTION_LOG, DEAD_LETTERS, USER_PROFILES, MongoDatabase
from memcompress.repositories.indexes import ensure_indexes
from memcompress.testing.app_layouts import AppLayout, app_layout
from tests.faults.checker import Document, Snapshot

Insert = Callable[[list[Document]], Awaitable[None]]  # inserts documents with their own _id, repeatably
Retry = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]  # retries a Mongo call through a restart


class FaultStore(ABC):
    """Where one layout keeps the history, for the fault run."""

    # Where a pending trim is marked: (collection, the field naming the unit, the mark's field).
    pending_trims: tuple[str, str, str] = (USER_PROFILES, "user_id", "pending_trim")

    def __init__(self, names: StoreLayout) -> None:
        self.names = names
        self.app: AppLayout = app_layout(names)

    @property
    def plants_malformed(self) -> bool:
        """Whether the run puts malformed documents in: they are ``user_memory``'s event shapes."""
        return self.app.event_documents

    def unit_ids(self, count: int, tag: str) -> list[str]:
        return self.app.unit_ids(count, tag)

    async def prepare(self, database: MongoDatabase) -> None:
        """The app's indexes and the worker's."""
        await self.app.create_app_indexes(database)
        await ensure_indexes(database, layout=self.names)

    @abstractmethod
    def seeded(self, unit: str, events: Sequence[MemoryEvent]) -> list[Document]:
        """The documents a unit's seeded history is (each with its own ``_id``), to insert into
        ``names.collection``."""

    @abstractmethod
    async def append(
        self, database: MongoDatabase, events: Sequence[MemoryEvent], insert: Insert, retry: Retry
    ) -> None:
        """Append ``events`` (all of one unit) as the app does, repeatably."""

    @abstractmethod
    async def sizes(self, database: MongoDatabase) -> dict[str, int]:
        """Messages stored per unit (well-formed or not)."""

    @abstractmethod
    async def read(self, database: MongoDatabase, snapshot: Snapshot) -> None:
        """The history and the summaries into ``snapshot``'s one shape (see :mod:`tests.faults.checker`)."""


class PerMessage(FaultStore):
    """``user_memory`` and ``messages``: one document per message; the summary in ``user_profiles``."""

    def document(self, event: MemoryEvent) -> Document:
        """One event as a document of the app's, with its own ``_id``."""
        return self.app.message(event) | {"_id": ObjectId()}

    def seeded(self, unit: str, events: Sequence[MemoryEvent]) -> list[Document]:
        return [self.document(event) for event in events]

    async def append(
        self, database: MongoDatabase, events: Sequence[MemoryEvent], insert: Insert, retry: Retry
    ) -> None:
        await insert([self.document(event) for event in events])

    async def sizes(self, database: MongoDatabase) -> dict[str, int]:
        collection = database.collection(self.names.collection)
        grouped = await collection.aggregate([{"$group": {"_id": f"${self.names.owner}", "n": {"$sum": 1}}}])
        return {str(row["_id"]): int(row["n"]) async for row in grouped}

    async def read(self, database: MongoDatabase, snapshot: Snapshot) -> None:
        """The app's own event documents as they are; others under ``user_memory``'s names."""
        profiles = await _everything(database, USER_PROFILES)
        snapshot.profiles = {doc["user_id"]: doc for doc in profiles}
        for target, name in (
            (snapshot.memory, self.names.collection),
            (snapshot.archive, self.names.archive),
        ):
            docs = await _everything(database, name)
            target += docs if self.app.event_documents else [self._renamed(doc) for doc in docs]

    def _renamed(self, doc: Document) -> Document:
        return _as_event(doc.get(self.names.owner), doc["_id"], doc, self.names)


class PerConversation(FaultStore):
    """``conversations``: one document per conversation, its summary and fold state on it."""

    def __init__(self, names: StoreLayout) -> None:
        super().__init__(names)
        self.pending_trims = (names.collection, "_id", f"{STATE}.pending_trim")

    def seeded(self, unit: str, events: Sequence[MemoryEvent]) -> list[Document]:
        """The conversation as ``create_conversation`` and one ``append_message`` per event leave it."""
        now = utc_now()
        return [
            {
                "_id": ObjectId(unit),
                "context_id": ObjectId(),
                "user_id": f"owner-of-{unit[-6:]}",
                "messages": [self.app.message(event) for event in events],
                "created_at": now,
                "updated_at": now,
            }
        ]

    async def append(
        self, database: MongoDatabase, events: Sequence[MemoryEvent], insert: Insert, retry: Retry
    ) -> None:
        for event in events:
            await retry(partial(self._push, database, event))

    async def _push(self, database: MongoDatabase, event: MemoryEvent) -> None:
        """``append_message`` of one event, a no-op when the message is already there (a repeat)."""
        field = self.names.messages_field
        await database.collection(self.names.collection).update_one(
            {"_id": conversation_key(event.user_id), f"{field}.content": {"$ne": event.content}},
            {"$push": {field: self.app.message(event)}, "$set": {"updated_at": utc_now()}},
        )

    async def sizes(self, database: MongoDatabase) -> dict[str, int]:
        collection = database.collection(self.names.collection)
        rows = collection.find({}, {"n": {"$size": f"${self.names.messages_field}"}})
        return {str(row["_id"]): int(row["n"]) async for row in rows}

    async def read(self, database: MongoDatabase, snapshot: Snapshot) -> None:
        for conversation in await _everything(database, self.names.collection):
            self._read_conversation(snapshot, conversation)
        for copy in await _everything(database, self.names.archive):
            message = copy.get("message") or {}
            snapshot.archive.append(_as_event(copy["conversation_id"], copy["seq"], message, self.names))

    def _read_conversation(self, snapshot: Snapshot, doc: Document) -> None:
        """A conversation's messages (their refs: ``memory_trimmed`` + position) and its summary fields as
        a profile (its pending trim's refs as ``{_id: seq}``)."""
        user = str(doc["_id"])
        first = int(doc.get(TRIMMED) or 0)
        messages = doc.get(self.names.messages_field) or []
        snapshot.memory += [_as_event(user, first + i, m, self.names) for i, m in enumerate(messages)]
        state = doc.get(STATE) or {}
        pending = state.get("pending_trim")
        if pending:
            pending = pending | {"refs": [{"_id": ref.get("seq")} for ref in pending.get("refs") or []]}
        if doc.get(VERSION) is not None:
            snapshot.profiles[user] = {
                "user_id": user,
                "memory_summary": doc.get(SUMMARY),
                "summary_version": doc.get(VERSION),
                "events_summarized": state.get("events_summarized"),
                "pending_trim": pending,
            }


FAULT_STORES: dict[LayoutName, type[FaultStore]] = {
    "user_memory": PerMessage,
    "messages": PerMessage,
    "conversations": PerConversation,
}


def fault_store(names: StoreLayout | None = None) -> FaultStore:
    """The fault run's store in the layout ``names`` (the default layout without)."""
    names = names or StoreLayout()
    return FAULT_STORES[names.name](names)


async def take_snapshot(database: MongoDatabase, layout: StoreLayout | None = None) -> Snapshot:
    """Everything the checks read, in one shape whatever the layout."""
    store = fault_store(layout)
    snapshot = Snapshot(
        runs=await _everything(database, COMPACTION_LOG),
        dead_letters={doc["_id"]: doc for doc in await _everything(database, DEAD_LETTERS)},
        layout=store.names,
    )
    await store.read(database, snapshot)
    return snapshot


async def _everything(database: MongoDatabase, name: str) -> list[Document]:
    return await database.collection(name).find({}).to_list()


def _as_event(user: Any, ref: Any, message: Document, names: StoreLayout) -> Document:
    fields = {"_id": ref, "user_id": user, "role": message.get("role"), "content": message.get("content")}
    return fields | {"created_at": message.get(names.order)}
