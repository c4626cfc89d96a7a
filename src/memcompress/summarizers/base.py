"""The summariser interface, the transcript format and the output checks every summariser shares."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from memcompress.models import MemoryEvent

FailureKind = Literal["retryable", "permanent", "rejected_output"]


@dataclass(frozen=True, slots=True)
class SummaryRequest:
    previous_summary: str | None
    events: Sequence[MemoryEvent]
    language: str
    max_chars: int
    model: str | None = None  # a per-user model instead of the summariser's own


@dataclass(frozen=True, slots=True)
class SummaryResult:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class SummarizerError(Exception):
    """The summariser produced nothing usable; nothing may be trimmed."""

    kind: FailureKind = "permanent"

    @property
    def retryable(self) -> bool:
        return self.kind != "permanent"


class RetryableSummarizerError(SummarizerError):
    """Rate limit, server error, timeout, connection failure: worth another try later."""

    kind: FailureKind = "retryable"


class PermanentSummarizerError(SummarizerError):
    """Bad request, authentication, unknown model: retrying will not help."""

    kind: FailureKind = "permanent"


class RejectedOutput(SummarizerError):
    """An answer came back but is not a summary (empty, refusal, error text, oversize)."""

    kind: FailureKind = "rejected_output"


class Summarizer(Protocol):
    name: str
    model: str | None

    async def summarize(self, request: SummaryRequest) -> SummaryResult: ...

    async def aclose(self) -> None: ...


def transcript_line(event: MemoryEvent) -> str:
    """One event as a JSON line. Quoting (newlines, and ``<`` as ``\\u003c``) keeps the content from
    forging the transcript's boundaries or closing its tags."""
    at = event.created_at.strftime("%Y-%m-%dT%H:%MZ")
    fields: dict[str, object] = {"at": at, "role": event.role, "text": event.content}
    if event.tool_calls:
        fields["calls"] = [call.model_dump() for call in event.tool_calls]
    if event.tool_call_id:
        fields["answers_call"] = event.tool_call_id
    line = json.dumps(fields, ensure_ascii=False)
    return line.replace("<", "\\u003c")


def transcript_chars(event: MemoryEvent) -> int:
    return len(transcript_line(event)) + 1


# Openings that mean "this is not a summary". Checked on the start of the answer only.
_NOT_A_SUMMARY = re.compile(
    r"^\s*(error\b|an error occurred|internal server error|rate limit|traceback|exception\b|<html|<!doctype|"
    r"\{\s*\"error\"|i'?m sorry|i am sorry|sorry,|i can(?:'|no)t|i am unable|i'm unable|as an ai\b|"
    r"unable to (?:summari[sz]e|comply)|извините|к сожалению|я не могу|ошибка)",
    re.IGNORECASE,
)


def check_summary(text: str | None, max_chars: int) -> str:
    """Return the stripped summary, or raise :class:`RejectedOutput` (fail closed)."""
    stripped = (text or "").strip()
    if not stripped:
        raise RejectedOutput("empty summary")
    if _NOT_A_SUMMARY.match(stripped):
        raise RejectedOutput("answer looks like an error or a refusal, not a summary")
    if len(stripped) > max_chars:
        raise RejectedOutput(f"summary of {len(stripped)} chars exceeds the {max_chars}-char budget")
    return stripped
