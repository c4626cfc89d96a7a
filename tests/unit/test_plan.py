"""Dry-run estimates (``compress --dry-run``, ``scan --dry-run``) against in-memory fakes: tokens per
character, so Cyrillic history costs about twice what Latin history does; a cost only with prices."""

from __future__ import annotations

import pytest

from memcompress.jobs import LLMPrices, Services, estimate_backlog, plan_compression
from memcompress.models import UserBacklog
from memcompress.summarizers.extractive import ExtractiveSummarizer
from memcompress.testing.factories import make_events
from tests.unit.fakes import append, fake_services

ENGLISH = "I moved to Manchester last year and I work night shifts as a nurse at the hospital."
RUSSIAN = "В прошлом году я переехала в Казань и работаю медсестрой в ночную смену в больнице."


@pytest.fixture
def services() -> Services:
    return fake_services(ExtractiveSummarizer(), threshold=10, keep_last=3, chunk_chars=2000, batch_size=100)


async def _seed(services: Services, user: str, text: str, count: int = 40) -> None:
    events = [e.model_copy(update={"content": text}) for e in make_events(user, count)]
    await append(services, events)


async def test_cyrillic_history_costs_about_twice_the_tokens_of_latin(services: Services) -> None:
    await _seed(services, "en", ENGLISH)
    await _seed(services, "ru", RUSSIAN)
    english, russian = [await plan_compression(services, user) for user in ("en", "ru")]
    assert english.chunk_sizes == russian.chunk_sizes and len(english.chunk_sizes) > 1
    assert abs(russian.transcript_chars - english.transcript_chars) < english.transcript_chars * 0.05
    # The prompt's instructions and the JSON framing of each line are ASCII in both.
    assert 1.3 < russian.estimated_prompt_tokens / english.estimated_prompt_tokens < 2.5
    assert 1.3 < russian.estimated_completion_tokens / english.estimated_completion_tokens < 2.5
    assert "estimated_cost_usd" not in english.as_dict()  # no prices set


async def test_a_cost_is_shown_when_prices_are_set(services: Services) -> None:
    await _seed(services, "u", ENGLISH)
    plan = await plan_compression(services, "u", prices=LLMPrices(prompt_per_1m=1.0, completion_per_1m=10.0))
    expected = (plan.estimated_prompt_tokens * 1.0 + plan.estimated_completion_tokens * 10.0) / 1_000_000
    assert plan.as_dict()["estimated_cost_usd"] == round(expected, 4) > 0
    assert LLMPrices(prompt_per_1m=2.0).cost_usd(500_000, 10**9) == 1.0


async def test_a_user_with_nothing_to_fold_costs_nothing(services: Services) -> None:
    await _seed(services, "few", ENGLISH, count=5)
    plan = await plan_compression(services, "few", prices=LLMPrices(1.0, 1.0))
    assert (plan.estimated_prompt_tokens, plan.estimated_completion_tokens, plan.estimated_cost_usd) == (
        0,
        0,
        0,
    )


async def test_a_backlog_is_planned_for_the_first_users_and_scaled_for_the_rest(services: Services) -> None:
    for user in ("a", "b", "c"):
        await _seed(services, user, RUSSIAN)
    users = [UserBacklog(user, 40, chars=40 * len(RUSSIAN)) for user in ("a", "b", "c")]
    exact = await estimate_backlog(services, users)
    scaled = await estimate_backlog(services, users, planned=1, prices=LLMPrices(completion_per_1m=5.0))
    one = await plan_compression(services, "a")
    assert (exact.users, exact.users_planned, scaled.users_planned) == (3, 3, 1)
    assert exact.prompt_tokens == scaled.prompt_tokens == 3 * one.estimated_prompt_tokens
    assert exact.llm_requests == scaled.llm_requests == 3 * len(one.chunk_sizes)
    assert "cost_usd" not in exact.as_dict()
    assert scaled.cost_usd == round(scaled.completion_tokens * 5.0 / 1_000_000, 4)
