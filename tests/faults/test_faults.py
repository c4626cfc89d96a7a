"""The fault-injection scenario (see :mod:`tests.faults.scenario`): worker SIGKILLs and a SIGTERM, a
Redis restart, a Mongo wire server restart, LLM failures and malformed documents, while events keep
arriving; then every event must be accounted for. ``MEMCOMPRESS_FAULT_SCALE=5`` runs it larger."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.scenario import EXPECTED_FAILURES, FaultRun, Scale, table

pytestmark = pytest.mark.integration


async def test_every_event_survives_kills_restarts_llm_failures_and_malformed_documents(
    tmp_path: Path,
) -> None:
    scale = Scale.from_env()
    run = FaultRun(scale, tmp_path)
    await run.run()
    print(table(run))
    try:
        _assert_sound(run, scale)
    except AssertionError:
        kept = run.workers.all if run.workers else []
        print("worker logs kept:", *(str(w.log_path) for w in kept), sep="\n  ")
        raise
    run.cleanup_logs()


def _assert_sound(run: FaultRun, scale: Scale) -> None:
    stats, report = run.stats, run.report
    assert report is not None
    snapshot = run.snapshot
    assert snapshot is not None

    # The faults really happened.
    assert stats.kills >= scale.min_kills
    assert stats.sigterms == scale.sigterms and all(code == 0 for code in stats.sigterm_exit_codes)
    assert len(stats.redis_windows) == scale.redis_restarts
    assert len(stats.mongo_windows) == scale.mongo_restarts
    assert all(before == after for before, after in stats.probe_counts)
    assert run.llm.failed > 0
    assert stats.malformed

    # Drained in time, and the workers stopped cleanly.
    assert stats.unsettled_at_deadline == [], (
        f"not compressed within the drain deadline: {stats.unsettled_at_deadline}"
    )
    assert all(code == 0 for code in stats.final_exit_codes), stats.final_exit_codes

    # (a)-(d): nothing lost, nothing summarised twice, no concurrent compressions, all settled, the
    # malformed documents untouched.
    assert report.problems() == {}
    assert report.checked == len(stats.appended)
    assert report.lost == [] and report.stored + report.summarised == report.checked
    support = run.support_report  # tests/support/invariant.py, read from the live stores, agrees
    assert support is not None
    assert (support.lost, support.summarised_twice, support.checked) == ([], [], report.checked)

    # Nothing crashed on the way: every failed run failed for a reason the faults explain.
    failures = {str(r.get("error_class")) for r in snapshot.runs if r.get("outcome") == "failed"}
    assert failures <= EXPECTED_FAILURES, failures - EXPECTED_FAILURES
    assert stats.unexpected_exits == [], stats.unexpected_exits
