"""A dry run of one user's compression (``memcompress compress USER --dry-run``): what would be
folded, in how many summariser requests, at roughly what token cost. Reads only; writes nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from memcompress.jobs.compress import chunks_to_fold, decide, summary_request
from memcompress.jobs.services import Services
from memcompress.summarizers.base import transcript_chars

CHARS_PER_TOKEN = 4  # a rough average for mixed-language chat text


@dataclass(slots=True)
class CompressionPlan:
    user_id: str
    events: int
    threshold: int
    keep_last: int
    would_compress: bool
    pinned: int = 0  # events that stay verbatim (pinned tag or role): never folded or counted
    reason: str | None = None  # why nothing would be folded
    overrides: dict[str, object] = field(default_factory=dict)
    events_to_fold: int = 0
    chunk_sizes: list[int] = field(default_factory=list)
    transcript_chars: int = 0
    estimated_prompt_tokens: int = 0
    summary_chars_now: int = 0
    preview_summary: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def plan_compression(services: Services, user_id: str, *, preview: bool = False) -> CompressionPlan:
    """With ``preview``, also asks the summariser for the would-be summary (which is not stored)."""
    policy = services.policy
    profile = await services.profiles.find(user_id)
    summary = profile.memory_summary if profile else None
    decision = await decide(services, user_id)
    overrides = decision.overrides
    language = (
        (overrides.language if overrides else None)
        or (profile.language if profile else None)
        or policy.default_language
    )
    plan = CompressionPlan(
        user_id=user_id,
        events=await services.memory.count_events(user_id),
        threshold=decision.limits.threshold,
        keep_last=decision.limits.keep_last,
        would_compress=decision.to_fold > 0,
        pinned=await services.memory.count_pinned(user_id),
        reason=decision.reason or None,
        overrides=overrides.model_dump(exclude_none=True) if overrides else {},
        summary_chars_now=len(summary or ""),
    )
    async for chunk in chunks_to_fold(services, user_id, decision.to_fold):
        plan.chunk_sizes.append(len(chunk))
        plan.events_to_fold += len(chunk)
        chars = sum(transcript_chars(s.event) for s in chunk)
        plan.transcript_chars += chars
        plan.estimated_prompt_tokens += (chars + policy.summary_max_chars) // CHARS_PER_TOKEN
        if preview:
            summary = (
                await services.summarizer.summarize(summary_request(policy, summary, chunk, language))
            ).text
    plan.would_compress = plan.events_to_fold > 0
    plan.preview_summary = summary if preview else None
    return plan
