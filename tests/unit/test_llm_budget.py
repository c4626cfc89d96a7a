"""``RedisLLMBudget``'s decisions, on fakeredis with Lua and a clock of the test's (the budget held by
real worker processes against a real server is in tests/integration/test_llm_budget.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from fakeredis import FakeAsyncRedis

from memcompress.bootstrap import build_llm_budget, build_summarizer
from memcompress.jobs import run_compression
from memcompress.models import Outcome
from memcompress.repositories import llm_budget as module
from memcompress.repositories.llm_budget import RedisLLMBudget
from memcompress.repositories.protocols import LLMPermit
from memcompress.settings import ConfigError, Settings
from memcompress.summarizers.base import SummaryRequest, max_completion_tokens
from memcompress.testing.factories import make_events
from memcompress.timing import BUDGET_JITTER_S, BUDGET_LONGEST_SLEEP_S, BUDGET_TRANSIT_MARGIN_S
from tests.unit.conftest import T0, Clock
from tests.unit.fakes import append, fake_services
from tests.unit.stubs import SMALL, Recording

KEY = "q:llm-budget"


def _budget(
    redis: FakeAsyncRedis, clock: Clock | None, *, requests: int | None = None, tokens: int | None = None
) -> RedisLLMBudget:
    """Grants counted over 60 s in all: a window of 59 s and the transit margin of 1 s."""
    window_s = 60 - BUDGET_TRANSIT_MARGIN_S
    return RedisLLMBudget(
        redis, KEY, max_requests=requests, max_tokens=tokens, window_s=window_s, clock=clock
    )


def _permit(name: str, tokens: int = 1) -> LLMPermit:
    return LLMPermit(id=name, tokens=tokens)


async def test_requests_beyond_the_limit_wait_until_the_oldest_grant_leaves_the_window(
    redis: FakeAsyncRedis, clock: Clock
) -> None:
    budget = _budget(redis, clock, requests=3)
    for name, at in (("a", 0), ("b", 10), ("c", 20)):
        clock.now = T0 + at
        assert await budget.try_acquire(_permit(name)) == 0
    clock.now = T0 + 30
    assert await budget.try_acquire(_permit("d")) == 30  # "a" leaves the window at 60
    clock.now = T0 + 59.999
    assert await budget.try_acquire(_permit("d")) == pytest.approx(0.001)
    clock.now = T0 + 60
    assert await budget.try_acquire(_permit("d")) == 0
    assert await budget.try_acquire(_permit("e")) == 10  # now "b" must leave first
    assert await redis.zcard(KEY) == 3


async def test_tokens_beyond_the_limit_wait_until_enough_have_left_the_window(
    redis: FakeAsyncRedis, clock: Clock
) -> None:
    budget = _budget(redis, clock, tokens=1000)
    assert await budget.try_acquire(_permit("a", 400)) == 0
    clock.now = T0 + 10
    assert await budget.try_acquire(_permit("b", 400)) == 0
    clock.now = T0 + 20
    assert await budget.try_acquire(_permit("c", 300)) == 40  # fits once "a" has left, at 60
    assert await budget.try_acquire(_permit("d", 700)) == 50  # needs "a" and "b" gone, at 70
    assert await budget.try_acquire(_permit("e", 200)) == 0  # 1000 exactly


async def test_a_request_over_the_whole_token_budget_waits_for_an_empty_window(
    redis: FakeAsyncRedis, clock: Clock
) -> None:
    budget = _budget(redis, clock, tokens=1000)
    assert await budget.try_acquire(_permit("small", 10)) == 0
    clock.now = T0 + 1
    assert await budget.try_acquire(_permit("huge", 5000)) == 59
    clock.now = T0 + 60
    assert await budget.try_acquire(_permit("huge", 5000)) == 0
    assert await budget.try_acquire(_permit("next", 1)) == 60


async def test_both_limits_are_checked_at_once_and_a_refusal_takes_nothing(
    redis: FakeAsyncRedis, clock: Clock
) -> None:
    budget = _budget(redis, clock, requests=2, tokens=1000)
    assert await budget.try_acquire(_permit("a", 900)) == 0
    clock.now = T0 + 5
    assert await budget.try_acquire(_permit("b", 200)) == 55  # tokens refuse; no request slot taken
    assert await budget.try_acquire(_permit("c", 100)) == 0
    assert await budget.try_acquire(_permit("d", 0)) == 55  # requests refuse, until "a" leaves
    assert await redis.zcard(KEY) == 2


async def test_settling_returns_unused_tokens_and_keeps_the_grant_time(
    redis: FakeAsyncRedis, clock: Clock
) -> None:
    budget = _budget(redis, clock, tokens=1000)
    reserved = _permit("a", 900)
    assert await budget.try_acquire(reserved) == 0
    clock.now = T0 + 10
    assert await budget.try_acquire(_permit("b", 500)) == 50
    await budget.settle(reserved, 300)
    assert await budget.try_acquire(_permit("b", 500)) == 0
    assert await budget.try_acquire(_permit("c", 300)) == 50  # "a" still counts, until 60
    assert await redis.zscore(KEY, "a:300") == (T0) * 1000


async def test_settling_a_grant_that_left_the_window_brings_nothing_back(
    redis: FakeAsyncRedis, clock: Clock
) -> None:
    budget = _budget(redis, clock, tokens=1000)
    old = _permit("a", 900)
    assert await budget.try_acquire(old) == 0
    clock.now = T0 + 61
    assert await budget.try_acquire(_permit("b", 900)) == 0
    await budget.settle(old, 10)
    assert [m.decode() for m in await redis.zrange(KEY, 0, -1)] == ["b:900"]


async def test_the_grants_expire_one_window_after_the_newest(redis: FakeAsyncRedis, clock: Clock) -> None:
    budget = _budget(redis, clock, requests=5)
    assert await budget.try_acquire(_permit("a")) == 0
    assert 59_000 < await redis.pttl(KEY) <= 60_000


async def test_acquire_sleeps_until_granted(
    redis: FakeAsyncRedis, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiting loop: each sleep moves the test's clock on, so grants happen at the times the budget
    allows; ``waited_s`` is what the caller reports as time rate-limited."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(module.asyncio, "sleep", sleep)
    budget = _budget(redis, clock, requests=2)
    granted = []
    for _ in range(5):
        permit = await budget.acquire(10)
        granted.append(clock.now - T0)
        assert permit.tokens == 10
    assert [int(at // 60) for at in granted] == [0, 0, 1, 1, 2]  # two per minute
    assert all(seconds <= BUDGET_LONGEST_SLEEP_S + BUDGET_JITTER_S for seconds in slept)


async def test_the_servers_clock_is_used_without_one_of_ours(redis: FakeAsyncRedis) -> None:
    budget = _budget(redis, None, requests=1)
    assert await budget.try_acquire(_permit("a")) == 0
    assert 0 < await budget.try_acquire(_permit("b")) <= 60


# --- the fold's use of the budget ----------------------------------------------------------------


class FakeBudget:
    """Grants at once, as if after ``wait_s``; records what the fold reserved and settled."""

    def __init__(self, wait_s: float = 0.0) -> None:
        self.wait_s = wait_s
        self.events: list[tuple[str, int]] = []

    async def acquire(self, tokens: int) -> LLMPermit:
        self.events.append(("acquire", tokens))
        return LLMPermit(id=str(len(self.events)), tokens=tokens, waited_s=self.wait_s)

    async def settle(self, permit: LLMPermit, tokens: int) -> None:
        self.events.append(("settle", tokens))


def _count_permits(budget: FakeBudget, into: list[int]) -> Callable[[SummaryRequest], Awaitable[None]]:
    """A summariser's ``before``: notes how many permits the budget had granted before each request."""

    async def count(request: SummaryRequest) -> None:
        into.append(sum(kind == "acquire" for kind, _ in budget.events))

    return count


