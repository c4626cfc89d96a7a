"""Prometheus metrics. Names of the ``user_*`` series follow TL-02; never a user id as a label.

Every metric lives in a registry the caller chooses (``Metrics(registry)``); by default a private
``CollectorRegistry`` so that tests and host apps never collide on the global one.

Only what the worker changes is exported: TL-02's ``user_memory_events_total`` (events the app
appends) is the app's own counter, not the worker's, which never appends an event. A process that
exports (the worker's endpoint, run-once's push) calls :func:`exported_without_created` first, and the
worker adds :func:`add_process_collectors` to its registry.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
RUN_BUCKETS = (60, 300, 600, 1200, 1800, 3600, 7200, 14400)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # TL-02 names.
        self.profile_reads = Counter("user_profile_reads_total", "Profile reads.", registry=r)
        self.profile_writes = Counter("user_profile_writes_total", "Profile writes.", ["kind"], registry=r)
        self.compressions = Counter(
            "user_memory_compressions_total",
            "Compression runs by outcome (compressed, skipped, busy, conflict, failed).",
            ["outcome"],
            registry=r,
        )
        self.compression_duration = Histogram(
            "user_memory_compression_duration_seconds",
            "Wall time of one user's compression run.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        # Ours.
        self.build_info = Gauge(
            "memcompress_build_info", "Always 1; the installed memcompress version.", ["version"], registry=r
        )
        self.build_info.labels(version=_installed_version()).set(1)
        self.malformed_documents = Counter(
            "memcompress_malformed_documents_total",
            "Stored documents skipped because they failed validation (never deleted).",
            ["collection"],
            registry=r,
        )
        self.events_folded = Counter(
            "memcompress_events_folded_total", "Events folded into a summary.", registry=r
        )
        self.events_trimmed = Counter(
            "memcompress_events_trimmed_total",
            "Summarised events removed from user_memory, by retention mode.",
            ["retention"],
            registry=r,
        )
        self.llm_requests = Counter(
            "memcompress_llm_requests_total", "Summariser requests.", ["summarizer"], registry=r
        )
        self.llm_failures = Counter(
            "memcompress_llm_failures_total",
            "Summariser failures by class (retryable, permanent, rejected_output).",
            ["summarizer", "error_class"],
            registry=r,
        )
        self.llm_duration = Histogram(
            "memcompress_llm_request_duration_seconds",
            "Wall time of one summariser request.",
            ["summarizer"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.llm_tokens = Counter(
            "memcompress_llm_tokens_total",
            "Tokens the LLM server reported using, by kind (prompt, completion).",
            ["summarizer", "kind"],
            registry=r,
        )
        self.llm_rate_limited = Counter(
            "memcompress_llm_rate_limited_seconds_total",
            "Time summariser requests waited for the shared LLM budget (MEMCOMPRESS_LLM_RPM / _TPM).",
            registry=r,
        )
        self.lock_contention = Counter(
            "memcompress_lock_contention_total",
            "Compression runs that found the user's lock held by another worker.",
            registry=r,
        )
        self.lock_lost = Counter(
            "memcompress_lock_lost_total",
            "Compression runs that lost their lock before writing and stopped.",
            registry=r,
        )
        self.version_conflicts = Counter(
            "memcompress_version_conflicts_total",
            "Summary writes rejected because another writer moved the version first.",
            registry=r,
        )
        self.summary_overwrites = Counter(
            "memcompress_summary_overwrites_total",
            "Summaries the app had overwritten from a stale copy, repaired by action (restored, merged).",
            ["action"],
            registry=r,
        )
        self.answer_rejections = Counter(
            "memcompress_answer_rejections_total",
            "Summariser answers rejected by the answer guard, by check (prompt_echo, markup, code, json, "
            "stack_trace, invented_values, wrong_language, empty, refusal, incomplete, oversize, ...).",
            ["check"],
            registry=r,
        )
        self.values_patched = Counter(
            "memcompress_summary_values_patched_total",
            "Values an answer dropped, put back into the summary from their source sentences.",
            registry=r,
        )
        self.values_dropped = Counter(
            "memcompress_summary_values_dropped_total",
            "Values missing from a summary at its length budget that did not fit (recorded decisions).",
            registry=r,
        )
        self.compaction_cap_hits = Counter(
            "memcompress_compaction_cap_hits_total",
            "Runs skipped because the user reached MEMCOMPRESS_MAX_COMPACTIONS_PER_DAY.",
            registry=r,
        )
        # The queue (worker processes).
        self.jobs = Counter(
            "memcompress_jobs_total",
            "Finished job attempts by function and status (complete, retry, dead_letter).",
            ["function", "status"],
            registry=r,
        )
        self.jobs_in_progress = Gauge(
            "memcompress_jobs_in_progress", "Jobs running in this process.", registry=r
        )
        self.job_limit = Gauge(
            "memcompress_job_limit",
            "Jobs this worker process may run at once now: 1 to MAX_JOBS, fewer while the store is saturated.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "memcompress_queue_depth", "Jobs waiting in the queue (sampled by the worker).", registry=r
        )
        self.dead_letters = Counter(
            "memcompress_dead_letters_total", "Users whose job was dead-lettered.", registry=r
        )
        self.dead_letters_stored = Gauge(
            "memcompress_dead_letters_stored",
            "Dead letters currently stored (sampled by the worker).",
            registry=r,
        )
        self.scan_users_found = Gauge(
            "memcompress_scan_users_found", "Users over the threshold at the last scan.", registry=r
        )
        self.scan_enqueued = Counter(
            "memcompress_scan_enqueued_total",
            "Jobs queued by scans (not counting collapsed ones).",
            registry=r,
        )
        self.last_scan = Gauge(
            "memcompress_last_scan_timestamp_seconds", "When the last scan finished (Unix time).", registry=r
        )


def _installed_version() -> str:
    try:
        return version("memcompress")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def exported_without_created() -> None:
    """No ``*_created`` series: they double the counters' and histograms' series and nothing (alert,
    panel, runbook) reads them. prometheus_client's switch is process-wide, so only the processes that
    export call this (the worker, run-once), never a host app importing this module."""
    disable_created_metrics()  # type: ignore[no-untyped-call]


def add_process_collectors(registry: CollectorRegistry) -> None:
    """The worker's own process: ``process_*`` (CPU, memory, open files, start time), ``python_info``
    and ``python_gc_*``, as prometheus_client puts them on its global registry."""
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)


class RunMetrics:
    """TL-08's metrics of one ``memcompress run-once`` (cron mode), pushed to a Pushgateway when
    ``MEMCOMPRESS_PUSHGATEWAY_URL`` is set; the long-running worker is scraped instead."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.runs = Counter("personalized_memory_worker_runs_total", "run-once invocations.", registry=r)
        self.errors = Counter(
            "personalized_memory_worker_errors_total", "Users whose compression failed.", registry=r
        )
        self.users_processed = Counter(
            "personalized_memory_worker_users_processed_total",
            "Users compressed or skipped by run-once.",
            registry=r,
        )
        self.duration = Histogram(
            "personalized_memory_worker_duration_seconds",
            "Wall time of run-once (one observation per pushed run: _sum is the last run's duration).",
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "personalized_memory_worker_last_success_timestamp_seconds",
            "When a run-once last finished with no failed user (Unix time).",
            registry=r,
        )
