"""What ``memcompress status`` shows of the store (the queue's part is ``JobQueue.status``, which still
answers when MongoDB does not)."""

from __future__ import annotations

from typing import Any

from memcompress.jobs.services import Services

LIST_AT_MOST = 50


async def store_report(services: Services) -> dict[str, Any]:
    """What the store tells: TTL risks, dead letters, the last compactions."""
    letters = await services.dead_letters.list(LIST_AT_MOST)
    recent = await services.compaction_log.recent(10)
    return {
        "risks": await services.maintenance.memory_ttl_risks(),
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
