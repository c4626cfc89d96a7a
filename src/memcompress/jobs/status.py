"""What ``memcompress status`` shows: of Redis (:func:`queue_report`, which still answers when MongoDB
does not) and of the store (:func:`store_report`)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from memcompress.jobs.services import Services
from memcompress.models import utc_now
from memcompress.repositories.protocols import QueueAdmin, UserLocks

LIST_AT_MOST = 50


async def queue_report(admin: QueueAdmin, locks: UserLocks) -> dict[str, Any]:
    """The queue as operators see it (:meth:`QueueAdmin.status`) and the per-user locks held."""
    report = await admin.status()
    held = sorted(await locks.holders(), key=lambda lock: str(lock["user_id"]))
    shown_last = {key: report.pop(key) for key in ("last_scan", "worker_health")}
    return report | {"held_locks": held[:LIST_AT_MOST], "held_locks_count": len(held)} | shown_last


async def store_report(services: Services) -> dict[str, Any]:
    """What the store tells: index risks (a TTL index nobody asked for, the profiles' unique index
    missing), dead letters, the LLM tokens of the last 24 hours, the last compactions."""
    letters = await services.dead_letters.list(LIST_AT_MOST)
    recent = await services.compaction_log.recent(10)
    usage = await services.compaction_log.token_usage_since(utc_now() - timedelta(days=1))
    return {
        "risks": await services.maintenance.index_risks(),
        "llm_usage_24h": asdict(usage),
        "dead_letters_count": await services.dead_letters.count(),
        "dead_letters": [letter.model_dump(mode="json") for letter in letters],
        "last_compactions": [
            record.model_dump(
                mode="json",
                include={
                    "user_id",
                    "outcome",
                    "reason",
                    "events_folded",
                    "unfoldable",
                    "summary_repaired",
                    "finished_at",
                    "duration_s",
                },
            )
            for record in recent
        ],
    }