async def test_the_fold_takes_a_permit_before_each_request_and_settles_the_usage() -> None:
    budget = FakeBudget(wait_s=1.5)
    acquired_before: list[int] = []  # the permits taken before each request
    summarizer = Recording(before=_count_permits(budget, acquired_before), usage=(120, 7))
    services = fake_services(summarizer, **SMALL)
    services.llm_budget = budget
    await append(services, make_events("u", 60))
    record = await run_compression(services, "u")
    assert record.outcome is Outcome.COMPRESSED and record.llm_calls > 1
    assert acquired_before == list(range(1, record.llm_calls + 1))
    reserved = [tokens for kind, tokens in budget.events if kind == "acquire"]
    assert all(tokens > max_completion_tokens(services.policy.summary_max_chars) for tokens in reserved)
    assert [tokens for kind, tokens in budget.events if kind == "settle"] == [127] * record.llm_calls
    metrics = services.metrics.registry
    assert metrics.get_sample_value("memcompress_llm_rate_limited_seconds_total") == 1.5 * record.llm_calls
    for kind, per_call in (("prompt", 120), ("completion", 7)):
        assert (
            metrics.get_sample_value(
                "memcompress_llm_tokens_total", {"summarizer": "recording", "kind": kind}
            )
            == per_call * record.llm_calls
        )


@pytest.mark.parametrize(
    ("summarizer", "rpm", "limited"),
    [("openai", 60, True), ("openai", None, False), ("extractive", 60, False)],
)
def test_only_a_summariser_that_calls_an_llm_gets_a_budget(
    redis: FakeAsyncRedis, summarizer: str, rpm: int | None, limited: bool
) -> None:
    settings = Settings(_env_file=None, summarizer=summarizer, llm_rpm=rpm)  # type: ignore[call-arg]
    built = build_summarizer(settings)
    assert (build_llm_budget(settings, redis, built) is not None) is limited


class NeverGranting(FakeBudget):
    async def acquire(self, tokens: int) -> LLMPermit:
        await asyncio.Event().wait()  # the budget stays exhausted
        raise AssertionError("unreachable")


async def test_a_wait_for_the_budget_ends_at_the_time_limit_with_nothing_trimmed() -> None:
    budget = NeverGranting()
    acquired_before: list[int] = []
    summarizer = Recording(before=_count_permits(budget, acquired_before), usage=(120, 7))
    services = fake_services(summarizer, **SMALL)
    services.llm_budget = budget
    await append(services, make_events("u", 30))
    record = await run_compression(services, "u", time_limit_s=0.05)
    assert (record.outcome, record.error_class, record.retryable) == (Outcome.FAILED, "JobTimeout", True)
    assert acquired_before == [] and record.llm_calls == 0
    assert await services.memory.count_events("u") == 30


def test_a_token_budget_whose_window_share_cannot_hold_one_full_request_is_refused(
    redis: FakeAsyncRedis,
) -> None:
    """A request bigger than the window's share would be granted alone in every window: over the TPM."""
    settings = Settings(_env_file=None, summarizer="openai", llm_tpm=200_000, llm_rate_window_s=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigError) as refused:
        build_llm_budget(settings, redis, build_summarizer(settings))
    message = str(refused.value)
    assert "MEMCOMPRESS_LLM_TPM" in message and "MEMCOMPRESS_LLM_RATE_WINDOW_S" in message
    assert "\n" not in message
    fits = Settings(_env_file=None, summarizer="openai", llm_tpm=200_000, llm_rate_window_s=10)  # type: ignore[call-arg]
    assert build_llm_budget(fits, redis, build_summarizer(fits)) is not None
