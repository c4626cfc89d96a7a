"""What the use cases run on: the ports they call and the policies they follow.

:mod:`memcompress.bootstrap` builds one :class:`Services` per process from the settings; entry points
(the worker, the CLI, the demo) receive it and never build an adapter themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from memcompress.jobs.fold_policy import ContextLimit, FoldPolicy
from memcompress.metrics import Metrics
from memcompress.repositories.protocols import (
    CompactionLog,
    DeadLetters,
    Erasures,
    JobQueue,
    LLMBudget,
    Maintenance,
    QueueAdmin,
    UserLocks,
    UserMemoryRepository,
    UserOverridesRepository,
    UserProfileRepository,
)
from memcompress.settings import Settings
from memcompress.summarizers.base import Summarizer


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """How queued jobs are run, retried and scanned for: the settings of the same names, from the queue
    group (:class:`~memcompress.settings.QueueSettings`); the full scans' interval in seconds."""

    max_tries: int
    job_timeout_s: float
    scan_limit: int | None
    full_scan_interval_s: float
    scan_overlap_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> JobPolicy:
        hours = settings.full_scan_interval_h
        named = {f.name: getattr(settings, f.name) for f in fields(cls) if f.name != "full_scan_interval_s"}
        return cls(**named, full_scan_interval_s=hours * 3600)


@dataclass(slots=True)
class Services:
    memory: UserMemoryRepository
    profiles: UserProfileRepository
    overrides: UserOverridesRepository
    compaction_log: CompactionLog
    dead_letters: DeadLetters
    maintenance: Maintenance
    erasures: Erasures
    locks: UserLocks
    queue: JobQueue
    queue_admin: QueueAdmin
    summarizer: Summarizer
    policy: FoldPolicy
    job_policy: JobPolicy
    metrics: Metrics
    llm_budget: LLMBudget | None = None  # MEMCOMPRESS_LLM_RPM / _TPM, for a summariser that calls an LLM
    context: ContextLimit = field(default_factory=ContextLimit)
