"""The product's invariant, checked from the outside: every appended event is still stored (or
archived) or was inside an LLM request whose answer is part of the stored summary chain."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from memcompress.layouts import StoreLayout
from memcompress.models import MemoryEvent
from memcompress.repositories.database import MongoDatabase
from memcompress.testing.app_layouts import app_layout
from memcompress.testing.llm_server import FakeLLM


@dataclass
class InvariantReport:
    checked: int = 0
    stored: int = 0
    summarised: int = 0
    lost: list[str] = field(default_factory=list)
    summarised_twice: list[str] = field(default_factory=list)


async def check_invariant(
    database: MongoDatabase,
    llm: FakeLLM,
    appended: Iterable[MemoryEvent],
    layout: StoreLayout | None = None,
) -> InvariantReport:
    """``appended``: every event written, under the default names (``user_id`` is the lead in the
    ``messages`` layout, the conversation id in ``conversations``). In the other layouts, whose
    messages have no ids of their own, an event is found by its content: give each a distinct one."""
    app = app_layout(layout)
    report = InvariantReport()
    by_user: dict[str, list[MemoryEvent]] = {}
    for event in appended:
        by_user.setdefault(event.user_id, []).append(event)
    for user_id, events in by_user.items():
        stored, summary = await app.stored_and_summary(database, user_id)
        chain = llm.chain(summary)
        in_chain = Counter(text for exchange in chain for text in exchange.texts)
        for event in events:
            report.checked += 1
            if in_chain[event.content] > 1:
                report.summarised_twice.append(event.content)
            if app.key(event) in stored:
                report.stored += 1
            elif in_chain[event.content]:
                report.summarised += 1
            else:
                report.lost.append(event.content)
    return report
