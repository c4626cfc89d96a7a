"""Replay (shadow) mode against in-memory fakes: what the summariser is sent, the verdict, and that
nothing is stored."""

from __future__ import annotations

import copy
import logging
from datetime import timedelta

import pytest
from fakeredis import FakeAsyncRedis

from memcompress.jobs import Services, replay_user, run_compression
from memcompress.models import MemoryEvent, Outcome, Role, UserOverrides
from memcompress.summarizers.base import (
    RetryableSummarizerError,
    SummaryRequest,
    transcript_chars,
)
from memcompress.summarizers.extractive import ExtractiveSummarizer
from memcompress.testing.factories import T0, make_events
from tests.unit.fakes import FakeCompactionLog, FakeLocks, FakeMemory, FakeProfiles, append, fake_services
from tests.unit.stubs import SMALL, Forgetful, Recording


async def _state(services: Services, redis: FakeAsyncRedis) -> object:
    """Everything the fakes and the queue's Redis store."""
    assert isinstance(services.memory, FakeMemory)
    assert isinstance(services.profiles, FakeProfiles)
    assert isinstance(services.compaction_log, FakeCompactionLog)
    assert isinstance(services.locks, FakeLocks)
    queue = {key: await redis.dump(key) for key in await redis.keys()}
    return copy.deepcopy(
        (
            services.memory.events,
            services.memory.archived,
            services.profiles.profiles,
            services.compaction_log.records,
            services.locks.held,
            queue,
        )
    )


async def _compressed_twice(services: Services) -> list[MemoryEvent]:
    """Two compressions with archive retention; returns every event appended, in the fold's order."""
    first = make_events("u", 25, tag="a")
    second = make_events("u", 12, start=T0 + timedelta(hours=1), tag="b")
    await append(services, first)
    assert (await run_compression(services, "u")).outcome is Outcome.COMPRESSED
    await append(services, second)
    assert (await run_compression(services, "u")).outcome is Outcome.COMPRESSED
    return first + second


async def test_replay_sends_every_event_once_in_order_from_no_summary_and_stores_nothing(
    services: Services, redis: FakeAsyncRedis
) -> None:
    appended = await _compressed_twice(services)
    summarizer = services.summarizer
    assert isinstance(summarizer, Recording)
    folds = len(summarizer.requests)
    before = await _state(services, redis)

    result = await replay_user(services, "u")

    assert await _state(services, redis) == before
    replayed = summarizer.requests[folds:]
    assert [e.content for r in replayed for e in r.events] == [e.content for e in appended]
    answers = summarizer.answers[folds:]
    assert [r.previous_summary for r in replayed] == [None, *answers[:-1]]
    assert len(replayed) > 1
    assert all(sum(transcript_chars(e) for e in r.events) <= 1000 for r in replayed)
    profile = await services.profiles.get("u")
    assert (result.stored_summary, result.stored_version) == (profile.memory_summary, profile.summary_version)
    assert result.replayed_summary == answers[-1]
    assert [f"v{folds + i + 1}" in answers[-1] for i in range(len(replayed))] == [True] * len(replayed)
    assert result.failed is None
    assert (result.archived_events, result.current_events) == (len(appended) - 3, 3)
    assert (result.chunks, result.folded_not_archived, result.version_moved) == (len(replayed), 0, False)
    assert result.as_dict()["verdict"] == {
        "ok": result.verdict.ok,
        "reason": result.verdict.reason,
        "dropped": result.verdict.dropped,
        "shrunk": result.verdict.shrunk,
        "at_budget": result.verdict.at_budget,
    }


async def test_a_tie_goes_to_the_archived_event_and_an_event_in_both_places_is_sent_once(
    services: Services,
) -> None:
    memory = services.memory
    assert isinstance(memory, FakeMemory)

    def event(content: str, seconds: int) -> MemoryEvent:
        return MemoryEvent(
            user_id="u", role=Role.USER, content=content, created_at=T0 + timedelta(seconds=seconds)
        )

    # Refs order the current event before the archived one; the fold folded the archived one first.
    memory.events[1] = event("current at the tie", 0)
    memory.archived[2] = event("archived at the tie", 0)
    memory.archived[3] = memory.events[3] = event("copied, then a crash before the delete", 1)
    memory.events[4] = event("newest", 2)

    result = await replay_user(services, "u")

    summarizer = services.summarizer
    assert isinstance(summarizer, Recording)
    assert [e.content for r in summarizer.requests for e in r.events] == [
        "archived at the tie",
        "current at the tie",
        "copied, then a crash before the delete",
        "newest",
    ]
    assert (result.archived_events, result.current_events) == (2, 2)


