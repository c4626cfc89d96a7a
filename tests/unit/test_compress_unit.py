"""The fold's decisions, against in-memory repositories and fakeredis (no servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakeredis import FakeAsyncRedis

from memcompress.jobs.compress import CompressionDeps, FoldPolicy, run_compression
from memcompress.keys import lock_key
from memcompress.metrics import Metrics
from memcompress.models import Outcome
from memcompress.summarizers import (
    ExtractiveSummarizer,
    RetryableSummarizerError,
    SummaryRequest,
    SummaryResult,
)
from tests.support.factories import make_events
from tests.unit.fakes import FakeCompactionLog, FakeMemory, FakeProfiles


class Recording:
    name = "recording"
    model = None

    def __init__(self) -> None:
        self.requests: list[SummaryRequest] = []
        self.fail = False

    async def summarize(self, request: SummaryRequest) -> SummaryResult:
        self.requests.append(request)
        if self.fail:
            raise RetryableSummarizerError("down")
        return SummaryResult(text=f"v{len(self.requests)}")

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def deps() -> AsyncIterator[CompressionDeps]:
    redis = FakeAsyncRedis()
    yield CompressionDeps(
        memory=FakeMemory(),
        profiles=FakeProfiles(),
        compaction_log=FakeCompactionLog(),
        summarizer=Recording(),
        redis=redis,
        policy=FoldPolicy(threshold=10, keep_last=3, chunk_chars=1000, batch_size=100),
        metrics=Metrics(),
    )
    await redis.aclose()


async def test_folds_all_but_the_newest_keep_last(deps: CompressionDeps) -> None:
    events = make_events("u", 25)
    await deps.memory.append_events(events)
    record = await run_compression(deps, "u")
    assert record.outcome is Outcome.COMPRESSED
    assert record.events_folded == 22
    assert [e.content for e in await deps.memory.get_recent_events("u", 100)] == [
        e.content for e in events[-3:]
    ]


async def test_each_chunk_builds_on_the_previous_answer(deps: CompressionDeps) -> None:
    await deps.memory.append_events(make_events("u", 60))
    await run_compression(deps, "u")
    summarizer = deps.summarizer
    assert isinstance(summarizer, Recording)
    previous = [r.previous_summary for r in summarizer.requests]
    assert len(previous) > 2
    assert previous == [None] + [f"v{i}" for i in range(1, len(previous))]
    assert (await deps.profiles.get("u")).memory_summary == f"v{len(previous)}"


async def test_failure_records_and_trims_nothing(deps: CompressionDeps) -> None:
    await deps.memory.append_events(make_events("u", 30))
    assert isinstance(deps.summarizer, Recording)
    deps.summarizer.fail = True
    record = await run_compression(deps, "u")
    assert (record.outcome, record.retryable) == (Outcome.FAILED, True)
    assert await deps.memory.count_events("u") == 30
    assert isinstance(deps.compaction_log, FakeCompactionLog)
    assert deps.compaction_log.records == [record]


async def test_held_lock_means_busy(deps: CompressionDeps) -> None:
    await deps.memory.append_events(make_events("u", 30))
    await deps.redis.set(lock_key("u"), b"other-token")
    record = await run_compression(deps, "u")
    assert record.outcome is Outcome.BUSY
    assert await deps.memory.count_events("u") == 30
    assert await deps.redis.get(lock_key("u")) == b"other-token"


async def test_pending_trim_is_finished_before_anything_else(deps: CompressionDeps) -> None:
    await deps.memory.append_events(make_events("u", 12))
    stored = [s async for s in deps.memory.iter_oldest("u")]
    from memcompress.models import Watermark

    first = stored[0].event
    await deps.profiles.update_summary_if_version(
        "u",
        expected_version=0,
        summary="has e-0 and e-1",
        watermark=Watermark(created_at=first.created_at, event_id=first.event_id),
        folded_refs=[stored[0].ref, stored[1].ref],
    )
    record = await run_compression(deps, "u")  # 10 events left after the trim: at the threshold
    assert record.outcome is Outcome.SKIPPED
    assert await deps.memory.count_events("u") == 10
    assert (await deps.profiles.get("u")).pending_trim is None


async def test_works_with_the_extractive_summarizer(deps: CompressionDeps) -> None:
    deps.summarizer = ExtractiveSummarizer()
    await deps.memory.append_events(make_events("u", 30))
    record = await run_compression(deps, "u")
    assert record.outcome is Outcome.COMPRESSED
    summary = (await deps.profiles.get("u")).memory_summary or ""
    assert "I like topic number 0." in summary
