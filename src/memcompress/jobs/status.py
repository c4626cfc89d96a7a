"""What ``memcompress status`` shows: the queue, running jobs, held locks, dead letters, recent runs."""

from __future__ import annotations

from typing import Any

from memcompress.jobs.services import Services

LIST_AT_MOST = 50


async def status_report(services: Services) -> dict[str, Any]:
    letters = await services.dead_letters.list(LIST_AT_MOST)
    recent = await services.compaction_log.recent(10)
    return await services.queue.status() | {
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
