"""The demo's wait: a user has ended when a run compressed or skipped it, or when it was dead-lettered;
a failed try that will be retried is not an end, and the wait gives up after its time with the users
that ended."""

from __future__ import annotations

import pytest

from memcompress import demo
from memcompress.models import CompactionRecord, DeadLetter, Outcome
from memcompress.summarizers.extractive import ExtractiveSummarizer
from tests.unit.fakes import fake_services


async def test_a_failed_try_is_not_an_end_and_a_dead_letter_is(capsys: pytest.CaptureFixture[str]) -> None:
    services = fake_services(ExtractiveSummarizer())
    log = services.compaction_log
    for user, outcome in (("a", Outcome.COMPRESSED), ("b", Outcome.SKIPPED), ("c", Outcome.FAILED)):
        await log.record(CompactionRecord(user_id=user, outcome=outcome, error_class="JobTimeout"))

    ended = await demo._wait_for_users(services, ["a", "b", "c"], within_s=0)  # c only failed a try
    assert ended == {"a": demo.UserEnd("compressed"), "b": demo.UserEnd("skipped")}

    await services.dead_letters.record(DeadLetter(user_id="c", reason="r", tries=5, error_class="JobTimeout"))
    ended = await demo._wait_for_users(services, ["a", "b", "c"], within_s=60)  # returns: every user ended
    assert ended["c"] == demo.UserEnd("dead letter", "JobTimeout")
    assert "3/3 users done" in capsys.readouterr().out  # the last progress line, stdout not a terminal
