"""The answer guard's verdict on every answer of a summariser, for tests and benchmarks against a real LLM.

:class:`JudgedSummarizer` wraps any summariser and judges each answer with the guard's own pure
functions (:mod:`memcompress.summarizers.guard`), exactly as the fold's step 5 does, without changing
what the fold gets: the same result, the same exception. Each request leaves one :class:`Verdict`:

* ``rejected``: not a summary (the summariser's own checks, such as ``incomplete`` for an answer that
  stopped at ``max_tokens``, or a shape check of the guard); the fold sends a repair request; an answer
  cut off or over its budget whose complete sentences pass the shape checks has a ``draft`` (kept as
  :attr:`Verdict.answer`, ``missing`` counted on it), which the fold uses, patched, when the repair
  answer is no better;
* ``dropped``: a summary that misses values of its inputs (or shrank): the fold sends a repair request
  if none was sent for this piece yet, then patches in what is still missing;
* ``accepted``: a summary that carries every value of its inputs.

``missing`` is counted for rejected answers too, so a rejection of an answer that carried every value
(``false_reject``) can be counted and checked by hand. Verdicts hold counts and check names; the texts
are kept in :attr:`Verdict.answer` and :attr:`Verdict.request` for that hand check (test data only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from memcompress.summarizers.base import RejectedOutput, Summarizer, SummaryRequest, SummaryResult
from memcompress.summarizers.guard import judge_answer, missing_values, required_values, shrunk


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str  # "accepted", "dropped" or "rejected"
    check: str | None  # the rejection's check
    repair: bool  # the answer to a repair request
    required: int  # values of the inputs the summary must carry
    missing: int  # of them, how many the answer does not carry (-1: no answer text)
    seconds: float
    prompt_tokens: int | None
    completion_tokens: int | None
    request: SummaryRequest = field(repr=False)
    answer: str | None = field(repr=False)
    draft: bool = False  # a rejected answer whose draft the fold may use (answer: the draft)

    @property
    def false_reject(self) -> bool:
        """Rejected by a shape check although it carried every value of its inputs."""
        return self.kind == "rejected" and not self.draft and self.answer is not None and self.missing == 0


class JudgedSummarizer:
    """``inner`` with a :class:`Verdict` appended to :attr:`verdicts` for each request it answers."""

    def __init__(self, inner: Summarizer) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.verdicts: list[Verdict] = []

    async def summarize(self, request: SummaryRequest) -> SummaryResult:
        started = time.monotonic()
        try:
            result = await self.inner.summarize(request)
        except RejectedOutput as rejected:
            required = required_values(request.previous_summary, request.events)
            draft = rejected.draft
            if draft and judge_answer(draft, request.previous_summary, request.events, request.language):
                draft = None  # not usable: the fold would not take it
            self.verdicts.append(
                Verdict(
                    "rejected",
                    rejected.check,
                    request.repair_note is not None,
                    len(required),
                    len(missing_values(required, request.events, draft)) if draft else -1,
                    time.monotonic() - started,
                    rejected.prompt_tokens,
                    rejected.completion_tokens,
                    request,
                    draft,
                    draft is not None,
                )
            )
            raise
        self.verdicts.append(judge(request, result, time.monotonic() - started))
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()


def judge(request: SummaryRequest, result: SummaryResult, seconds: float) -> Verdict:
    """The guard's verdict on one answer, as the fold's step 5 reaches it."""
    text = result.text.strip()
    required = required_values(request.previous_summary, request.events)
    missing = missing_values(required, request.events, text)
    rejection = judge_answer(text, request.previous_summary, request.events, request.language)
    if rejection is not None:
        kind, check = "rejected", rejection.check
    elif missing or shrunk(request.previous_summary, text):
        kind, check = "dropped", None
    else:
        kind, check = "accepted", None
    return Verdict(
        kind,
        check,
        request.repair_note is not None,
        len(required),
        len(missing),
        seconds,
        result.prompt_tokens,
        result.completion_tokens,
        request,
        text,
    )
