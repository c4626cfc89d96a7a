"""The fold's decisions, against in-memory fakes of every port (no servers)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from memcompress.jobs import Services, run_compression
from memcompress.jobs.compress import compression
from memcompress.models import Outcome
from memcompress.summarizers.base import RetryableSummarizerError
from memcompress.summarizers.extractive import ExtractiveSummarizer
from memcompress.testing.factories import make_events
from tests.unit.fakes import FakeCompactionLog, FakeLocks, FakeMemory, append
from tests.unit.stubs import Recording


async def test_folds_all_but_the_newest_keep_last(services: Services) -> None:
    events = make_events("u", 25)
    await append(services, events)
    record = await run_compression(services, "u")
    assert record.outcome is Outcome.COMPRESSED
    assert record.events_folded == 22
    assert [e.content for e in await services.memory.get_recent_events("u", 100)] == [
        e.content for e in events[-3:]
    ]


async def test_each_chunk_builds_on_the_previous_answer(services: Services) -> None:
    await append(services, make_events("u", 60))
    await run_compression(services, "u")
    summarizer = services.summarizer
    assert isinstance(summarizer, Recording)
    previous = [r.previous_summary for r in summarizer.requests]
    assert len(previous) > 2
    assert previous[0] is None
    for i, summary in enumerate(previous[1:], start=1):  # each answer is the next request's summary
        assert summary is not None and summary.endswith(f"v{i}" + summary.split(f"v{i}", 1)[1])
        assert all(f"v{j}" in summary for j in range(1, i + 1))
    stored = (await services.profiles.get("u")).memory_summary or ""
    assert all(f"v{j}" in stored for j in range(1, len(previous) + 1))


async def test_failure_records_and_trims_nothing(services: Services) -> None:
    await append(services, make_events("u", 30))
    assert isinstance(services.summarizer, Recording)
    services.summarizer.fail = RetryableSummarizerError("down")
    record = await run_compression(services, "u")
    assert (record.outcome, record.retryable) == (Outcome.FAILED, True)
    assert await services.memory.count_events("u") == 30
    assert isinstance(services.compaction_log, FakeCompactionLog)
    assert services.compaction_log.records == [record]


async def test_held_lock_means_busy(services: Services) -> None:
    await append(services, make_events("u", 30))
    assert isinstance(services.locks, FakeLocks)
    services.locks.held["u"] = other = object()
    record = await run_compression(services, "u")
    assert record.outcome is Outcome.BUSY
    assert await services.memory.count_events("u") == 30
    assert services.locks.held["u"] is other


async def test_pending_trim_is_finished_before_anything_else(services: Services) -> None:
    await append(services, make_events("u", 12))
    stored = [s async for s in services.memory.iter_oldest("u")]
    from memcompress.models import Watermark

    first = stored[0].event
    await services.profiles.update_summary_if_version(
        "u",
        expected_version=0,
        summary="has e-0 and e-1",
        watermark=Watermark(created_at=first.created_at, event_id=first.event_id),
        folded_refs=[stored[0].ref, stored[1].ref],
        create=True,
    )
    record = await run_compression(services, "u")  # 10 events left after the trim: at the threshold
    assert record.outcome is Outcome.SKIPPED
    assert await services.memory.count_events("u") == 10
    # The mark stays until the next summary write replaces it; another run finds nothing of it stored.
    assert (await run_compression(services, "u")).outcome is Outcome.SKIPPED
    assert await services.memory.count_events("u") == 10


async def test_works_with_the_extractive_summarizer(services: Services) -> None:
    services.summarizer = ExtractiveSummarizer()
    await append(services, make_events("u", 30))
    record = await run_compression(services, "u")
    assert record.outcome is Outcome.COMPRESSED
    summary = (await services.profiles.get("u")).memory_summary or ""
    assert "I like topic number 0." in summary


PREVIOUS = "Lives in Riga with Anna; order ORD-4471 arrives 2026-03-12; budget 1500 EUR."


async def _with_previous_summary(services: Services) -> Recording:
    await append(services, make_events("u", 30))
    await services.profiles.update_summary_if_version(
        "u", expected_version=0, summary=PREVIOUS, watermark=None, folded_refs=[], create=True
    )
    assert isinstance(services.summarizer, Recording)
    return services.summarizer


async def test_a_generic_answer_gets_one_repair_request_then_the_dropped_values_are_patched_in(
    services: Services,
) -> None:
    summarizer = await _with_previous_summary(services)
    summarizer.scripted = ["The user talked about various topics.", "Still various topics."]
    record = await run_compression(services, "u")
    assert record.outcome is Outcome.COMPRESSED and record.values_patched > 0
    assert len(summarizer.requests) == record.chunks + 1 and "ORD-4471" in (
        summarizer.requests[1].repair_note or ""
    )
    summary = (await services.profiles.get("u")).memory_summary or ""
    assert summary.startswith("Still various topics.")  # the repaired answer, with the sentences appended
    assert PREVIOUS in summary and "number 0." in summary  # the previous summary's and the events' values
    assert services.metrics.registry.get_sample_value("memcompress_summary_values_patched_total") == (
        record.values_patched
    )


async def test_a_repaired_answer_is_stored(services: Services) -> None:
    summarizer = await _with_previous_summary(services)
    summarizer.scripted = ["Lives in Riga.", f"{PREVIOUS} Likes chess."]
    record = await run_compression(services, "u")
    assert record.outcome is Outcome.COMPRESSED and record.llm_calls == record.chunks + 1  # one repair
    assert ((await services.profiles.get("u")).memory_summary or "").startswith(f"{PREVIOUS} Likes chess.")


async def test_values_dropped_at_the_budget_are_a_recorded_decision(services: Services) -> None:
    services.policy = replace(services.policy, summary_max_chars=200)
    summarizer = await _with_previous_summary(services)
    full = (
        "Lives in Riga with Anna; arrives 2026-03-12; budget 1500 EUR. " + "Likes chess and long walks. " * 5
    )
    summarizer.scripted = [full[:195]]  # at its budget, without the order code
    record = await run_compression(services, "u")
    assert record.outcome is Outcome.COMPRESSED and record.values_dropped >= 1
    # The order code, and the folded events' values that no longer fit: counted, never silent.
    assert services.metrics.registry.get_sample_value("memcompress_summary_values_dropped_total") == (
        record.values_dropped
    )


async def test_a_legacy_summary_over_the_budget_is_shortened_with_its_lines_archived(
    services: Services,
) -> None:
    """A 5,200-character app summary and the offline summariser at a 3,000-character budget: the user
    is compressed, and every line the summary gave up is in the archive."""
    services.summarizer = ExtractiveSummarizer()
    services.policy = replace(services.policy, summary_max_chars=3000)
    legacy = "\n".join(f"Fact {i}: the user mentioned item {1000 + i} once." for i in range(120))[:5200]
    await append(services, make_events("u", 30))
    await services.profiles.update_summary_if_version(
        "u", expected_version=0, summary=legacy, watermark=None, folded_refs=[], create=True
    )
    record = await run_compression(services, "u")
    assert record.outcome is Outcome.COMPRESSED and record.summary_lines_archived > 0
    summary = (await services.profiles.get("u")).memory_summary or ""
    assert isinstance(services.memory, FakeMemory)
    archived = {e.content for e in services.memory.archived.values() if e.role == "summary"}
    assert len(archived) == record.summary_lines_archived
    assert all(line in summary or line in archived for line in legacy.splitlines())  # nothing dropped


async def test_a_lock_that_cannot_be_released_is_left_to_expire_and_the_callers_error_is_kept(
    services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await append(services, make_events("u", 25))
    locks = services.locks
    assert isinstance(locks, FakeLocks)
    hold = locks.hold

    @contextlib.asynccontextmanager
    async def unreleasable(user_id: str, *, wait_s: float = 0.0) -> AsyncIterator[object]:
        async with hold(user_id, wait_s=wait_s) as held:
            yield held
        raise ConnectionError("Redis went away")  # the release

    monkeypatch.setattr(locks, "hold", unreleasable)
    record = await run_compression(services, "u")  # recorded: the lock expires by itself
    assert record.outcome is Outcome.COMPRESSED and record.events_folded == 22
    assert "could not release a user's lock" in caplog.text

    await append(services, make_events("u", 25, tag="b"))
    with pytest.raises(KeyError):  # what the caller's block raises is what the caller gets
        async with compression(services, "u"):
            raise KeyError("the caller's own")
