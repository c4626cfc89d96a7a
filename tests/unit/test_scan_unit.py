"""The scan's two modes, and user ids no job can take: the scan reports them (safely) and never queues
them, and a job that names one is dropped without a trace."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from memcompress.jobs import Services, run_queued_compression, scan_and_enqueue
from memcompress.jobs.scan import ScanMode, scan_mode
from memcompress.jobs.services import JobPolicy
from memcompress.models import Backlog, InvalidUserId, MemoryEvent, UserBacklog, shown_user_id, utc_now
from memcompress.summarizers.extractive import ExtractiveSummarizer
from tests.unit.fakes import FakeCompactionLog, FakeDeadLetters, FakeMemory, fake_services


@pytest.fixture
def services() -> Services:
    return fake_services(ExtractiveSummarizer(), threshold=10, keep_last=3)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", "'' (empty)"),
        ("secret words " * 30, "a string of 390 characters (sha256 "),
        (None, "null or missing"),
        (42, "int (sha256 " + hashlib.sha256(b"42").hexdigest()[:12]),
        (12345, "int (sha256 "),
        (["a", "list"], "list"),
    ],
)
def test_invalid_user_ids_are_shown_without_quoting_them(value: object, shown: str) -> None:
    assert shown_user_id(value).startswith(shown)
    assert "secret" not in shown_user_id(value) and "12345" not in shown_user_id(value)


async def test_the_scan_reports_invalid_user_ids_and_queues_only_valid_ones(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    backlog = Backlog(
        users=[UserBacklog("a", 20)],
        invalid=[InvalidUserId(shown_user_id(""), 30), InvalidUserId(shown_user_id(7), 5)],  # 5: under 10
    )
    memory = services.memory
    assert isinstance(memory, FakeMemory)

    async def scan_backlog(threshold: int, limit: int | None = None, since: object = None) -> Backlog:
        return backlog

    monkeypatch.setattr(memory, "scan_backlog", scan_backlog)
    result = await scan_and_enqueue(services)
    queued = [job["user_id"] for job in await services.queue_admin.jobs(10)]
    assert (queued, result.invalid_user_ids, result.invalid_examples) == (["a"], 1, ["'' (empty)"])
    last_scan = await services.queue_admin.last_scan()
    assert last_scan is not None and last_scan["invalid_user_ids"] == 1  # what status shows as the last scan


@pytest.mark.parametrize("user_id", ["", "x" * 257])
async def test_a_queued_job_for_an_invalid_user_id_is_dropped_without_a_trace(
    services: Services, user_id: str
) -> None:
    decision = await run_queued_compression(services, user_id, job_try=1)
    log, letters = services.compaction_log, services.dead_letters
    assert isinstance(log, FakeCompactionLog) and isinstance(letters, FakeDeadLetters)
    assert decision.retry_in_s is None and decision.result == {"outcome": "invalid_user_id"}
    assert (log.records, letters.letters) == ([], {})


def test_a_scan_is_incremental_from_the_last_watermark_until_a_full_one_is_due() -> None:
    policy = JobPolicy(
        max_tries=5, job_timeout_s=300, scan_limit=None, full_scan_interval_s=86_400, scan_overlap_s=600
    )
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    since, full_at = now - timedelta(minutes=20), now - timedelta(hours=3)
    last = {"next_since": since.isoformat(), "last_full_at": full_at.isoformat()}
    assert scan_mode(policy, last, now) == ScanMode(since, full_at)
    assert scan_mode(policy, last, now, full=True).since is None  # scan --full
    assert scan_mode(policy, None, now).since is None  # no earlier scan, or Redis lost its record
    assert scan_mode(policy, last | {"next_since": None}, now).since is None  # one cut short by a limit
    assert scan_mode(policy, last | {"next_since": "garbage"}, now).since is None
    assert scan_mode(policy, last, now + timedelta(hours=21)).since is None  # the daily full scan is due
    assert scan_mode(replace(policy, full_scan_interval_s=0), last, now).since is None  # always full


async def test_scans_record_their_mode_and_the_next_watermark(services: Services) -> None:
    memory = services.memory
    assert isinstance(memory, FakeMemory)
    old = utc_now() - timedelta(days=2)
    for i in range(60):
        await memory.append([MemoryEvent(user_id="old", role="user", content=f"{i}", created_at=old)])

    first = await scan_and_enqueue(services)
    assert (first.mode, first.users[0].user_id, first.last_full_at is not None) == ("full", "old", True)
    await services.queue_admin.purge()
    second = await scan_and_enqueue(services)  # nobody has appended since: nobody is looked at
    assert (second.mode, second.active_users, second.users) == ("incremental", 0, [])
    assert second.since == first.next_since and second.last_full_at == first.last_full_at
    for i in range(60):
        await memory.append([MemoryEvent(user_id="new", role="user", content=f"{i}")])
    third = await scan_and_enqueue(services)
    assert (third.mode, third.active_users, [u.user_id for u in third.users]) == ("incremental", 1, ["new"])
    assert (await scan_and_enqueue(services, full=True)).mode == "full"
    assert (await scan_and_enqueue(services, threshold=20)).mode == "full"  # another threshold
    cut = await scan_and_enqueue(services, limit=1)
    assert cut.next_since == cut.since  # cut short: the watermark stays where it was


async def test_a_scan_with_another_threshold_moves_neither_the_full_scan_time_nor_the_watermark(
    services: Services,
) -> None:
    """Users between the two thresholds must not wait for the next daily full scan because of it."""
    memory = services.memory
    assert isinstance(memory, FakeMemory)
    old = utc_now() - timedelta(days=2)
    for i in range(60):
        await memory.append([MemoryEvent(user_id="old", role="user", content=f"{i}", created_at=old)])
    first = await scan_and_enqueue(services)
    second = await scan_and_enqueue(services)

    other = await scan_and_enqueue(services, threshold=20)  # `memcompress scan --threshold 20`

    assert other.mode == "full"
    assert (other.last_full_at, other.next_since) == (first.last_full_at, second.next_since)
    after = await scan_and_enqueue(services)
    assert (after.mode, after.since, after.last_full_at) == (
        "incremental",
        second.next_since,
        first.last_full_at,
    )
