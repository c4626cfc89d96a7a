"""Each layout (:mod:`memcompress.layouts`) as the tests and the demo see it from the app's side: what
names a unit of compression in it, how the app writes a message and which indexes it makes, how the
app appends to a unit's history (the seeding of the tests, the demo and the benchmarks: the worker
itself never appends), what finds a stored message, and what is stored of a unit (its messages,
archived ones included, and its summary), read from the outside for the invariant checker.

One object per layout, as :mod:`memcompress.repositories.storage_layouts` is for the product: no other
test support module asks which layout it is in.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne

from memcompress.layouts import LayoutName, StoreLayout
from memcompress.models import MemoryEvent, utc_now
from memcompress.repositories.conversations import conversation_key
from memcompress.repositories.database import USER_PROFILES, Document, MongoDatabase
from memcompress.repositories.documents import event_to_document
from memcompress.settings import Settings
from memcompress.testing.layout_documents import (
    app_message,
    conversation_message,
    create_conversation_indexes,
    create_message_indexes,
)


class AppLayout(ABC):
    field = "content"  # what a stored message's key (:meth:`key`) is
    # Whether the stored documents are the product's own event documents (``event_to_document``, with
    # an ``event_id``): the shapes the tests' malformed documents are made in.
    event_documents = False

    def __init__(self, names: StoreLayout) -> None:
        self.names = names

    def unit_ids(self, count: int, tag: str) -> list[str]:
        """``count`` fresh units of compression as the app names them: users (leads in ``messages``)."""
        return [f"user-{i:03d}-{tag}" for i in range(count)]

    @abstractmethod
    async def create_app_indexes(self, database: MongoDatabase) -> None:
        """The indexes the app's own store makes (the worker's are ``ensure_indexes``')."""

    @abstractmethod
    def message(self, event: MemoryEvent) -> Document:
        """One event as the app stores a message: a document of its own, or an element of its
        conversation's array (without an ``_id``)."""

    def as_units(
        self, events: list[MemoryEvent], planted: dict[str, str]
    ) -> tuple[list[MemoryEvent], dict[str, str]]:
        """A corpus of users (``planted``: a fact per user) with each user's id replaced by the id of its
        unit of compression; a user is its own unit unless the layout says otherwise."""
        return events, planted

    def key(self, event: MemoryEvent) -> Any:
        """What finds an appended event among the stored ones: messages have no ids of their own outside
        ``user_memory``, so their content (the tests give each a distinct one)."""
        return event.content

    @abstractmethod
    async def append(self, database: MongoDatabase, events: Sequence[MemoryEvent]) -> None:
        """Write ``events`` to their units' histories (``user_id``: the unit) as the app appends them."""

    @abstractmethod
    async def stored_and_summary(self, database: MongoDatabase, unit_id: str) -> tuple[set[Any], str | None]:
        """The keys (:meth:`key`) of what is still stored or archived of the unit, and its summary."""


class MessagesApp(AppLayout):
    """One document per message; the summary in ``user_profiles`` under the owner's id."""

    async def create_app_indexes(self, database: MongoDatabase) -> None:
        await create_message_indexes(database)

    def message(self, event: MemoryEvent) -> Document:
        return app_message(event.user_id, str(event.role), event.content, event.created_at)

    def _as_stored(self, doc: Document) -> Document:
        """An event's document (:func:`~memcompress.repositories.documents.event_to_document`) under the
        layout's names of ``user_id`` and ``created_at``."""
        stored = {k: v for k, v in doc.items() if k not in ("user_id", "created_at")}
        stored[self.names.owner], stored[self.names.order] = doc["user_id"], doc["created_at"]
        return stored

    async def append(self, database: MongoDatabase, events: Sequence[MemoryEvent]) -> None:
        """One ``insert_many`` (ordered) of a document per event."""
        if events:
            docs = [self._as_stored(event_to_document(event)) for event in events]
            await database.collection(self.names.collection).insert_many(docs, ordered=True)

    async def stored_and_summary(self, database: MongoDatabase, unit_id: str) -> tuple[set[Any], str | None]:
        stored: set[Any] = set()
        for collection in (self.names.collection, self.names.archive):
            async for doc in database.collection(collection).find(
                {self.names.owner: unit_id}, {self.field: 1}
            ):
                stored.add(doc.get(self.field))
        profile = await database.collection(USER_PROFILES).find_one({"user_id": unit_id})
        return stored, profile.get("memory_summary") if profile else None


