"""The summarisers the unit tests script, beside the fakes of the ports (tests/unit/fakes.py): they record
what the fold sends and answer as the test says."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from memcompress.summarizers.base import SummarizerError, SummaryRequest, SummaryResult
from memcompress.testing.answers import honest

# A policy under which a few dozen events make several chunks (fake_services(summarizer, **SMALL)).
SMALL = {"threshold": 10, "keep_last": 3, "chunk_chars": 1000, "batch_size": 100}


class Recording:
    """Answers the summary so far plus ``v<n>`` and the new events' values (so the answer guard passes),
    or, while there are any, the next of ``scripted``; records every request and answer.

    ``fail``: raised instead of answering. ``before``: awaited with each request before it is answered
    (what a test does meanwhile). ``usage``: the prompt and completion tokens each answer reports."""

    name = "recording"

    def __init__(
        self,
        *,
        model: str | None = None,
        before: Callable[[SummaryRequest], Awaitable[None]] | None = None,
        usage: tuple[int, int] | None = None,
    ) -> None:
        self.model = model
        self.before = before
        self.usage = usage
        self.requests: list[SummaryRequest] = []
        self.answers: list[str] = []
        self.scripted: list[str] = []
        self.fail: SummarizerError | None = None

    async def summarize(self, request: SummaryRequest) -> SummaryResult:
        self.requests.append(request)
        if self.before is not None:
            await self.before(request)
        if self.fail is not None:
            raise self.fail
        if self.scripted:
            self.answers.append(self.scripted.pop(0))
        else:
            line = f"{request.previous_summary or ''} v{len(self.requests)}".strip()
            self.answers.append(honest(line, (event.content for event in request.events)))
        result = SummaryResult(text=self.answers[-1])
        if self.usage is not None:
            result = replace(result, prompt_tokens=self.usage[0], completion_tokens=self.usage[1])
        return result

    async def aclose(self) -> None:
        return None


class Forgetful(Recording):
    """Answers only ``v<n>`` from the ``forget_from``-th request on: it drops the summary so far. With
    ``repairs``, a repair request is answered as Recording answers (it carries the summary so far)."""

    def __init__(self, forget_from: int, repairs: bool) -> None:
        super().__init__()
        self.forget_from, self.repairs = forget_from, repairs

    async def summarize(self, request: SummaryRequest) -> SummaryResult:
        answer = await super().summarize(request)
        if len(self.requests) < self.forget_from or (self.repairs and request.repair_note):
            return answer
        self.answers[-1] = f"v{len(self.requests)}"
        return SummaryResult(text=self.answers[-1])
