"""The fold's policy: when a user is compressed, how much of its history is folded and where the kept
verbatim history starts (step 3 of the fold, :mod:`memcompress.jobs.compress`), as data and pure
functions (no I/O). :class:`FoldPolicy` is the settings of the fold and limits groups; :class:`Limits`
is that policy for one user, with its overrides; :class:`ContextLimit` what this process has learned
of the LLM server's context window.

Where the kept history starts: what :func:`events_to_fold` guarantees, given the newest foldable
events of a user (the *window*, oldest first):

1. The kept history is at most ``keep_last`` events and, with a token target, at most
   ``target_tokens`` estimated tokens — unless keeping a tool exchange whole needs more (rule 2 wins).
2. A tool call and all its results are either all kept or all folded: the boundary only ever moves
   older to achieve it (keeping is preferred). An assistant message whose call has no result yet,
   standing at the boundary, is kept too, so that the result arriving later does not start the kept
   history orphaned. Pinned events are never in the window (they are not foldable at all).
3. Exchanges longer than the window are not seen: the window is at least ``keep_last + LOOKBACK``
   documents (the fold reads one batch of the newest, ``max(batch_size, keep_last + LOOKBACK)``).

The trigger: a user is compressed when it has more than ``threshold`` foldable events, or (with
``trigger_tokens``) more than that many estimated tokens of them; nothing is folded when fewer than
``min_fold`` events would go (clamped to what the count threshold always yields, so a user over the
count threshold is never stuck).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal

from memcompress.models import MemoryEvent, UserOverrides, estimate_tokens
from memcompress.settings import Settings

LOOKBACK = 200  # documents read beyond keep_last to find where a tool exchange starts


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one user's fold: the settings, with that user's overrides applied."""

    threshold: int
    keep_last: int
    trigger_tokens: int | None
    target_tokens: int | None
    min_fold: int

    def over_trigger(self, events: int, chars: int) -> bool:
        if events > self.threshold:
            return True
        return self.trigger_tokens is not None and estimate_tokens(chars) > self.trigger_tokens

    @property
    def smallest_fold(self) -> int:
        return max(1, min(self.min_fold, self.threshold + 1 - self.keep_last))

    def window_size(self) -> int:
        return self.keep_last + LOOKBACK


def kept_start(window: Sequence[MemoryEvent], limits: Limits) -> int:
    """The index in ``window`` where the kept history starts (``len(window)``: keep nothing)."""
    start = max(len(window) - limits.keep_last, 0)
    if limits.target_tokens is not None:
        kept_tokens = sum(estimate_tokens(len(e.content)) for e in window[start:])
        while start < len(window) and kept_tokens > limits.target_tokens:
            kept_tokens -= estimate_tokens(len(window[start].content))
            start += 1
    return _whole_tool_exchanges(window, start)


def _whole_tool_exchanges(window: Sequence[MemoryEvent], start: int) -> int:
    answered = {e.tool_call_id for e in window if e.tool_call_id}
    while True:
        kept = window[start:]
        kept_results = {e.tool_call_id for e in kept if e.tool_call_id}
        kept_calls = set().union(*(e.call_ids for e in kept))
        moved = start
        for index, event in enumerate(window[:start]):  # a folded event paired with a kept one
            if event.call_ids & kept_results or (event.tool_call_id and event.tool_call_id in kept_calls):
                moved = index
                break
        index = moved - 1  # an unanswered call right at the boundary (with any of its results)
        while index >= 0 and (window[index].call_ids or window[index].tool_call_id):
            if window[index].call_ids - answered:
                moved = index
            index -= 1
        if moved == start:
            return start
        start = moved


def events_to_fold(total: int, window: Sequence[MemoryEvent], limits: Limits) -> int:
    """How many of the user's ``total`` foldable events, oldest first, to fold (0: none)."""
    return max(total - (len(window) - kept_start(window, limits)), 0)


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
