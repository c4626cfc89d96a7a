"""Jobs: compressing one user (``run_compression`` inline, ``compress_user`` under arq) and the scan."""

from memcompress.jobs.compress import CompressionDeps, FoldPolicy, run_compression
from memcompress.jobs.scan import ScanResult, scan_and_enqueue
from memcompress.jobs.tasks import JobServices, compress_user, recheck_after_job, scheduled_scan

__all__ = [
    "CompressionDeps",
    "FoldPolicy",
    "JobServices",
    "ScanResult",
    "compress_user",
    "recheck_after_job",
    "run_compression",
    "scan_and_enqueue",
    "scheduled_scan",
]
