"""Storage: MongoDB repositories behind Protocols (see ``protocols``)."""

from memcompress.repositories.compaction_log import MongoCompactionLog
from memcompress.repositories.database import MongoDatabase, StoreUnavailable
from memcompress.repositories.dead_letters import MongoDeadLetters
from memcompress.repositories.documents import MalformedDocument
from memcompress.repositories.indexes import ensure_indexes
from memcompress.repositories.protocols import (
    CompactionLog,
    DeadLetters,
    UserMemoryRepository,
    UserProfileRepository,
)
from memcompress.repositories.user_memory import MongoUserMemoryRepository
from memcompress.repositories.user_profiles import MongoUserProfileRepository, ProfileBusy

__all__ = [
    "CompactionLog",
    "DeadLetters",
    "MalformedDocument",
    "MongoCompactionLog",
    "MongoDatabase",
    "MongoDeadLetters",
    "MongoUserMemoryRepository",
    "MongoUserProfileRepository",
    "ProfileBusy",
    "StoreUnavailable",
    "UserMemoryRepository",
    "UserProfileRepository",
    "ensure_indexes",
]
