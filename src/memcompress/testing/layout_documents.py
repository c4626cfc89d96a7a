"""Documents and indexes exactly as the app's other two stores write them (../shared/seeds 001 and
004), for tests and the demo of ``MEMCOMPRESS_LAYOUT=messages`` and ``=conversations``.

- ``messages`` (the persistence layer's ``MessageRepository``): ``insert_one`` of ``{lead_id, role,
  content, tokens, timestamp, created_at, updated_at}`` (an ObjectId ``_id`` from the driver); indexes
  ``{lead_id: 1, timestamp: -1}`` and ``{timestamp: 1}``.
- ``conversations`` (``ConversationRepository``): ``create_conversation(context_id, user_id)`` inserts
  ``{context_id, user_id, messages: [], created_at, updated_at}``; ``append_message`` is
  ``update_one({_id}, {$push: {messages: {role, content, timestamp}}, $set: {updated_at}})``; indexes
  ``context_id``, ``{context_id: 1, updated_at: -1}`` and ``user_id``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING

from memcompress.models import utc_now
from memcompress.repositories.database import MongoDatabase

MESSAGES = "messages"
CONVERSATIONS = "conversations"


def app_message(lead_id: str, role: str, content: str, timestamp: datetime, **fields: Any) -> dict[str, Any]:
    """One message as ``MessageRepository.save_message`` writes it."""
    now = utc_now()
    return {
        "lead_id": lead_id,
        "role": role,
        "content": content,
        "tokens": max(1, len(content) // 4),
        "timestamp": timestamp,
        "created_at": now,
        "updated_at": now,
    } | fields


async def create_message_indexes(database: MongoDatabase) -> None:
    messages = database.collection(MESSAGES)
    await messages.create_index([("lead_id", ASCENDING), ("timestamp", DESCENDING)])
    await messages.create_index([("timestamp", ASCENDING)])


async def create_conversation(
    database: MongoDatabase, user_id: str, context_id: ObjectId | None = None
) -> str:
    """``ConversationRepository.create_conversation``; returns the conversation id as memcompress names it."""
    now = utc_now()
    doc = {
        "context_id": context_id or ObjectId(),
        "user_id": user_id,
        "messages": [],
        "created_at": now,
        "updated_at": now,
    }
    result = await database.collection(CONVERSATIONS).insert_one(doc)
    return str(result.inserted_id)


def conversation_message(role: str, content: str, timestamp: datetime) -> dict[str, Any]:
    """One element of ``messages`` as ``Message.model_dump()`` gives it."""
    return {"role": role, "content": content, "timestamp": timestamp}


async def append_message(database: MongoDatabase, conversation_id: str, message: dict[str, Any]) -> None:
    """``ConversationRepository.append_message``: ``$push`` of one message and ``updated_at``."""
    await database.collection(CONVERSATIONS).update_one(
        {"_id": ObjectId(conversation_id)},
        {"$push": {"messages": message}, "$set": {"updated_at": utc_now()}},
    )


async def create_conversation_indexes(database: MongoDatabase) -> None:
    conversations = database.collection(CONVERSATIONS)
    await conversations.create_index("context_id")
    await conversations.create_index([("context_id", ASCENDING), ("updated_at", DESCENDING)])
    await conversations.create_index("user_id")
