"""What the worker hands arq: the scheduled scan's cron job is named per queue, because arq's cron job
ids (name and scheduled time) are not per queue, and two deployments sharing a Redis database would
otherwise take each other's scans for duplicates."""

from __future__ import annotations

from memcompress.settings import load_settings
from memcompress.worker.arq_settings import worker_settings


def _cron_names(**settings: object) -> list[str]:
    return [job.name for job in worker_settings(load_settings(**settings))["cron_jobs"]]


def test_each_queue_has_its_own_scan_job_names() -> None:
    staging, production = _cron_names(queue_name="staging"), _cron_names(queue_name="production")
    assert staging == ["scan_and_enqueue:staging"]
    assert not set(staging) & set(production)


def test_a_schedule_of_several_runs_names_each_one() -> None:
    names = _cron_names(queue_name="q", scan_cron="0 3 * * 1-5")
    assert len(names) == len(set(names)) and all(name.startswith("scan_and_enqueue:q") for name in names)
