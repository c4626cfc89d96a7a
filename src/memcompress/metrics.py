"""Prometheus metrics. Names of the ``user_*`` series follow TL-02; never a user id as a label.

Every metric lives in a registry the caller chooses (``Metrics(registry)``); by default a private
``CollectorRegistry`` so that tests and host apps never collide on the global one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # TL-02 names.
        self.profile_reads = Counter("user_profile_reads_total", "Profile reads.", registry=r)
        self.profile_writes = Counter("user_profile_writes_total", "Profile writes.", ["kind"], registry=r)
        self.memory_events = Counter(
            "user_memory_events_total", "Events appended to user_memory.", ["role"], registry=r
        )
        self.compressions = Counter(
            "user_memory_compressions_total",
            "Compression runs by outcome (compressed, skipped, conflict, failed).",
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
