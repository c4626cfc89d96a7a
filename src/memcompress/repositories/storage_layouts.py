"""One object per storage layout (``MEMCOMPRESS_LAYOUT``, :mod:`memcompress.layouts`): what differs
between the layouts, and nothing else, so that no other module asks which layout it is in.

Each :class:`StorageLayout` builds the layout's two repositories (the history, and where its summaries
go), declares the history's indexes and the collections holding a unit's documents (for ``forget`` and
``status``), and says how the operator can keep an age limit. The settings a layout refuses are
declared with its names (:func:`memcompress.layouts.refused_settings`), checked when settings load.

- :class:`UserMemoryLayout`: one document per event in ``user_memory``, summaries in ``user_profiles``;
  the only layout with an opt-in TTL index (``MEMCOMPRESS_MEMORY_TTL_DAYS``).
- :class:`MessagesLayout`: the same repositories under the persistence layer's names (``messages``,
  ``lead_id``, ``timestamp``).
- :class:`ConversationsLayout`: one document per conversation holding both its messages and its summary
  (:mod:`memcompress.repositories.conversations`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pymongo import ASCENDING, IndexModel

from memcompress.layouts import LayoutName, StoreLayout
from memcompress.metrics import Metrics
from memcompress.models import ProfileDefaults
from memcompress.repositories.conversations import (
    MongoConversationMemory,
    MongoConversationSummaries,
    conversation_key,
)
from memcompress.repositories.database import USER_MEMORY, USER_PROFILES, Document, MongoDatabase
from memcompress.repositories.documents import EventRules
from memcompress.repositories.protocols import UserMemoryRepository, UserProfileRepository
from memcompress.repositories.user_memory import MongoUserMemoryRepository
from memcompress.repositories.user_profiles import MongoUserProfileRepository

TTL_INDEX = "created_at_ttl"  # the name the app's own migration gives its TTL index


class StorageLayout(ABC):
    """A layout under its names (the defaults, or those the settings chose)."""

    def __init__(self, names: StoreLayout) -> None:
        self.names = names

    @abstractmethod
    def memory(self, database: MongoDatabase, metrics: Metrics, rules: EventRules) -> UserMemoryRepository:
        """The history's repository."""

    @abstractmethod
    def summaries(
        self, database: MongoDatabase, metrics: Metrics, defaults: ProfileDefaults
    ) -> UserProfileRepository:
        """Where the summaries are (a "profile" per unit of compression)."""

    @abstractmethod
    def history_indexes(self, memory_ttl_days: int | None = None) -> dict[str, list[IndexModel]]:
        """The indexes of the history and its archive, by collection (``migrate`` makes them)."""

    @abstractmethod
    def unit_collections(self) -> dict[str, str]:
        """The layout's collections holding documents of one unit (a user, a lead, a conversation), by
        the field naming it (besides the worker's own: compaction log, dead letters, overrides)."""

    def unit_filter(self, collection: str, field: str, unit_id: str) -> Document:
        """The filter of one unit's documents in ``collection`` (one of :meth:`unit_collections`)."""
        return {field: unit_id}

    def keep_an_age_limit(self, days: float) -> str:
        """How the operator keeps an age limit on the history (said next to a TTL index found on it)."""
        return f" (to keep an age limit, put it on {self.names.archive} with RETENTION=archive)"


class MessagesLayout(StorageLayout):
    """One document per message, by owner and order fields; summaries in ``user_profiles``."""

    def memory(self, database: MongoDatabase, metrics: Metrics, rules: EventRules) -> UserMemoryRepository:
        return MongoUserMemoryRepository(database, metrics, rules, self.names)

    def summaries(
        self, database: MongoDatabase, metrics: Metrics, defaults: ProfileDefaults
    ) -> UserProfileRepository:
        return MongoUserProfileRepository(database, metrics, defaults)

    def history_indexes(self, memory_ttl_days: int | None = None) -> dict[str, list[IndexModel]]:
        """The fold's order per owner (both directions), and the incremental scan's (order, owner): who
        has events since its watermark, read from the index alone (its key differs from a TTL index's,
        the order field alone, so the two can both exist)."""
        owner, order = self.names.owner, self.names.order
        by_owner = [(owner, ASCENDING), (order, ASCENDING), ("_id", ASCENDING)]
        recent = [(order, ASCENDING), (owner, ASCENDING)]
        return {
            self.names.collection: [
                IndexModel(by_owner, name="user_created_id"),
                IndexModel(recent, name="created_user"),
            ],
            self.names.archive: [IndexModel(by_owner, name="user_created_id")],
        }

    def unit_collections(self) -> dict[str, str]:
        names = self.names
        return {names.collection: names.owner, names.archive: names.owner, USER_PROFILES: "user_id"}


class UserMemoryLayout(MessagesLayout):
    """``user_memory`` (the default): as :class:`MessagesLayout`, and the app's opt-in TTL index on
    ``user_memory.created_at`` (``MEMCOMPRESS_MEMORY_TTL_DAYS``). It is opt-in because a TTL index
    deletes events whether or not they were ever summarised: memory is silently lost for any user the
    compressor has not reached yet."""

    def history_indexes(self, memory_ttl_days: int | None = None) -> dict[str, list[IndexModel]]:
        indexes = super().history_indexes()
        if memory_ttl_days is not None and USER_MEMORY in indexes:
            ttl = IndexModel(
                [("created_at", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=memory_ttl_days * 86_400
            )
            indexes[USER_MEMORY].append(ttl)
        return indexes

    def keep_an_age_limit(self, days: float) -> str:
        if self.names != StoreLayout():  # the setting names user_memory.created_at
            return super().keep_an_age_limit(days)
        return f" (or set MEMCOMPRESS_MEMORY_TTL_DAYS={days:g} to accept that loss)"


class ConversationsLayout(StorageLayout):
    """One document per conversation, its messages and its summary on it; the archive by conversation."""

    def memory(self, database: MongoDatabase, metrics: Metrics, rules: EventRules) -> UserMemoryRepository:
        return MongoConversationMemory(database, metrics, rules, self.names)

    def summaries(
        self, database: MongoDatabase, metrics: Metrics, defaults: ProfileDefaults
    ) -> UserProfileRepository:
        return MongoConversationSummaries(database, metrics, self.names)

    def history_indexes(self, memory_ttl_days: int | None = None) -> dict[str, list[IndexModel]]:
        """``updated_at`` (the incremental scan's) and the archive's (conversation, sequence number)."""
        return {
            self.names.collection: [IndexModel([("updated_at", ASCENDING)], name="updated")],
            self.names.archive: [
                IndexModel([("conversation_id", ASCENDING), ("seq", ASCENDING)], name="conversation_seq")
            ],
        }

    def unit_collections(self) -> dict[str, str]:
        return {self.names.collection: "_id", self.names.archive: "conversation_id"}

    def unit_filter(self, collection: str, field: str, unit_id: str) -> Document:
        """A conversation's ``_id`` as stored (an ObjectId when the id reads as one)."""
        if collection == self.names.collection:
            return {"_id": conversation_key(unit_id)}
        return {field: unit_id}


LAYOUTS: dict[LayoutName, type[StorageLayout]] = {
    "user_memory": UserMemoryLayout,
    "messages": MessagesLayout,
    "conversations": ConversationsLayout,
}


def storage_layout(names: StoreLayout | None = None) -> StorageLayout:
    """The layout object for ``names`` (the default layout without)."""
    names = names or StoreLayout()
    return LAYOUTS[names.name](names)