class UserMemoryApp(MessagesApp):
    """``user_memory``: under its default names, events carry their ``event_id``, which finds them; under
    other names they are written as the app's other stores write, found by content."""

    def __init__(self, names: StoreLayout) -> None:
        super().__init__(names)
        self.event_documents = names == StoreLayout()
        self.field = "event_id" if self.event_documents else "content"

    def key(self, event: MemoryEvent) -> Any:
        return str(event.event_id) if self.event_documents else event.content

    async def create_app_indexes(self, database: MongoDatabase) -> None:
        """The worker's own indexes are all ``user_memory`` has."""

    def message(self, event: MemoryEvent) -> Document:
        return event_to_document(event)


class ConversationsApp(AppLayout):
    """One document per conversation, its summary on it; its archived messages by conversation id."""

    def as_units(
        self, events: list[MemoryEvent], planted: dict[str, str]
    ) -> tuple[list[MemoryEvent], dict[str, str]]:
        """One conversation per user, named as the app's ObjectIds read (24 hex digits)."""
        ids = {user_id: uuid.uuid4().hex[:24] for user_id in planted}
        moved = [event.model_copy(update={"user_id": ids[event.user_id]}) for event in events]
        return moved, {ids[user_id]: fact for user_id, fact in planted.items()}

    def unit_ids(self, count: int, tag: str) -> list[str]:
        """Conversation ids: ObjectIds as strings, as the app makes them (``tag`` unused)."""
        return [str(ObjectId()) for _ in range(count)]

    async def create_app_indexes(self, database: MongoDatabase) -> None:
        await create_conversation_indexes(database)

    def message(self, event: MemoryEvent) -> Document:
        return conversation_message(str(event.role), event.content, event.created_at)

    async def append(self, database: MongoDatabase, events: Sequence[MemoryEvent]) -> None:
        """``$push`` as the app does it (one update per conversation; ``updated_at`` set). A conversation
        not found is created, with ``created_at`` (and no ``context_id``)."""
        names = self.names
        by_conversation: dict[str, list[Document]] = {}
        for event in events:
            message = {"role": event.role, "content": event.content, names.order: event.created_at}
            by_conversation.setdefault(event.user_id, []).append(message)
        if by_conversation:
            await database.collection(names.collection).bulk_write(
                [
                    UpdateOne(
                        {"_id": conversation_key(cid)},
                        {
                            "$push": {names.messages_field: {"$each": messages}},
                            "$set": {"updated_at": utc_now()},
                            "$setOnInsert": {"created_at": utc_now()},
                        },
                        upsert=True,
                    )
                    for cid, messages in by_conversation.items()
                ]
            )

    async def stored_and_summary(self, database: MongoDatabase, unit_id: str) -> tuple[set[Any], str | None]:
        names = self.names
        doc = await database.collection(names.collection).find_one({"_id": conversation_key(unit_id)})
        stored = {m.get("content") for m in (doc or {}).get(names.messages_field) or []}
        async for copy in database.collection(names.archive).find({"conversation_id": unit_id}):
            stored.add((copy.get("message") or {}).get("content"))
        return stored, (doc or {}).get("memory_summary")


APP_LAYOUTS: dict[LayoutName, type[AppLayout]] = {
    "user_memory": UserMemoryApp,
    "messages": MessagesApp,
    "conversations": ConversationsApp,
}


def app_layout(names: StoreLayout | None = None) -> AppLayout:
    """The app's side of the layout ``names`` (the default layout without)."""
    names = names or StoreLayout()
    return APP_LAYOUTS[names.name](names)


async def append_as_app(settings: Settings, events: Sequence[MemoryEvent], batch: int = 5000) -> None:
    """``events`` appended to the store and layout ``settings`` name as :meth:`AppLayout.append` writes
    them, ``batch`` per write, over a connection of its own: how the demo and the benchmarks seed."""
    app = app_layout(settings.store_layout())
    async with MongoDatabase.from_settings(settings) as database:
        for start in range(0, len(events), batch):
            await app.append(database, events[start : start + batch])
