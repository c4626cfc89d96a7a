"""Storage adapters behind the ports in :mod:`memcompress.repositories.protocols`: MongoDB
repositories, and the per-user locks, the job queue and the LLM budget on Redis. Only
:mod:`memcompress.bootstrap` builds these; everything above it sees the ports and
:mod:`memcompress.repositories.errors`."""

from memcompress.repositories.compaction_log import MongoCompactionLog
from memcompress.repositories.conversations import MongoConversationMemory, MongoConversationSummaries
from memcompress.repositories.database import MongoDatabase
from memcompress.repositories.dead_letters import MongoDeadLetters
from memcompress.repositories.errors import (
    LockBusy,
    LockLost,
    MalformedDocument,
    ProfileBusy,
    StoreUnavailable,
)
from memcompress.repositories.indexes import ensure_indexes
from memcompress.repositories.job_queue import RedisJobQueue
from memcompress.repositories.llm_budget import RedisLLMBudget
from memcompress.repositories.locks import RedisUserLocks
from memcompress.repositories.maintenance import MongoMaintenance
from memcompress.repositories.overrides import MongoUserOverrides
from memcompress.repositories.protocols import (
    CompactionLog,
    DeadLetters,
    HeldLock,
    JobQueue,
    LLMBudget,
    LLMPermit,
    Maintenance,
    UserLocks,
    UserMemoryRepository,
    UserOverridesRepository,
    UserProfileRepository,
)
from memcompress.repositories.user_memory import MongoUserMemoryRepository
from memcompress.repositories.user_profiles import MongoUserProfileRepository

__all__ = [
    "CompactionLog",
    "DeadLetters",
    "HeldLock",
    "JobQueue",
    "LLMBudget",
    "LLMPermit",
    "LockBusy",
    "LockLost",
    "Maintenance",
    "MalformedDocument",
    "MongoCompactionLog",
    "MongoConversationMemory",
    "MongoConversationSummaries",
    "MongoDatabase",
    "MongoDeadLetters",
    "MongoMaintenance",
    "MongoUserMemoryRepository",
    "MongoUserOverrides",
    "MongoUserProfileRepository",
    "ProfileBusy",
    "RedisJobQueue",
    "RedisLLMBudget",
    "RedisUserLocks",
    "StoreUnavailable",
    "UserLocks",
    "UserMemoryRepository",
    "UserOverridesRepository",
    "UserProfileRepository",
    "ensure_indexes",
]
