"""The fault-injection scenario (see :mod:`tests.faults.scenario`): worker SIGKILLs and a SIGTERM, a
Redis restart, a Mongo wire server restart, LLM failures and malformed documents, while events keep
arriving; then every event must be accounted for, and once the faults stop every user must get under
the threshold within its bounds (liveness). In each layout; ``MEMCOMPRESS_FAULT_SCALE=5`` runs it
larger."""

from __future__ import annotations

from pathlib import Path

import pytest

from memcompress.layouts import LAYOUTS, LayoutName
from tests.faults.scenario import EXPECTED_FAILURES, FaultRun, Scale, table

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_every_event_survives_kills_restarts_llm_failures_and_malformed_documents(
    tmp_path: Path, layout: LayoutName
) -> None:
    scale = Scale.from_env(layout)
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
    assert bool(stats.malformed) is run.store.plants_malformed

    # Drained in time, and the workers stopped cleanly.
    assert stats.unsettled_at_deadline == [], (
        f"not compressed within the drain deadline: {stats.unsettled_at_deadline}"
    )
    assert all(code == 0 for code in stats.final_exit_codes), stats.final_exit_codes

    # (a)-(e): nothing lost, nothing summarised twice, no concurrent compressions, all settled, the
    # malformed documents untouched; once the faults stopped, every user under the threshold within its
    # runs or dead-lettered for a reason the faults explain, and within the per-user call budget.
    assert report.problems() == {}
    assert report.checked == len(stats.appended)
    assert report.lost == [] and report.stored + report.summarised == report.checked
    support = run.support_report  # tests/support/invariant.py, read from the live stores, agrees
    assert support is not None
    assert (support.lost, support.summarised_twice, support.checked) == ([], [], report.checked)
    assert report.parked == []  # the faults are transient: nothing may need parking
    assert report.calls_served and report.calls_recorded  # the call bound was checked on something

    # Nothing crashed on the way: every failed run failed for a reason the faults explain.
    failures = {str(r.get("error_class")) for r in snapshot.runs if r.get("outcome") == "failed"}
    assert failures <= EXPECTED_FAILURES, failures - EXPECTED_FAILURES
    assert stats.unexpected_exits == [], stats.unexpected_exits
