"""Domain models. Pure pydantic: no database, queue or network imports here."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import uuid4

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from memcompress.keys import MAX_USER_ID_CHARS as MAX_USER_ID_CHARS
from memcompress.keys import shown_user_id as shown_user_id
from memcompress.keys import valid_user_id as valid_user_id

# Token estimates from character counts, for thresholds and targets: English runs at about 4 characters
# per token and Cyrillic at about 2.5 with OpenAI's tokenizers; 3 errs towards more tokens for Latin.
CHARS_PER_TOKEN = 3


def estimate_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


# A BCP 47-shaped language tag: a 2-3 letter language and up to three subtags (en-US, zh-Hant-TW).
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,3}")


def valid_language_tag(value: object) -> str | None:
    """``value`` when it is a string shaped like a language tag, else None. The shape only: the tag is
    not looked up in a registry, nor stripped or case-normalised."""
    if isinstance(value, str) and LANGUAGE_TAG.fullmatch(value):
        return value
    return None


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(value: datetime) -> str:
    """A time as every JSON output and stored record writes it: ISO 8601 in UTC with ``Z``
    (``2026-03-01T00:00:00Z``, as pydantic serialises the models' times)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_USER_ID_CHARS)]


SUMMARY_LINE_ROLE = "summary"  # an archived line a summary gave up when it was over its budget


class Role(StrEnum):
    """The roles the app itself writes; stored events may carry any other non-empty role string
    (``tool``, ``developer``, ``function``, ...) and are folded all the same."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


def _optional_id(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _tags_or_none(value: object) -> list[str]:
    """Tags are optional: missing, null or not a list of strings counts as no tags."""
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return value
    return []


class ToolCall(BaseModel):
    """One OpenAI-shaped tool call of an assistant message (``tool_calls[i]``)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str = ""
    arguments: str = ""


class MemoryEvent(BaseModel):
    """One message of a user's chat history, as stored in ``user_memory``.

    What the fold needs (a *foldable* event): the user's id, a date ``created_at``, a non-empty role
    string and non-empty text content of any length (or tool calls). ``event_id`` and ``tags`` are
    optional. ``tool_calls`` (an assistant calling tools) and ``tool_call_id`` (a tool's result)
    pair events that the fold keeps together.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Annotated[str | None, BeforeValidator(_optional_id)] = Field(
        default_factory=lambda: str(uuid4())
    )
    user_id: UserId
    role: Annotated[str, StringConstraints(min_length=1)]
    content: Annotated[str, StringConstraints(min_length=1)]
    created_at: UtcDatetime = Field(default_factory=utc_now)
    tags: Annotated[list[str], BeforeValidator(_tags_or_none)] = Field(default_factory=list)
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: Annotated[str | None, BeforeValidator(_optional_id)] = None

    @property
    def call_ids(self) -> set[str]:
        return {call.id for call in self.tool_calls if call.id}


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event read back from the store, with the store's own key for it.

    ``ref`` is opaque to the domain (for MongoDB: the document's ``_id``, ``user_id`` and ``event_id``);
    the fold deletes exactly the refs it summarised.
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
    event_id: str | None = None


class PendingTrim(BaseModel):
    """Events already inside the summary of ``summary_version`` that may still be stored.

    Written together with the summary, cleared once they are deleted or archived, so a run that dies
    in between is finished by the next one without summarising those events again.
    """

    model_config = ConfigDict(frozen=True)

    summary_version: int
    refs: list[Any]


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _topics(value: object) -> list[str]:
    return [topic for topic in value if isinstance(topic, str)] if isinstance(value, list) else []


def _count(value: object) -> object:
    return 0 if value is None else value  # a profile written by the app has none of our counters


def _date_or_none(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


# App-owned fields are read leniently: the worker never uses or rewrites them, so a null or odd value
# written by the app (``tone: null``) must not fail a run.
LenientStr = Annotated[str | None, BeforeValidator(_str_or_none)]
LenientDate = Annotated[UtcDatetime | None, BeforeValidator(_date_or_none)]
WorkerCounter = Annotated[int, BeforeValidator(_count), Field(ge=0)]


class UserProfile(BaseModel):
    """A user's profile in ``user_profiles``; ``memory_summary`` is the running summary.

    The app owns ``language``, ``persona``, ``tone``, ``preferred_topics`` and the dates; the worker owns
    the summary and its bookkeeping below, and validates only what it uses.
    """

    model_config = ConfigDict(extra="ignore")

    user_id: UserId
    language: LenientStr = DEFAULT_PROFILE.language
    persona: LenientStr = DEFAULT_PROFILE.persona
    tone: LenientStr = DEFAULT_PROFILE.tone
    preferred_topics: Annotated[list[str], BeforeValidator(_topics)] = Field(default_factory=list)
    memory_summary: str | None = None
    created_at: LenientDate = Field(default_factory=utc_now)
    updated_at: LenientDate = Field(default_factory=utc_now)

    # Bookkeeping owned by the compressor. `summary_version` fences concurrent writers: every summary
    # write is conditional on the version read before it and increments it (missing counts as 0).
    summary_version: WorkerCounter = 0
    events_summarized: WorkerCounter = 0
    watermark: Watermark | None = None
    pending_trim: PendingTrim | None = None
    # What the worker last stored as the summary, and the hashes of its recent summaries: an app that
    # writes `memory_summary` back from a stale copy is detected and repaired (see jobs.compress).
    summary_copy: str | None = None
    summary_history: list[str] = Field(default_factory=list)
    # The store's own key of this profile document (MongoDB's `_id`; None for a profile not read from a
    # store). Summary writes name it: they never land in another document of the same user.
    ref: Any = Field(default=None, validation_alias="_id", exclude=True)

    @classmethod
    def new(cls, user_id: str, defaults: ProfileDefaults | None = None) -> UserProfile:
        return cls(user_id=user_id, **(defaults or DEFAULT_PROFILE).model_dump())


def summary_hash(text: str) -> str:
    """What ``summary_history`` keeps of each summary the worker stored."""
    return hashlib.sha256(text.encode()).hexdigest()


# The profile fields an app may change with `save`; the rest belong to the compressor.
PROFILE_FIELDS = ("language", "persona", "tone", "preferred_topics")


class UserOverrides(BaseModel):
    """Per-user settings (``compression_overrides``, set with ``memcompress override``): each one unset
    means "the setting's value". Used by the scan, the job and dry runs alike."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    threshold: int | None = Field(default=None, ge=1)
    keep_last: int | None = Field(default=None, ge=0)
    trigger_tokens: int | None = Field(default=None, ge=1)
    target_tokens: int | None = Field(default=None, ge=0)
    model: str | None = Field(default=None, min_length=1)
    language: str | None = Field(default=None, min_length=1)
    max_llm_calls_per_day: int | None = Field(default=None, ge=1)

    def is_empty(self) -> bool:
        return not self.model_dump(exclude_none=True)


class Outcome(StrEnum):
    COMPRESSED = "compressed"
    SKIPPED = "skipped"
    BUSY = "busy"  # another worker holds the user's lock
    CONFLICT = "conflict"
    FAILED = "failed"
    PARKED = "parked"  # no LLM request is made for the user until the reason is gone (see jobs.compress)


class CompactionRecord(BaseModel):
    """What one compression run did, kept in ``compaction_log`` for ``status`` and for ops."""

    user_id: UserId
    outcome: Outcome
    reason: str | None = None
    events_before: int = 0
    events_after: int | None = None  # counted after a successful fold only
    events_folded: int = 0
    unfoldable: int = 0  # the user's documents the fold cannot use: kept, never counted or deleted
    values_dropped: int = 0  # values missing from a summary at its budget (did not fit)
    values_patched: int = 0  # values the answer dropped, put back from their source sentences
    answers_rejected: dict[str, int] = Field(default_factory=dict)  # answer guard check -> answers rejected
    event_parts: int = 0  # requests that each held one part of an event too large for one request
    summary_lines_archived: int = 0  # lines of a summary over its budget, moved to the archive
    summary_repaired: str | None = None  # "restored" or "merged" when the app had overwritten it
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
        """Did not get done: an error, a version conflict it could not resolve, or parked (CLI exit 1)."""
        return self.outcome in (Outcome.FAILED, Outcome.CONFLICT, Outcome.PARKED)


class DeadLetter(BaseModel):
    """A user whose compression job gave up: ``status`` lists these, ``enqueue`` retries them."""

    user_id: UserId
    reason: str
    tries: int = Field(ge=0)
    error_class: str | None = None
    failed_at: UtcDatetime = Field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """The LLM requests of compaction runs over some period, and the tokens the server reported."""

    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class UserBacklog:
    """A user over the threshold, as reported by the scan aggregation."""

    user_id: str
    event_count: int
    newest_event_at: datetime | None = None
    chars: int = 0  # content characters of those events (for token triggers)


@dataclass(frozen=True, slots=True)
class HistorySize:
    """A user's history: the foldable events (how many, and their content's characters), every stored
    document of the user, and the pinned ones among them."""

    events: int
    chars: int
    stored: int
    pinned: int

    @property
    def unfoldable(self) -> int:
        """Documents the fold cannot use (neither foldable nor pinned): kept, never counted."""
        return max(self.stored - self.events - self.pinned, 0)


@dataclass(frozen=True, slots=True)
class RecentHistory:
    """What the fold reads of a user's history before deciding: the newest documents, in one bounded
    read, and the sizes of the whole history.

    ``events`` are the valid foldable events among the newest documents read, oldest first (the
    window the boundary is placed in). ``complete``: those documents were all of the user's, so the
    fold takes the events to fold from ``events`` rather than paging. ``pending_stored``: some
    document a pending trim names may still be stored (always True when not ``complete``: unknown).
    """

    size: HistorySize
    events: list[StoredEvent]
    complete: bool
    pending_stored: bool


REJECTED_ANSWER = "RejectedAnswer"  # CompactionRecord.error_class of a run whose answer was no summary


@dataclass(frozen=True, slots=True)
class RunNote:
    """What the fold needs to know of one earlier run of the user (a compaction record)."""

    outcome: str
    error_class: str | None = None
    llm_calls: int = 0
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FoldState:
    """What the fold reads of a user besides the history, in one read: the profile (None: there is
    none), the per-user overrides, and, of the runs since a given time (a day): how many compressed
    the user (the daily cap), how many LLM requests they made (the per-user call budget), and the
    runs since the last compression whose answers were rejected, newest first (smaller chunks, then
    parking)."""

    profile: UserProfile | None
    overrides: UserOverrides | None
    compressions: int
    llm_calls: int = 0
    rejected_since_compressed: tuple[datetime, ...] = ()

    @classmethod
    def of_runs(
        cls, profile: UserProfile | None, overrides: UserOverrides | None, runs: list[RunNote]
    ) -> FoldState:
        """``runs``: newest first."""
        rejected: list[datetime] = []
        for run in runs:
            if run.outcome == Outcome.COMPRESSED:
                break
            if run.error_class == REJECTED_ANSWER and run.finished_at is not None:
                rejected.append(run.finished_at)
        return cls(
            profile,
            overrides,
            compressions=sum(run.outcome == Outcome.COMPRESSED for run in runs),
            llm_calls=sum(run.llm_calls for run in runs),
            rejected_since_compressed=tuple(rejected),
        )


@dataclass(frozen=True, slots=True)
class InvalidUserId:
    """A ``user_id`` value of stored events that no job can take (not a string, empty, longer than
    ``MAX_USER_ID_CHARS``), as the scan reports it: shown by :func:`shown_user_id`."""

    shown: str
    event_count: int


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the scan aggregation found: the users over the threshold, and the ``user_id`` values over
    it that are not valid user ids (never queued)."""

    users: list[UserBacklog]
    invalid: list[InvalidUserId]
    active_users: int | None = None  # an incremental scan: the users with events since its watermark
