"""Documents and indexes exactly as the chat app's own repositories write them (its profile and memory
repositories on database ``butler``; see ../shared/seeds, the TL-02 design), so that tests meet the
data real deployments hold, not only data our code wrote.

- profiles: the app's ``save()`` is ``update_one({"user_id"}, {"$set": <8 fields>}, upsert=True)``: it
  writes ``memory_summary`` from whatever copy it holds, and none of the worker's fields;
- events: ``insert_many`` of ``{event_id: str(uuid4()), user_id, role, content, created_at, tags}``;
- indexes: ``user_profiles.user_id_unique`` (unique), ``user_memory.user_id_created_at``
  (user_id 1, created_at -1) and ``user_memory.created_at_ttl`` (expireAfterSeconds=7776000, 90 days).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from memcompress.models import DEFAULT_PROFILE, utc_now
from memcompress.repositories.database import USER_MEMORY, USER_PROFILES, MongoDatabase

APP_TTL_SECONDS = 7_776_000  # the app's 90-day TTL on user_memory.created_at


def app_profile(user_id: str, *, memory_summary: str | None = None, **fields: Any) -> dict[str, Any]:
    """The eight fields the app's ``_profile_to_doc`` writes (its defaults unless given)."""
    now = utc_now()
    return {
        "user_id": user_id,
        "language": DEFAULT_PROFILE.language,
        "persona": DEFAULT_PROFILE.persona,
        "tone": DEFAULT_PROFILE.tone,
        "preferred_topics": [],
        "memory_summary": memory_summary,
        "created_at": now,
        "updated_at": now,
    } | fields


def app_event(user_id: str, role: str, content: Any, created_at: datetime, **fields: Any) -> dict[str, Any]:
    """One event as the app's ``_event_to_doc`` writes it (``fields`` may change or drop any of them:
    pass ``tags=...``; documents other programs wrote are built with ``dict`` edits by the caller)."""
    return {
        "event_id": str(uuid.uuid4()),
        "user_id": user_id,
        "role": role,
        "content": content,
        "created_at": created_at,
        "tags": [],
    } | fields


async def app_save(database: MongoDatabase, profile: dict[str, Any]) -> None:
    """The app's ``save()``: ``$set`` of its eight fields, upsert (it never replaces the document)."""
    fields = {name: profile[name] for name in app_profile(profile["user_id"])}
    await database.collection(USER_PROFILES).update_one(
        {"user_id": profile["user_id"]}, {"$set": fields}, upsert=True
    )


async def create_app_indexes(database: MongoDatabase) -> None:
    """The app's migration (``add_personalization_indexes.py``), TTL index included."""
    await database.collection(USER_PROFILES).create_index(
        [("user_id", ASCENDING)], unique=True, name="user_id_unique"
    )
    memory = database.collection(USER_MEMORY)
    await memory.create_index([("user_id", ASCENDING), ("created_at", DESCENDING)], name="user_id_created_at")
    await memory.create_index(
        [("created_at", ASCENDING)], expireAfterSeconds=APP_TTL_SECONDS, name="created_at_ttl"
    )
