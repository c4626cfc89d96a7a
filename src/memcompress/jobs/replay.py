"""Replay (shadow) mode: what would the current summariser and prompt make of everything a user said?

What it guarantees:

* It stores nothing. It reads the profile (creating none), the user's overrides, the archived and the
  current events, and calls the summariser; it takes no lock (there is no write for one to protect),
  records no compaction and moves no metric of the fold.
* The summariser sees what the fold would have sent it had every event arrived at once: the same
  order, the same chunking, the same budget, language and model, starting from no summary; and each
  answer is held to the fold's answer guard (:mod:`memcompress.summarizers.guard`) against the
  replay's own summary so far and the chunk's events, with the same one repair request and the same
  patch, so the replayed summary is one the fold would have stored.
* The carry verdict compares the replayed summary with the stored one as the carry guard compares a new
  summary with the previous one (:func:`memcompress.summarizers.carry.check_carry`): does the replay
  still carry every concrete value the stored summary holds? The verdict and the counts are safe to
  log; the two summaries are user content and are only returned to the caller (the operator asked).

How, in steps:

1. Read the profile (its summary and summary version) and the user's overrides.
2. Stream the archived events (``user_memory_archive``, kept with ``RETENTION=archive``) and the current
   foldable events (the kept history included), merged in the fold's order: by ``created_at``; on a
   tie, archived before current (they were folded earlier), each stream in its own ``(created_at,
   _id)`` order. An event found in both places (an archive copy whose delete a crash interrupted) is
   sent once. Events deleted with ``RETENTION=delete`` are gone: the replay cannot contain them, and
   ``folded_not_archived`` says how many the profile counts as folded beyond what the archive holds.
3. Chunk the stream as the fold does (:func:`memcompress.jobs.compress.chunk_events`).
4. Summarise each chunk with the summary so far (:func:`memcompress.jobs.compress.summary_request`),
   checked as the fold's step 5 checks it (:func:`memcompress.jobs.compress.summarise_guarded`): an
   answer that is not a summary gets one repair request and fails if that one is not either; values it
   dropped get the repair request and are then patched in. A failure (that, or the summariser's own)
   ends the replay at that chunk: ``failed`` names the chunk and the reason (checks and counts, never
   values), and the replayed summary is that of the chunks before it.
5. Judge the replayed summary against the stored one with the carry guard's check.
6. Read the summary version again: if it moved, a compression ran meanwhile and may have moved events
   from ``user_memory`` to the archive under the replay's reads (one seen twice or not at all), so
   the result says ``version_moved`` and should be taken again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memcompress.jobs.compress import chunk_events, summarise_guarded, summary_request
from memcompress.jobs.services import Services
from memcompress.models import StoredEvent, UserOverrides
from memcompress.summarizers.base import SummarizerError
from memcompress.summarizers.carry import CarryVerdict, check_carry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """A replay's outcome. ``stored_summary`` and ``replayed_summary`` are user content: print them for
    the operator who asked, never log them; everything else is counts and names."""

    user_id: str
    summarizer: str
    model: str | None
    language: str
    stored_summary: str | None
    stored_version: int
    events_summarized: int  # events the profile counts as folded into the stored summary
    archived_events: int
    current_events: int
    chunks: int
    replayed_summary: str | None
    verdict: CarryVerdict
    version_moved: bool
    failed: str | None = None  # "chunk N: <error class>: <reason>" when a chunk's summary failed

    @property
    def folded_not_archived(self) -> int:
        """Events folded into the stored summary that the archive does not hold (deleted with
        ``RETENTION=delete``, expired, or still waiting for their trim): the replay cannot see them."""
        return max(self.events_summarized - self.archived_events, 0)

    def as_dict(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "summarizer": self.summarizer,
            "model": self.model,
            "language": self.language,
            "archived_events": self.archived_events,
            "current_events": self.current_events,
            "chunks": self.chunks,
            "events_summarized": self.events_summarized,
            "folded_not_archived": self.folded_not_archived,
            "stored_version": self.stored_version,
            "version_moved": self.version_moved,
            "failed": self.failed,
            "stored_summary": self.stored_summary,
            "replayed_summary": self.replayed_summary,
            "verdict": {
                "ok": self.verdict.ok,
                "reason": self.verdict.reason,
                "dropped": dict(self.verdict.dropped),
                "shrunk": self.verdict.shrunk,
                "at_budget": self.verdict.at_budget,
            },
        }


async def replay_user(services: Services, user_id: str) -> ReplayResult:
    """Re-summarise ``user_id``'s archived and current events from no summary; store nothing."""
    policy = services.policy
    # Step 1: the stored summary, and what the fold would use for this user.
    profile = await services.profiles.find(user_id)
    stored = profile.memory_summary if profile else None
    version = profile.summary_version if profile else 0
    overrides = await services.overrides.get(user_id) or UserOverrides()
    language = overrides.language or (profile.language if profile else None) or policy.default_language

    # Step 2: archived and current events, merged in the fold's order.
    counts = {_ARCHIVED: 0, _CURRENT: 0}

    async def counted() -> AsyncIterator[StoredEvent]:
        archived = services.memory.iter_archived_oldest(user_id, batch_size=policy.batch_size)
        current = services.memory.iter_oldest(user_id, batch_size=policy.batch_size)
        async for source, event in _merged(archived, current):
            counts[source] += 1
            yield event

    # Steps 3 and 4: chunk as the fold does; each chunk's answer feeds the next.
    summary: str | None = None
    chunks = 0
    failed: str | None = None
    try:
        async for chunk in chunk_events(counted(), policy.chunk_chars, policy.batch_size):
            request = summary_request(policy, summary, chunk, language, overrides.model)
            summary = (await summarise_guarded(request, services.summarizer.summarize)).text
            chunks += 1
    except SummarizerError as error:
        failed = f"chunk {chunks + 1}: {type(error).__name__}: {error}"

    # Step 5: the carry guard's verdict, the stored summary as the previous one.
    verdict = check_carry(stored, summary or "", max_chars=policy.summary_max_chars)

    # Step 6: did a compression move the summary (and events) under the replay?
    after = await services.profiles.find(user_id)
    result = ReplayResult(
        user_id=user_id,
        summarizer=services.summarizer.name,
        model=overrides.model or services.summarizer.model,
        language=language,
        stored_summary=stored,
        stored_version=version,
        events_summarized=profile.events_summarized if profile else 0,
        archived_events=counts[_ARCHIVED],
        current_events=counts[_CURRENT],
        chunks=chunks,
        replayed_summary=summary,
        verdict=verdict,
        version_moved=(after.summary_version if after else 0) != version,
        failed=failed,
    )
    log.info(
        "replayed user_id=%s: %d archived + %d current events in %d chunks (%d folded events not "
        "archived)%s; carry verdict %s: %s%s",
        user_id,
        result.archived_events,
        result.current_events,
        result.chunks,
        result.folded_not_archived,
        f"; failed at {failed}" if failed else "",
        "ok" if verdict.ok else "NOT ok",
        verdict.reason,
        "; the summary version moved during the replay" if result.version_moved else "",
    )
    return result


