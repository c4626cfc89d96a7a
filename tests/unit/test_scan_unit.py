"""User ids no job can take: the scan reports them (safely) and never queues them, and a job that names
one is dropped without a trace."""

from __future__ import annotations

import pytest

from memcompress.jobs import Services, run_queued_compression, scan_and_enqueue
from memcompress.models import Backlog, InvalidUserId, UserBacklog, shown_user_id
from memcompress.summarizers import ExtractiveSummarizer
from tests.unit.fakes import FakeCompactionLog, FakeDeadLetters, FakeMemory, FakeQueue, fake_services


@pytest.fixture
def services() -> Services:
    return fake_services(ExtractiveSummarizer(), threshold=10, keep_last=3)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", "'' (empty)"),
        ("secret words " * 30, "a string of 390 characters (sha256 "),
        (None, "null or missing"),
        (42, "int 42"),
        (["a", "list"], "list"),
    ],
)
def test_invalid_user_ids_are_shown_without_quoting_them(value: object, shown: str) -> None:
    assert shown_user_id(value).startswith(shown)
    assert "secret" not in shown_user_id(value)


async def test_the_scan_reports_invalid_user_ids_and_queues_only_valid_ones(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    backlog = Backlog(
        users=[UserBacklog("a", 20)],
        invalid=[InvalidUserId(shown_user_id(""), 30), InvalidUserId(shown_user_id(7), 5)],  # 5: under 10
    )
    memory = services.memory
    assert isinstance(memory, FakeMemory)

    async def scan_backlog(threshold: int, limit: int | None = None) -> Backlog:
        return backlog

    monkeypatch.setattr(memory, "scan_backlog", scan_backlog)
    result = await scan_and_enqueue(services)
    queue = services.queue
    assert isinstance(queue, FakeQueue)
    assert (list(queue.queued), result.invalid_user_ids, result.invalid_examples) == (
        ["a"],
        1,
        ["'' (empty)"],
    )
    assert queue.scans[-1]["invalid_user_ids"] == 1  # what status shows as the last scan


@pytest.mark.parametrize("user_id", ["", "x" * 257])
async def test_a_queued_job_for_an_invalid_user_id_is_dropped_without_a_trace(
    services: Services, user_id: str
) -> None:
    decision = await run_queued_compression(services, user_id, job_try=1)
    log, letters = services.compaction_log, services.dead_letters
    assert isinstance(log, FakeCompactionLog) and isinstance(letters, FakeDeadLetters)
    assert decision.retry_in_s is None and decision.result == {"outcome": "invalid_user_id"}
    assert (log.records, letters.letters) == ([], {})
