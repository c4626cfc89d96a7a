"""The use cases: compress one user (inline or taken from the queue), plan a dry run, replay a user's
history in shadow, scan for users over the threshold, forget a user, report status. They see only the
ports (``Services``)."""

from memcompress.jobs.compress import run_compression
from memcompress.jobs.fold_policy import FoldPolicy
from memcompress.jobs.forget import forget_user
from memcompress.jobs.inline import compress_now
from memcompress.jobs.plan import (
    BacklogEstimate,
    CompressionPlan,
    LLMPrices,
    estimate_backlog,
    plan_compression,
)
from memcompress.jobs.queued import JobDecision, recheck_after_job, run_queued_compression
from memcompress.jobs.replay import ReplayResult, replay_user
from memcompress.jobs.scan import Candidates, ScanResult, find_candidates, find_users, scan_and_enqueue
from memcompress.jobs.services import JobPolicy, Services
from memcompress.jobs.status import queue_report, store_report

__all__ = [
    "BacklogEstimate",
    "Candidates",
    "CompressionPlan",
    "FoldPolicy",
    "JobDecision",
    "JobPolicy",
    "LLMPrices",
    "ReplayResult",
    "ScanResult",
    "Services",
    "compress_now",
    "estimate_backlog",
    "find_candidates",
    "find_users",
    "forget_user",
    "plan_compression",
    "queue_report",
    "recheck_after_job",
    "replay_user",
    "run_compression",
    "run_queued_compression",
    "scan_and_enqueue",
    "store_report",
]
