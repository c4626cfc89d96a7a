"""Idempotent index creation (``memcompress migrate``)."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel

from memcompress.layouts import StoreLayout
from memcompress.repositories.database import (
    COMPACTION_LOG,
    DEAD_LETTERS,
    ERASED_USERS,
    USER_PROFILES,
    MongoDatabase,
)
from memcompress.repositories.erasures import TOMBSTONE_TTL
from memcompress.repositories.storage_layouts import storage_layout


async def ensure_indexes(
    database: MongoDatabase, *, memory_ttl_days: int | None = None, layout: StoreLayout | None = None
) -> list[str]:
    """Create every index the product needs; running it again changes nothing. The history's are the
    layout's (:meth:`~memcompress.repositories.storage_layouts.StorageLayout.history_indexes`; with
    ``memory_ttl_days``, the default layout's include the app's TTL index)."""
    history = storage_layout(layout).history_indexes(memory_ttl_days)
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
