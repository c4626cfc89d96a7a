"""The summariser interface, the transcript format and the output checks every summariser shares."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from memcompress.models import MemoryEvent
from memcompress.summarizers.carry import estimate_tokens

FailureKind = Literal["retryable", "permanent", "rejected_output"]


@dataclass(frozen=True, slots=True)
class SummaryRequest:
    previous_summary: str | None
    events: Sequence[MemoryEvent]
    language: str
    max_chars: int
    model: str | None = None  # a per-user model instead of the summariser's own
    repair_note: str | None = None  # the carry guard's second request: what the first answer dropped


@dataclass(frozen=True, slots=True)
class SummaryResult:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    requests: int = 1  # HTTP requests sent for it (client retries included); 0 for an offline summariser


# The fewest characters an answer's token holds, by script: Latin text runs at 3-4 characters a token
# with every tokenizer; Cyrillic and other scripts at 2-3 with OpenAI's, but a small model's tokenizer
# spends about a token a letter (SmolLM2: a 500-token Russian answer is 500-700 characters; see
# docs/fidelity.md). ``max_tokens`` lets an answer of the budget's length be written in either.
CHARS_PER_TOKEN_FLOOR = 2
OTHER_CHARS_PER_TOKEN_FLOOR = 1
# The OpenAI summariser's system prompt and the wrapping of the summary and the transcript, estimated
# (tests/unit/test_token_estimate.py checks it against the prompt itself).
PROMPT_OVERHEAD_TOKENS = 265


def max_completion_tokens(max_chars: int, inputs: str = "") -> int:
    """The most tokens an answer of at most ``max_chars`` characters is allowed (``max_tokens``), written
    in the scripts of ``inputs`` (the summary so far and the folded texts) in their shares: Latin text
    at :data:`CHARS_PER_TOKEN_FLOOR` characters a token, any other at :data:`OTHER_CHARS_PER_TOKEN_FLOOR`."""
    letters = [char for char in inputs if not char.isspace()]
    other = sum(1 for char in letters if not char.isascii()) / len(letters) if letters else 0.0
    return int(max_chars * ((1 - other) / CHARS_PER_TOKEN_FLOOR + other / OTHER_CHARS_PER_TOKEN_FLOOR))


def request_inputs(request: SummaryRequest) -> str:
    """The texts an answer to ``request`` is written from: the summary so far and the folded events."""
    return "\n".join([request.previous_summary or "", *(event.content for event in request.events)])


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    """What one summariser request costs, estimated (see :func:`estimate_request_tokens`)."""

    prompt: int
    completion: int
    """the answer: a summary at its length budget, written like the transcript"""
    completion_max: int
    """the most the answer may use (the request's ``max_tokens``)"""


def estimate_request_tokens(request: SummaryRequest) -> TokenEstimate:
    """The tokens of the request the OpenAI summariser sends for ``request`` (system prompt, summary so
    far, transcript, repair note) and of its answer, estimated per character so that Cyrillic text
    counts about twice what Latin text does (:func:`~memcompress.summarizers.carry.estimate_tokens`)."""
    lines = [transcript_line(event) for event in request.events]
    transcript_tokens = sum(estimate_tokens(line) for line in lines)
    line_chars = sum(len(line) for line in lines)
    prompt = (
        PROMPT_OVERHEAD_TOKENS
        + estimate_tokens(json.dumps(request.previous_summary, ensure_ascii=False))
        + transcript_tokens
        + estimate_tokens(request.repair_note or "")
    )
    completion_max = max_completion_tokens(request.max_chars, request_inputs(request))
    completion = -(-request.max_chars * transcript_tokens // max(line_chars, 1))
    return TokenEstimate(
        prompt=prompt, completion=min(completion, completion_max), completion_max=completion_max
    )


class SummarizerError(Exception):
    """The summariser produced nothing usable; nothing may be trimmed. ``requests``: the HTTP requests
    sent before it gave up; the tokens: what the server reported for an answer it then rejected."""

    kind: FailureKind = "permanent"
    requests: int = 1
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def retryable(self) -> bool:
        return self.kind != "permanent"


class RetryableSummarizerError(SummarizerError):
    """Rate limit, server error, timeout, connection failure: worth another try later."""

    kind: FailureKind = "retryable"


class PermanentSummarizerError(SummarizerError):
    """Bad request, authentication, unknown model: retrying will not help."""

    kind: FailureKind = "permanent"


class ContextOverflow(PermanentSummarizerError):
    """The request does not fit the server's context window (an HTTP 400 ``context_length_exceeded``, or
    a server that silently cut the prompt): the same request will fail again, a smaller one will not.
    The fold halves the chunk (or splits an oversize event into parts) and goes on."""

    def __init__(
        self, message: str, *, context_tokens: int | None = None, requested_tokens: int | None = None
    ) -> None:
        super().__init__(message)
        self.context_tokens = context_tokens
        self.requested_tokens = requested_tokens


class RejectedOutput(SummarizerError):
    """An answer came back but is not a summary (empty, refusal, error text, cut off, oversize, or one
    of the answer guard's checks). ``check`` names which, without quoting the answer. ``draft``: for an
    answer cut off at ``max_tokens`` or over its budget, its complete sentences within the budget
    (:func:`draft_of`; user content), which the answer guard may check and patch, never store as is."""

    kind: FailureKind = "rejected_output"

    def __init__(
        self,
        message: str,
        *,
        check: str = "unusable",
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        draft: str | None = None,
    ) -> None:
        super().__init__(message)
        self.check = check
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens
        self.draft = draft or None


# The end of a sentence (its mark and the space after it) or of a line.
_SENTENCE_END = re.compile(r"[.!?…。]+[\"'»”)\]]*(?:\n|(?=\s))|\n")


def draft_of(text: str | None, max_chars: int, *, complete: bool = False) -> str:
    """The complete sentences (and lines) of an answer, from its start, that fit ``max_chars``; a
    sentence repeated (a model stuck in a loop) is kept once. Text after the last sentence end is cut
    off, unless ``complete`` (the answer ended on its own: its end ends a sentence). Empty when not one
    sentence fits."""
    text = (text or "").strip()
    ends = [match.end() for match in _SENTENCE_END.finditer(text)] + ([len(text)] if complete else [])
    kept: list[str] = []
    seen: set[str] = set()
    size = start = 0
    for end in ends:
        sentence, start = text[start:end], end
        key = " ".join(sentence.split()).casefold()
        if not key or key in seen:
            continue
        if size + len(sentence) > max_chars:
            break
        seen.add(key)
        kept.append(sentence)
        size += len(sentence)
    return "".join(kept).strip()


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
    return quote_json(json.dumps(fields, ensure_ascii=False))


def quote_json(text: str) -> str:
    """JSON text with ``<`` written as ``\\u003c``: quoted data cannot close the prompt's tags."""
    return text.replace("<", "\\u003c")


def transcript_chars(event: MemoryEvent) -> int:
    return len(transcript_line(event)) + 1


# Openings that mean "this is an error, not a summary". Checked on the start of the answer only.
_ERROR_OPENING = re.compile(
    r"^\s*(error\b|an error occurred|internal server error|rate limit|traceback|exception\b|<html|<!doctype|"
    r"\{\s*\"error\"|ошибка)",
    re.IGNORECASE,
)
# Openings of an apology or a refusal. Real summaries start with some of them too ("К сожалению,
# пользователь потерял паспорт…"), so an opening alone rejects only a short answer (see
# _looks_like_refusal).
_REFUSAL_OPENING = re.compile(
    r"^\s*(i['’]?m sorry|i am sorry|sorry\b|i apologi[sz]e|my apologies|unfortunately\b|as an ai\b|"
    r"i can['’]?t\b|i cannot\b|i am unable|i['’]m unable|unable to (?:summari[sz]e|comply)|"
    r"извините|простите|прошу прощения|к сожалению|я не могу|как (?:ии|языковая модель)\b)",
    re.IGNORECASE,
)
# The model saying it cannot or will not do the task: in the first person, or impersonal at the start
# of a clause ("Sorry, unable to…", "К сожалению, не удалось…"), but not about someone else
# ("the user can't travel", "пользователю не удалось вернуть деньги").
_INABILITY = re.compile(
    r"\b(?:i|we)\b(?:['’]m|['’]re|\s+am|\s+are)?\s+(?:\w+\s+){0,2}?"
    r"(?:can['’]?t|cannot|can not|won['’]t|will not|unable|not able|not allowed|not permitted)\b"
    r"|(?:^|[,;:—–]\s*|\bbut\s+)(?:unable|not able|cannot|can['’]t)\b"
    r"|\bне (?:могу|можем|имею возможности|имеем возможности)\b"
    r"|(?:\b(?:я|мы|мне|нам|у меня|у нас)\s+|^|[,;:—–]\s*|\bно\s+)"
    r"(?:не в состоянии|не удалось|не получится|невозможно|нет возможности)",
    re.IGNORECASE,
)
REFUSAL_WINDOW_CHARS = 200  # where an opening's inability statement must be
SHORT_REFUSAL_CHARS = 120  # an answer this short that opens like a refusal is one


def _looks_like_refusal(text: str) -> bool:
    """An apology or refusal opening, followed within the first ``REFUSAL_WINDOW_CHARS`` characters by
    the model's own inability statement, or an answer shorter than ``SHORT_REFUSAL_CHARS`` with such an
    opening. The window is not cut at the first sentence: "I'm sorry. I can't…" is a refusal."""
    if not _REFUSAL_OPENING.match(text):
        return False
    return len(text) < SHORT_REFUSAL_CHARS or bool(_INABILITY.search(text[:REFUSAL_WINDOW_CHARS]))


def check_summary(text: str | None, max_chars: int) -> str:
    """Return the stripped summary, or raise :class:`RejectedOutput` (fail closed)."""
    stripped = (text or "").strip()
    if not stripped:
        raise RejectedOutput("empty summary", check="empty")
    if _ERROR_OPENING.match(stripped) or _looks_like_refusal(stripped):
        raise RejectedOutput("answer looks like an error or a refusal, not a summary", check="refusal")
    if len(stripped) > max_chars:
        raise RejectedOutput(
            f"summary of {len(stripped)} chars exceeds the {max_chars}-char budget",
            check="oversize",
            draft=draft_of(stripped, max_chars, complete=True),
        )
    return stripped
