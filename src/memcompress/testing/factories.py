"""Test data builders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memcompress.models import MemoryEvent, Role

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_events(
    user_id: str, count: int, *, start: datetime = T0, step: timedelta = timedelta(seconds=1), tag: str = "e"
) -> list[MemoryEvent]:
    """``count`` events with distinct, recognisable content ``<tag>-<i>`` at ``start + i*step``."""
    roles = (Role.USER, Role.ASSISTANT)
    return [
        MemoryEvent(
            user_id=user_id,
            role=roles[i % 2],
            content=f"{tag}-{i}: I like topic number {i}.",
            created_at=start + i * step,
        )
        for i in range(count)
    ]
