"""Dry runs: what a compression would fold, in how many summariser requests, at about what token cost
(``memcompress compress USER --dry-run``), and the same for the users a scan finds (``memcompress scan
--dry-run``). Reads only; writes nothing.

Tokens are estimated per character (:func:`~memcompress.summarizers.base.estimate_request_tokens`, so
Cyrillic counts about twice what Latin does), calibrated on OpenAI's cl100k_base: an estimate, within
about a fifth on English and Russian chat. Each request after the first carries the previous answer,
taken as a summary at its length budget. A cost is shown only when the prices are set
(``MEMCOMPRESS_LLM_PRICE_PROMPT_PER_1M`` / ``_COMPLETION_PER_1M``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from memcompress.jobs.compress import chunks_to_fold, decide, read_user, summary_request
from memcompress.jobs.services import Services
from memcompress.models import UserBacklog
from memcompress.settings import Settings
from memcompress.summarizers.base import estimate_request_tokens, transcript_chars

PLANNED_USERS = 20  # a scan's dry run plans this many users exactly; the rest are extrapolated


@dataclass(frozen=True, slots=True)
class LLMPrices:
    """USD per million tokens (None: not set)."""

    prompt_per_1m: float | None = None
    completion_per_1m: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMPrices:
        return cls(settings.llm_price_prompt_per_1m, settings.llm_price_completion_per_1m)

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """The cost of that many tokens, or None when no price is set."""
        if self.prompt_per_1m is None and self.completion_per_1m is None:
            return None
        total = prompt_tokens * (self.prompt_per_1m or 0) + completion_tokens * (self.completion_per_1m or 0)
        return round(total / 1_000_000, 4)


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
    estimated_completion_tokens: int = 0
    estimated_cost_usd: float | None = None  # only with prices set
    summary_chars_now: int = 0
    preview_summary: str | None = None

    def as_dict(self) -> dict[str, object]:
        shown = asdict(self)
        if self.estimated_cost_usd is None:
            del shown["estimated_cost_usd"]
        return shown


async def plan_compression(
    services: Services, user_id: str, *, preview: bool = False, prices: LLMPrices | None = None
) -> CompressionPlan:
    """With ``preview``, also asks the summariser for the would-be summary (which is not stored)."""
    policy = services.policy
    state, recent = await read_user(services, user_id)
    profile = state.profile
    summary = profile.memory_summary if profile else None
    decision = decide(services, state, recent)
    overrides = decision.overrides
    language = (
        (overrides.language if overrides else None)
        or (profile.language if profile else None)
        or policy.default_language
    )
    plan = CompressionPlan(
        user_id=user_id,
        events=recent.size.stored,
        threshold=decision.limits.threshold,
        keep_last=decision.limits.keep_last,
        would_compress=decision.to_fold > 0,
        pinned=recent.size.pinned,
        reason=decision.reason or None,
        overrides=overrides.model_dump(exclude_none=True) if overrides else {},
        summary_chars_now=len(summary or ""),
    )
    previous_answer: int | None = None  # tokens of the answer the next request carries (a dry run's guess)
    async for chunk in chunks_to_fold(services, user_id, decision):
        plan.chunk_sizes.append(len(chunk))
        plan.events_to_fold += len(chunk)
        plan.transcript_chars += sum(transcript_chars(s.event) for s in chunk)
        request = summary_request(policy, summary, chunk, language)
        if previous_answer is None or preview:
            estimate = estimate_request_tokens(request)
            plan.estimated_prompt_tokens += estimate.prompt
        else:
            estimate = estimate_request_tokens(summary_request(policy, None, chunk, language))
            plan.estimated_prompt_tokens += estimate.prompt + previous_answer
        plan.estimated_completion_tokens += estimate.completion
        previous_answer = estimate.completion
        if preview:
            summary = (await services.summarizer.summarize(request)).text
    plan.would_compress = plan.events_to_fold > 0
    plan.preview_summary = summary if preview else None
    plan.estimated_cost_usd = (prices or LLMPrices()).cost_usd(
        plan.estimated_prompt_tokens, plan.estimated_completion_tokens
    )
    return plan


@dataclass(frozen=True, slots=True)
class BacklogEstimate:
    """What compressing a scan's users would cost, estimated: ``users_planned`` of them planned like
    ``compress --dry-run``, the rest extrapolated from those by their content's characters."""

    users: int
    users_planned: int
    llm_requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None = None

    def as_dict(self) -> dict[str, object]:
        shown = asdict(self)
        if self.cost_usd is None:
            del shown["cost_usd"]
        return shown


async def estimate_backlog(
    services: Services,
    users: list[UserBacklog],
    *,
    prices: LLMPrices | None = None,
    planned: int = PLANNED_USERS,
) -> BacklogEstimate:
    """The first ``planned`` users (the scan's order: most events first) planned exactly; each quantity
    for the rest is scaled from theirs by the users' characters (their event counts when the scan
    reported no characters), so the script mix of the planned users' history carries over."""
    sample, rest = users[:planned], users[planned:]
    plans = [await plan_compression(services, user.user_id) for user in sample]
    requests = sum(len(p.chunk_sizes) for p in plans)
    prompt = sum(p.estimated_prompt_tokens for p in plans)
    completion = sum(p.estimated_completion_tokens for p in plans)
    by_chars = any(u.chars for u in sample)
    sample_size, rest_size = (
        sum(u.chars if by_chars else u.event_count for u in part) for part in (sample, rest)
    )
    if rest and sample_size:
        scale = 1 + rest_size / sample_size
        requests, prompt, completion = (round(n * scale) for n in (requests, prompt, completion))
    return BacklogEstimate(
        users=len(users),
        users_planned=len(sample),
        llm_requests=requests,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=(prices or LLMPrices()).cost_usd(prompt, completion),
    )
