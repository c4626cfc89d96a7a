"""The fault run's writes in each layout (:mod:`memcompress.layouts`), as the app's own stores write them
(:mod:`memcompress.testing.app_documents` conventions for ``user_memory``,
:mod:`memcompress.testing.layout_documents` for the other two).

Every write can be repeated after a Mongo restart without storing a message twice: documents carry their
own ``_id`` (a repeat is a duplicate key), and a conversation's ``$push`` is conditional on the message
not being in the array yet (the app's ``append_message`` update, with that one extra condition in its
filter; contents are unique in these runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bson import ObjectId

from memcompress.layouts import StoreLayout
from memcompress.models import MemoryEvent, utc_now
from memcompress.repositories.conversations import conversation_key
from memcompress.repositories.database import MongoDatabase
from memcompress.repositories.documents import event_to_document
from memcompress.repositories.indexes import ensure_indexes
from memcompress.testing.layout_documents import (
    app_message,
    conversation_message,
    create_conversation_indexes,
    create_message_indexes,
)

Document = dict[str, Any]


async def prepare(database: MongoDatabase, layout: StoreLayout) -> None:
    """The app's indexes and the worker's."""
    if layout.name == "messages":
        await create_message_indexes(database)
    elif layout.per_conversation:
        await create_conversation_indexes(database)
    await ensure_indexes(database, layout=layout)


def unit_ids(layout: StoreLayout, count: int, tag: str) -> list[str]:
    """Users (leads in ``messages``), or conversation ids (ObjectIds as strings, as the app makes them)."""
    if layout.per_conversation:
        return [str(ObjectId()) for _ in range(count)]
    return [f"user-{i:03d}-{tag}" for i in range(count)]


def document(layout: StoreLayout, event: MemoryEvent) -> Document:
    """One event as a document of a one-document-per-message layout, with its own ``_id``."""
    if layout.name == "messages":
        doc = app_message(event.user_id, str(event.role), event.content, event.created_at)
    else:
        doc = event_to_document(event)
    return doc | {"_id": ObjectId()}


def conversation(conversation_id: str, events: Sequence[MemoryEvent]) -> Document:
    """A conversation as ``create_conversation`` and one ``append_message`` per event leave it."""
    now = utc_now()
    return {
        "_id": ObjectId(conversation_id),
        "context_id": ObjectId(),
        "user_id": f"owner-of-{conversation_id[-6:]}",
        "messages": [_message(event) for event in events],
        "created_at": now,
        "updated_at": now,
    }


async def push(database: MongoDatabase, layout: StoreLayout, event: MemoryEvent) -> None:
    """``append_message`` of one event, a no-op when the message is already there (a repeat)."""
    message = _message(event)
    await database.collection(layout.collection).update_one(
        {"_id": conversation_key(event.user_id), f"{layout.messages_field}.content": {"$ne": event.content}},
        {"$push": {layout.messages_field: message}, "$set": {"updated_at": utc_now()}},
    )


async def sizes(database: MongoDatabase, layout: StoreLayout) -> dict[str, int]:
    """Messages stored per unit (well-formed or not)."""
    collection = database.collection(layout.collection)
    if layout.per_conversation:
        rows = collection.find({}, {"n": {"$size": f"${layout.messages_field}"}})
        return {str(row["_id"]): int(row["n"]) async for row in rows}
    grouped = await collection.aggregate([{"$group": {"_id": f"${layout.owner}", "n": {"$sum": 1}}}])
    return {str(row["_id"]): int(row["n"]) async for row in grouped}


def _message(event: MemoryEvent) -> Document:
    return conversation_message(str(event.role), event.content, event.created_at)