async def test_the_verdict_names_what_the_replay_drops_and_the_log_holds_no_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = fake_services(ExtractiveSummarizer(), **SMALL)
    await _compressed_twice(services)
    profile = await services.profiles.get("u")
    stored = f"{profile.memory_summary}\n- The user's flat is 4471 and her sister is called Anastasia."
    assert await services.profiles.update_summary_if_version(
        "u", expected_version=profile.summary_version, summary=stored, watermark=None, folded_refs=[]
    )

    with caplog.at_level(logging.INFO, logger="memcompress.jobs.replay"):
        result = await replay_user(services, "u")

    assert result.stored_summary == stored
    assert result.replayed_summary is not None and "I like topic number 0." in result.replayed_summary
    assert not result.verdict.ok
    assert result.verdict.dropped == {"number": 1, "name": 1}
    assert "dropped 1 number, 1 name" in caplog.text and "NOT ok" in caplog.text
    assert "4471" not in caplog.text and "Anastasia" not in caplog.text and "topic" not in caplog.text


async def test_a_replay_of_the_same_history_keeps_every_value() -> None:
    services = fake_services(ExtractiveSummarizer(), **(SMALL | {"threshold": 40, "keep_last": 0}))
    await append(services, make_events("u", 45))
    assert (await run_compression(services, "u")).outcome is Outcome.COMPRESSED
    result = await replay_user(services, "u")
    assert result.replayed_summary == result.stored_summary
    assert result.verdict.ok
    assert result.verdict.reason == "kept every value of the previous summary"


async def test_events_deleted_with_delete_retention_cannot_be_replayed_and_are_counted() -> None:
    services = fake_services(Recording(), **SMALL, retention="delete")
    await append(services, make_events("u", 25))
    record = await run_compression(services, "u")
    result = await replay_user(services, "u")
    assert (result.archived_events, result.current_events) == (0, 3)
    assert result.events_summarized == record.events_folded == 22
    assert result.folded_not_archived == 22


async def test_the_user_s_language_and_model_overrides_are_used(services: Services) -> None:
    await append(services, make_events("u", 5))
    await services.overrides.set("u", UserOverrides(language="de", model="per-user"))
    result = await replay_user(services, "u")
    summarizer = services.summarizer
    assert isinstance(summarizer, Recording)
    assert [(r.language, r.model) for r in summarizer.requests] == [("de", "per-user")]
    assert (result.language, result.model, result.summarizer) == ("de", "per-user", "recording")


async def test_a_user_with_nothing_stored_replays_to_nothing_and_creates_no_profile(
    services: Services,
) -> None:
    result = await replay_user(services, "nobody")
    assert (result.stored_summary, result.replayed_summary, result.chunks) == (None, None, 0)
    assert result.verdict.ok
    assert await services.profiles.find("nobody") is None


async def test_a_compression_during_the_replay_is_reported(services: Services) -> None:
    await append(services, make_events("u", 5))

    async def compress_meanwhile(request: SummaryRequest) -> None:
        profile = await services.profiles.get("u")
        await services.profiles.update_summary_if_version(
            "u", expected_version=profile.summary_version, summary="moved", watermark=None, folded_refs=[]
        )

    services.summarizer = Recording(before=compress_meanwhile)
    result = await replay_user(services, "u")
    assert result.version_moved
    assert result.as_dict()["version_moved"] is True


async def test_an_answer_that_drops_the_summary_so_far_gets_one_repair_request_as_in_the_fold() -> None:
    services = fake_services(Forgetful(forget_from=2, repairs=True), **SMALL)
    await append(services, make_events("u", 40))
    result = await replay_user(services, "u")
    summarizer = services.summarizer
    assert isinstance(summarizer, Forgetful)
    assert [r.repair_note is not None for r in summarizer.requests][:3] == [False, False, True]
    assert summarizer.requests[2].repair_note is not None and '"v1"' in summarizer.requests[2].repair_note
    assert result.failed is None and result.chunks > 2
    assert result.replayed_summary is not None and result.replayed_summary.startswith("v1 ")


async def test_a_chunk_whose_answer_still_drops_values_is_patched_as_in_the_fold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = fake_services(Forgetful(forget_from=2, repairs=False), **SMALL)
    await append(services, make_events("u", 40))
    with caplog.at_level(logging.INFO, logger="memcompress.jobs.replay"):
        result = await replay_user(services, "u")
    assert result.failed is None
    summarizer = services.summarizer
    assert isinstance(summarizer, Forgetful)
    first = summarizer.answers[0]
    # The second chunk's answer ("v2") dropped the first's values: they are put back from the summary.
    assert result.replayed_summary is not None and first in result.replayed_summary
    assert "v1" in (result.replayed_summary or "") and result.as_dict()["failed"] is None


async def test_a_summariser_failure_ends_the_replay_with_its_reason(services: Services) -> None:
    assert isinstance(services.summarizer, Recording)
    services.summarizer.fail = RetryableSummarizerError("LLM unavailable (HTTP 503)")
    await append(services, make_events("u", 5))
    result = await replay_user(services, "u")
    assert result.failed == "chunk 1: RetryableSummarizerError: LLM unavailable (HTTP 503)"
    assert (result.chunks, result.replayed_summary) == (0, None)
