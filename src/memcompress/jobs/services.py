"""What the use cases run on: the ports they call and the policies they follow.

:mod:`memcompress.bootstrap` builds one :class:`Services` per process from the settings; entry points
(the worker, the CLI, the demo) receive it and never build an adapter themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from memcompress.jobs.boundary import Limits
from memcompress.metrics import Metrics
from memcompress.models import UserOverrides
from memcompress.repositories.protocols import (
    CompactionLog,
    DeadLetters,
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
class FoldPolicy:
    """How one user is compressed: the settings of the same names, from the fold and limits groups
    (:class:`~memcompress.settings.FoldSettings`, :class:`~memcompress.settings.LimitSettings`)."""

    threshold: int
    keep_last: int
    batch_size: int
    chunk_chars: int
    summary_max_chars: int
    retention: Literal["delete", "archive"]
    default_language: str
    trigger_tokens: int | None
    target_tokens: int | None
    min_fold: int
    max_compactions_per_day: int
    max_llm_calls_per_user_day: int

    @classmethod
    def from_settings(cls, settings: Settings) -> FoldPolicy:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    def calls_per_day(self, overrides: UserOverrides | None = None) -> int:
        """The LLM requests one user's runs may make in any 24 hours."""
        return (overrides.max_llm_calls_per_day if overrides else None) or self.max_llm_calls_per_user_day

    def limits(self, overrides: UserOverrides | None = None) -> Limits:
        """This policy's limits for one user, with that user's overrides applied."""
        ov = overrides or UserOverrides()
        return Limits(
            threshold=ov.threshold or self.threshold,
            keep_last=self.keep_last if ov.keep_last is None else ov.keep_last,
            trigger_tokens=ov.trigger_tokens or self.trigger_tokens,
            target_tokens=self.target_tokens if ov.target_tokens is None else ov.target_tokens,
            min_fold=self.min_fold,
        )


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
class ContextLimit:
    """What this process has learned of the LLM server's context window: a request of more than
    ``chunk_chars`` transcript characters overflowed it (None: none has). Chunks and event parts are
    capped at it from then on, so the same overflow is not paid for again."""

    chunk_chars: int | None = None

    def cap(self, chars: int) -> int:
        return chars if self.chunk_chars is None else min(chars, self.chunk_chars)

    def lower(self, chars: int) -> None:
        self.chunk_chars = self.cap(chars)


@dataclass(slots=True)
class Services:
    memory: UserMemoryRepository
    profiles: UserProfileRepository
    overrides: UserOverridesRepository
    compaction_log: CompactionLog
    dead_letters: DeadLetters
    maintenance: Maintenance
    locks: UserLocks
    queue: JobQueue
    queue_admin: QueueAdmin
    summarizer: Summarizer
    policy: FoldPolicy
    job_policy: JobPolicy
    metrics: Metrics
    llm_budget: LLMBudget | None = None  # MEMCOMPRESS_LLM_RPM / _TPM, for a summariser that calls an LLM
    context: ContextLimit = field(default_factory=ContextLimit)
