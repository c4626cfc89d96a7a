"""The fold's decisions, against in-memory fakes of every port (no servers)."""

from __future__ import annotations

import pytest

from memcompress.jobs import Services, run_compression
from memcompress.models import Outcome
from memcompress.summarizers import (
    ExtractiveSummarizer,
    RetryableSummarizerError,
    SummaryRequest,
    SummaryResult,
)
from memcompress.testing.factories import make_events
from tests.unit.fakes import FakeCompactionLog, FakeLocks, fake_services


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
def services() -> Services:
    return fake_services(Recording(), threshold=10, keep_last=3, chunk_chars=1000, batch_size=100)


async def test_folds_all_but_the_newest_keep_last(services: Services) -> None:
    events = make_events("u", 25)
    await services.memory.append_events(events)
    record = await run_compression(services, "u")
    assert record.outcome is Outcome.COMPRESSED
    assert record.events_folded == 22
    assert [e.content for e in await services.memory.get_recent_events("u", 100)] == [
        e.content for e in events[-3:]
    ]


async def test_each_chunk_builds_on_the_previous_answer(services: Services) -> None:
    await services.memory.append_events(make_events("u", 60))
    await run_compression(services, "u")
    summarizer = services.summarizer
    assert isinstance(summarizer, Recording)
    previous = [r.previous_summary for r in summarizer.requests]
    assert len(previous) > 2
    assert previous == [None] + [f"v{i}" for i in range(1, len(previous))]
    assert (await services.profiles.get("u")).memory_summary == f"v{len(previous)}"


async def test_failure_records_and_trims_nothing(services: Services) -> None:
    await services.memory.append_events(make_events("u", 30))
    assert isinstance(services.summarizer, Recording)
    services.summarizer.fail = True
    record = await run_compression(services, "u")
    assert (record.outcome, record.retryable) == (Outcome.FAILED, True)
    assert await services.memory.count_events("u") == 30
    assert isinstance(services.compaction_log, FakeCompactionLog)
    assert services.compaction_log.records == [record]


async def test_held_lock_means_busy(services: Services) -> None:
    await services.memory.append_events(make_events("u", 30))
    assert isinstance(services.locks, FakeLocks)
    services.locks.held["u"] = other = object()
    record = await run_compression(services, "u")
    assert record.outcome is Outcome.BUSY
    assert await services.memory.count_events("u") == 30
    assert services.locks.held["u"] is other


async def test_pending_trim_is_finished_before_anything_else(services: Services) -> None:
    await services.memory.append_events(make_events("u", 12))
    stored = [s async for s in services.memory.iter_oldest("u")]
    from memcompress.models import Watermark

    first = stored[0].event
    await services.profiles.update_summary_if_version(
        "u",
        expected_version=0,
        summary="has e-0 and e-1",
        watermark=Watermark(created_at=first.created_at, event_id=first.event_id),
        folded_refs=[stored[0].ref, stored[1].ref],
    )
    record = await run_compression(services, "u")  # 10 events left after the trim: at the threshold
    assert record.outcome is Outcome.SKIPPED
    assert await services.memory.count_events("u") == 10
    assert (await services.profiles.get("u")).pending_trim is None


async def test_works_with_the_extractive_summarizer(services: Services) -> None:
    services.summarizer = ExtractiveSummarizer()
    await services.memory.append_events(make_events("u", 30))
    record = await run_compression(services, "u")
    assert record.outcome is Outcome.COMPRESSED
    summary = (await services.profiles.get("u")).memory_summary or ""
    assert "I like topic number 0." in summary
