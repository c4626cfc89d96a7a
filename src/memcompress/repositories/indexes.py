"""Idempotent index creation (``memcompress migrate``)."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel

from memcompress.layouts import StoreLayout
from memcompress.repositories.database import (
    COMPACTION_LOG,
    DEAD_LETTERS,
    ERASED_USERS,
    USER_MEMORY,
    USER_PROFILES,
    MongoDatabase,
)
from memcompress.repositories.erasures import TOMBSTONE_TTL

TTL_INDEX = "created_at_ttl"  # the name the app's own migration gives its TTL index
EVENT_ORDER = [("user_id", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)]
# The incremental scan's index: who has events since its watermark, read from the index alone. Its key
# differs from the TTL index's (``created_at`` alone), so the two can both exist.
RECENT_USERS = [("created_at", ASCENDING), ("user_id", ASCENDING)]


def history_indexes(layout: StoreLayout) -> dict[str, list[IndexModel]]:
    """The history's indexes in ``layout``: for one document per event, the fold's order per user and the
    incremental scan's (order, user); for conversations, ``updated_at`` (the incremental scan's) and
    the archive's (conversation, sequence number)."""
    if layout.per_conversation:
        return {
            layout.collection: [IndexModel([("updated_at", ASCENDING)], name="updated")],
            layout.archive: [
                IndexModel([("conversation_id", ASCENDING), ("seq", ASCENDING)], name="conversation_seq")
            ],
        }
    if layout == StoreLayout():
        order, recent = EVENT_ORDER, RECENT_USERS
    else:
        order = [(layout.owner, ASCENDING), (layout.order, ASCENDING), ("_id", ASCENDING)]
        recent = [(layout.order, ASCENDING), (layout.owner, ASCENDING)]
    return {
        layout.collection: [
            IndexModel(order, name="user_created_id"),
            IndexModel(recent, name="created_user"),
        ],
        layout.archive: [IndexModel(order, name="user_created_id")],
    }


async def ensure_indexes(
    database: MongoDatabase, *, memory_ttl_days: int | None = None, layout: StoreLayout | None = None
) -> list[str]:
    """Create every index the product needs; running it again changes nothing.

    ``memory_ttl_days`` adds the app's TTL index on ``user_memory.created_at``. It is opt-in because a
    TTL index deletes events whether or not they were ever summarised: memory is silently lost for
    any user the compressor has not reached yet.
    """
    history = history_indexes(layout or StoreLayout())
    memory_indexes = history.get(USER_MEMORY, [])
    if memory_ttl_days is not None and memory_indexes:
        memory_indexes.append(
            IndexModel(
                [("created_at", ASCENDING)],
                name=TTL_INDEX,
                expireAfterSeconds=memory_ttl_days * 86_400,
            )
        )
    plan = {
        USER_PROFILES: [IndexModel([("user_id", ASCENDING)], name="user_id_unique", unique=True)],
        **history,
        COMPACTION_LOG: [
            IndexModel([("user_id", ASCENDING), ("finished_at", DESCENDING)], name="user_finished"),
            IndexModel([("finished_at", DESCENDING)], name="finished"),
        ],
        DEAD_LETTERS: [IndexModel([("failed_at", DESCENDING)], name="failed")],
        ERASED_USERS: [TOMBSTONE_TTL],  # each tombstone goes at its own expires_at
    }
    created: list[str] = []
    for collection, models in plan.items():
        names = await database.collection(collection).create_indexes(models)
        created.extend(f"{collection}.{name}" for name in names)
    return created
