"""Domain models. Pure pydantic: no database, queue or network imports here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID, uuid4

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

MAX_USER_ID_CHARS = 256
MAX_CONTENT_CHARS = 10_000


def utc_now() -> datetime:
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_USER_ID_CHARS)]


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class MemoryEvent(BaseModel):
    """One message of a user's chat history, as stored in ``user_memory``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: UUID = Field(default_factory=uuid4)
    user_id: UserId
    role: Role
    content: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONTENT_CHARS)]
    created_at: UtcDatetime = Field(default_factory=utc_now)
    tags: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event read back from the store, with the store's own key for it.

    ``ref`` is opaque to the domain (Mongo's ``_id``); the fold deletes exactly the refs it summarised.
    """

    ref: Any
    event: MemoryEvent


class ProfileDefaults(BaseModel):
    """What a new profile starts with (configurable through settings). The one place these defaults
    are written: ``DEFAULT_PROFILE`` below, the settings and the profile model all take them from here."""

    model_config = ConfigDict(frozen=True)

    language: str = "ru"
    persona: str = "Alfred-style дворецкий"
    tone: str = "witty"


DEFAULT_PROFILE = ProfileDefaults()


class Watermark(BaseModel):
    """The newest event (in ``(created_at, event_id)`` order) folded into the summary so far."""

    model_config = ConfigDict(frozen=True)

    created_at: UtcDatetime
    event_id: UUID


class PendingTrim(BaseModel):
    """Events already inside the summary of ``summary_version`` that may still be stored.

    Written together with the summary, cleared once they are deleted or archived, so a run that dies
    in between is finished by the next one without summarising those events again.
    """

    model_config = ConfigDict(frozen=True)

    summary_version: int
    refs: list[Any]


class UserProfile(BaseModel):
    """A user's profile in ``user_profiles``; ``memory_summary`` is the running summary."""

    model_config = ConfigDict(extra="ignore")

    user_id: UserId
    language: str = DEFAULT_PROFILE.language
    persona: str = DEFAULT_PROFILE.persona
    tone: str = DEFAULT_PROFILE.tone
    preferred_topics: list[str] = Field(default_factory=list)
    memory_summary: str | None = None
    created_at: UtcDatetime = Field(default_factory=utc_now)
    updated_at: UtcDatetime = Field(default_factory=utc_now)

    # Bookkeeping owned by the compressor. `summary_version` fences concurrent writers: every summary
    # write is conditional on the version read before it and increments it.
    summary_version: int = Field(0, ge=0)
    events_summarized: int = Field(0, ge=0)
    watermark: Watermark | None = None
    pending_trim: PendingTrim | None = None

    @classmethod
    def new(cls, user_id: str, defaults: ProfileDefaults | None = None) -> UserProfile:
        return cls(user_id=user_id, **(defaults or DEFAULT_PROFILE).model_dump())


# The profile fields an app may change with `save`; the rest belong to the compressor.
PROFILE_FIELDS = ("language", "persona", "tone", "preferred_topics")


class Outcome(StrEnum):
    COMPRESSED = "compressed"
    SKIPPED = "skipped"
    BUSY = "busy"  # another worker holds the user's lock
    CONFLICT = "conflict"
    FAILED = "failed"


class CompactionRecord(BaseModel):
    """What one compression run did, kept in ``compaction_log`` for ``status`` and for ops."""

    user_id: UserId
    outcome: Outcome
    reason: str | None = None
    events_before: int = 0
    events_after: int | None = None  # counted after a successful fold only
    events_folded: int = 0
    chunks: int = 0
    summary_chars_before: int = 0
    summary_chars_after: int = 0
    summary_version: int = 0
    summarizer: str = ""
    model: str | None = None
    llm_calls: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error_class: str | None = None
    retryable: bool | None = None
    started_at: UtcDatetime = Field(default_factory=utc_now)
    finished_at: UtcDatetime = Field(default_factory=utc_now)
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        """Did not get done: an error, or a version conflict it could not resolve (CLI exit code 1)."""
        return self.outcome in (Outcome.FAILED, Outcome.CONFLICT)


class DeadLetter(BaseModel):
    """A user whose compression job gave up: ``status`` lists these, ``enqueue`` retries them."""

    user_id: UserId
    reason: str
    tries: int = Field(ge=0)
    error_class: str | None = None
    failed_at: UtcDatetime = Field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class UserBacklog:
    """A user over the threshold, as reported by the scan aggregation."""

    user_id: str
    event_count: int