_ARCHIVED, _CURRENT = "archived", "current"


async def _merged(
    archived: AsyncIterator[StoredEvent], current: AsyncIterator[StoredEvent]
) -> AsyncIterator[tuple[str, StoredEvent]]:
    """Step 2's merge of two streams that are each in the fold's order, tagged with their source.

    Ordered by ``created_at``, archived first on a tie. An event stored in both places has the same
    ``_id`` and ``created_at`` in each, so it is recognised among the events of its tie (refs are
    compared with ``==``: any BSON ``_id`` type works) and sent once, as archived."""
    heads: dict[str, StoredEvent | None] = {
        _ARCHIVED: await anext(archived, None),
        _CURRENT: await anext(current, None),
    }
    streams = {_ARCHIVED: archived, _CURRENT: current}
    tie_at: datetime | None = None
    tie_refs: list[Any] = []
    while True:
        ready = [(source, head) for source, head in heads.items() if head is not None]
        if not ready:
            return
        # min() keeps the first of equal keys: archived wins a tie.
        source, stored = min(ready, key=lambda pair: pair[1].event.created_at)
        heads[source] = await anext(streams[source], None)
        if stored.event.created_at != tie_at:
            tie_at, tie_refs = stored.event.created_at, []
        elif stored.ref in tie_refs:
            continue
        tie_refs.append(stored.ref)
        yield source, stored
