"""A dry run of one user's compression (``memcompress compress USER --dry-run``): what would be
folded, in how many summariser requests, at roughly what token cost. Reads only; writes nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from memcompress.jobs.compress import CompressionDeps, chunk_events, plan_fold
from memcompress.summarizers.base import SummaryRequest, transcript_chars

CHARS_PER_TOKEN = 4  # a rough average for mixed-language chat text


@dataclass(slots=True)
class CompressionPlan:
    user_id: str
    events: int
    threshold: int
    keep_last: int
    would_compress: bool
    events_to_fold: int = 0
    chunk_sizes: list[int] = field(default_factory=list)
    transcript_chars: int = 0
    estimated_prompt_tokens: int = 0
    summary_chars_now: int = 0
    preview_summary: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def plan_compression(
    deps: CompressionDeps, user_id: str, *, preview: bool = False, default_language: str = "ru"
) -> CompressionPlan:
    """With ``preview``, also asks the summariser for the would-be summary (which is not stored).
    ``default_language`` is used when the user has no profile yet (``MEMCOMPRESS_DEFAULT_LANGUAGE``)."""
    policy = deps.policy
    profile = await deps.profiles.find(user_id)
    summary = profile.memory_summary if profile else None
    to_fold = await plan_fold(deps.memory, policy, user_id)
    plan = CompressionPlan(
        user_id=user_id,
        events=await deps.memory.count_events(user_id),
        threshold=policy.threshold,
        keep_last=policy.keep_last,
        would_compress=to_fold > 0,
        summary_chars_now=len(summary or ""),
    )
    stream = deps.memory.iter_oldest(user_id, max_documents=to_fold, batch_size=policy.batch_size)
    async for chunk in chunk_events(stream, policy.chunk_chars, policy.batch_size):
        plan.chunk_sizes.append(len(chunk))
        plan.events_to_fold += len(chunk)
        chars = sum(transcript_chars(s.event) for s in chunk)
        plan.transcript_chars += chars
        plan.estimated_prompt_tokens += (chars + policy.summary_max_chars) // CHARS_PER_TOKEN
        if preview:
            language = profile.language if profile else default_language
            request = SummaryRequest(summary, [s.event for s in chunk], language, policy.summary_max_chars)
            summary = (await deps.summarizer.summarize(request)).text
    plan.would_compress = plan.events_to_fold > 0
    plan.preview_summary = summary if preview else None
    return plan
