"""The ports: what the jobs need from storage, locks and the queue. Jobs depend only on these (and on
:mod:`memcompress.repositories.errors`), so unit tests can use in-memory fakes and only
:mod:`memcompress.bootstrap` names the adapters.

Some ports are wider than a plain repository because the width *is* the guarantee:
``update_summary_if_version`` (the fenced write) and ``iter_oldest`` (keyset paging in the fold's total
order) carry the consistency protocol of :mod:`memcompress.jobs.compress`. And every write that can
create a document of a user is fenced against ``memcompress forget`` (see :mod:`memcompress.jobs.forget`):
it raises ``UserErased``, leaving nothing, once the user has an erase tombstone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Final, Literal, Protocol

from memcompress.models import (
    Backlog,
    CompactionRecord,
    DeadLetter,
    FoldState,
    MemoryEvent,
    RecentHistory,
    StoredEvent,
    TokenUsage,
    UserBacklog,
    UserOverrides,
    UserProfile,
    Watermark,
)
from memcompress.settings import BATCH_SIZE


class _Unchecked(Enum):
    ANY_SUMMARY = "any summary"


# ``expected_summary`` of a summary write that does not check the stored text (the version alone).
ANY_SUMMARY: Final = _Unchecked.ANY_SUMMARY
ExpectedSummary = str | None | Literal[_Unchecked.ANY_SUMMARY]


class UserMemoryRepository(Protocol):
    async def get_recent_events(self, user_id: str, limit: int) -> list[MemoryEvent]: ...

    async def count_events(self, user_id: str) -> int: ...

    async def recent_history(self, user_id: str, limit: int, pending: Sequence[Any] = ()) -> RecentHistory:
        """The user's newest ``limit`` documents (the valid foldable events among them, oldest first,
        those that are not dated or not foldable passed over) and the sizes of the whole history, in
        one read when the user has fewer than ``limit`` documents (``complete``), else in two (the
        read, and the sizes). ``pending``: a pending trim's refs, for ``pending_stored``."""
        ...

    async def unfoldable_refs(self, user_id: str, limit: int) -> list[Any]: ...

    def iter_oldest(
        self, user_id: str, *, max_documents: int | None = None, batch_size: int = BATCH_SIZE
    ) -> AsyncIterator[StoredEvent]: ...

    def iter_archived_oldest(
        self, user_id: str, *, batch_size: int = BATCH_SIZE
    ) -> AsyncIterator[StoredEvent]:
        """The user's archived events (``RETENTION=archive``), in ``iter_oldest``'s order and by its
        rules; only a replay reads them."""
        ...

    async def delete_by_refs(self, user_id: str, refs: Sequence[Any]) -> int:
        """Remove exactly the documents ``refs`` name, and only documents of ``user_id``."""
        ...

    async def archive_summary_lines(self, user_id: str, lines: Sequence[str]) -> None:
        """Keep lines a summary gave up (it was over its budget) in the archive, as documents of role
        ``summary`` dated now; erase-fenced like every archive copy."""
        ...

    async def archive_by_refs(self, user_id: str, refs: Sequence[Any]) -> int:
        """Move exactly the documents ``refs`` name, and only documents of ``user_id``, to the archive.
        Raises ``UserErased``, with no copy left, if the user was erased meanwhile."""
        ...

    async def users_over_threshold(self, threshold: int, limit: int | None = None) -> list[UserBacklog]: ...

    async def scan_backlog(
        self, threshold: int, limit: int | None = None, since: datetime | None = None
    ) -> Backlog:
        """The users over ``threshold`` and, apart, the ``user_id`` values over it that are not valid
        user ids (one pass over the events). With ``since``, only users with an event created since
        then are looked at (``active_users`` says how many): an incremental scan."""
        ...


class UserProfileRepository(Protocol):
    async def get(self, user_id: str) -> UserProfile:
        """The profile, created if there is none; raises ``UserErased``, with no profile left, if it
        created one for a user erased meanwhile."""
        ...

    async def find(self, user_id: str) -> UserProfile | None: ...

    async def find_for_fold(self, user_id: str, compressed_since: datetime) -> FoldState:
        """The profile (None when there is none; none is created), the user's overrides, and how many
        runs compressed the user since ``compressed_since``, in one read: all the fold needs to
        know of the user besides the history."""
        ...

    async def save(self, profile: UserProfile) -> None: ...

    async def update_summary_if_version(
        self,
        user_id: str,
        *,
        expected_version: int,
        summary: str,
        watermark: Watermark | None,
        folded_refs: Sequence[Any],
        profile_ref: Any = None,
        create: bool = False,
        expected_summary: ExpectedSummary = ANY_SUMMARY,
    ) -> bool:
        """The fenced write: the summary and ``folded_refs`` as the pending trim of the new version,
        only if the version is still ``expected_version`` (and the document is ``profile_ref``) and,
        given ``expected_summary`` (the summary as the run read it; None: none, a missing field or a
        null), the stored summary is still that text. The app never bumps the version, so the text is
        what makes a write lose to an app that saved ``memory_summary`` meanwhile; the next run's
        overwrite repair then keeps both texts. With ``create``, a missing profile is created by this
        write (erase-fenced: ``UserErased``)."""
        ...

    async def clear_pending_trim(self, user_id: str, summary_version: int) -> bool: ...


class UserOverridesRepository(Protocol):
    async def get(self, user_id: str) -> UserOverrides | None: ...

    async def all(self) -> dict[str, UserOverrides]: ...

    async def set(self, user_id: str, overrides: UserOverrides) -> None: ...

    async def clear(self, user_id: str) -> bool: ...


class CompactionLog(Protocol):
    async def record(self, entry: CompactionRecord) -> None:
        """Raises ``UserErased``, with no record left, if the user was erased meanwhile."""
        ...

    async def recent(self, limit: int = 20, user_id: str | None = None) -> list[CompactionRecord]: ...

    async def token_usage_since(self, since: datetime) -> TokenUsage:
        """The LLM requests and tokens of every run that finished since ``since`` (one aggregation)."""
        ...


class DeadLetters(Protocol):
    async def record(self, letter: DeadLetter) -> None:
        """Raises ``UserErased``, with no dead letter left, if the user was erased meanwhile."""
        ...

    async def list(self, limit: int = 100) -> list[DeadLetter]: ...

    async def find(self, user_id: str) -> DeadLetter | None: ...

    async def count(self) -> int: ...

    async def remove(self, user_id: str) -> bool: ...


class Erasures(Protocol):
    """The erase fence's tombstones (``memcompress forget``, :mod:`memcompress.jobs.forget`)."""

    async def mark(self, user_id: str, keep_s: float) -> None:
        """Write (or extend to ``keep_s`` seconds from now) the user's erase tombstone: while it lasts,
        every write that could create a document of the user undoes itself (``UserErased``)."""
        ...

    async def erased(self, user_id: str) -> bool:
        """Whether the user has an erase tombstone that has not expired."""
        ...


class Maintenance(Protocol):
    """The store as a whole: its indexes, and everything it holds about one user (``forget``)."""

    async def ensure_indexes(self) -> list[str]: ...

    async def index_risks(self) -> list[str]:
        """What the store's indexes put at risk (a TTL index deleting unsummarised events, a missing
        unique index the worker relies on): one line each, naming the fix."""
        ...

    async def count_user_data(self, user_id: str) -> dict[str, int]: ...

    async def erase_user_data(self, user_id: str) -> dict[str, int]: ...

    async def drop_database(self) -> None: ...


class HeldLock(Protocol):
    async def ensure_held(self) -> None:
        """Raise :class:`~memcompress.repositories.errors.LockLost` unless the lock is still ours;
        checked before every write."""


class UserLocks(Protocol):
    """Per-user mutual exclusion that only saves duplicate work: correctness never depends on it."""

    def hold(self, user_id: str, *, wait_s: float = 0.0) -> AbstractAsyncContextManager[HeldLock]:
        """Hold the user's lock (renewed in the background) for the ``async with`` block; raises
        :class:`~memcompress.repositories.errors.LockBusy` if it is still held elsewhere after
        ``wait_s`` seconds."""
        ...

    async def expires_in_s(self, user_id: str) -> float:
        """Seconds until the user's lock expires (0 when it is free)."""
        ...

    async def holder(self, user_id: str) -> dict[str, Any] | None:
        """The user's lock as Redis holds it (None when it is free): ``{"expires_in_s",
        "renewed_s_ago", "stale"}``. A live holder renews it every third of its TTL; ``stale`` says it
        has not been renewed for longer than half of it (the holder stopped or was killed; it expires
        on its own). Both are read against this process's TTL (``MEMCOMPRESS_LOCK_TTL_S``), which is
        the workers' when they share the settings."""
        ...

    async def holders(self) -> list[dict[str, Any]]:
        """Every lock of the queue now held, by user id: ``{"user_id", "expires_in_s"}``."""
        ...


@dataclass(frozen=True, slots=True)
class LLMPermit:
    """Leave to send one LLM request of about ``tokens`` tokens (prompt and answer)."""

    id: str
    tokens: int
    waited_s: float = 0.0
    """how long :meth:`LLMBudget.acquire` waited for it"""


class LLMBudget(Protocol):
    """Requests and tokens per minute for the LLM, shared by every worker process (so that many jobs
    in many processes stay within the provider's limits instead of meeting its 429s)."""

    async def acquire(self, tokens: int) -> LLMPermit:
        """Wait until one more request reserving ``tokens`` tokens fits the budget, and take it.
        Cancellable at any point (a job's time limit): a cancelled wait takes nothing."""
        ...

    async def settle(self, permit: LLMPermit, tokens: int) -> None:
        """Replace the permit's reservation by the ``tokens`` the request actually used."""
        ...


@dataclass(frozen=True, slots=True)
class ClaimedRequests:
    """What one claim of due compression requests did, user ids in claim order."""

    queued: list[str] = field(default_factory=list)
    """handed to the queue as the user's job, and removed from the requests"""
    waiting: list[str] = field(default_factory=list)
    """left waiting: the user's job is queued or running; looked at again shortly"""

    @property
    def count(self) -> int:
        return len(self.queued) + len(self.waiting)


class JobQueue(Protocol):
    """The worker's queue: the apps' compression requests and the per-user jobs they become (one job
    id per user). Requests are the app-side protocol (:mod:`memcompress.queue`): a user id with the
    time it is due.

    The claim is the only writer of jobs (arq itself re-queues a job it retries): a request becomes a
    job in one atomic step (:meth:`claim_due_requests`, :meth:`request`, :meth:`claim_request`). Wider
    than a plain queue because the width is the guarantee that no request is lost: a starting job
    covers the requests made before it (:meth:`clear_recheck`), and a request made while the user's job
    is queued or running waits until that job has ended.
    """

    name: str

    async def request(self, user_id: str, *, delay_s: float = 0.0) -> bool:
        """What the scan and an operator ask for: a request due ``delay_s`` from now (bringing a
        waiting one forward), claimed at once as a job due then when the user has none. True when this
        call queued the job; False when a queued or running job absorbs it (the request waits, and the
        user is compressed again after a running job)."""
        ...

    async def claim_due_requests(self, *, limit: int) -> ClaimedRequests:
        """Claim up to ``limit`` due requests, each in one atomic step: when the user has no job
        queued or running, queue the job and remove the request; otherwise leave the request, due
        again shortly. Safe with any number of callers at once: each request is queued once."""
        ...

    async def clear_recheck(self, user_id: str) -> None:
        """The user's job is starting: the requests made until now are covered by it and go."""
        ...

    async def set_recheck(self, user_id: str, *, delay_s: float) -> None:
        """Have the user compressed again ``delay_s`` from now, after any job of theirs now queued or
        running ends (a request; a waiting one due earlier is kept)."""
        ...

    async def claim_request(self, user_id: str) -> None:
        """The user's job has ended: claim a request that waited for it now, as a job due when the
        request is (one due later than a moment from now stays for :meth:`claim_due_requests`)."""
        ...

    async def erase_user(self, user_id: str) -> dict[str, int]:
        """Remove the user's queued job, its job keys and its waiting request."""
        ...


class QueueAdmin(Protocol):
    """What operators read and do with the queue (``status``, ``queue list|purge``, ``pause``), and the
    scan's bookkeeping (its last record, with the incremental scan's watermark)."""

    name: str

    async def record_scan(self, summary: dict[str, object]) -> None: ...

    async def last_scan(self) -> dict[str, object] | None: ...

    async def depth(self) -> int: ...

    async def purge(self) -> int:
        """Drop every queued job; returns how many there were."""
        ...

    async def jobs(self, limit: int) -> list[dict[str, Any]]:
        """Queued jobs, soonest first: ``{"user_id", "due_at" (ISO), "due": bool, "running": bool,
        "tries": int (started so far), "enqueued_at" (ISO or None), "age_s" (since queued, or None)}``."""
        ...

    async def user_job(self, user_id: str) -> dict[str, Any]:
        """The user's job, queued or running (``{"due_at", "running", "tries", "enqueued_at", "age_s"}``,
        None when there is none), and its waiting request's due time (ISO; None when none waits):
        ``{"job", "request_due_at"}``."""
        ...

    async def waiting_requests(self, limit: int) -> list[dict[str, Any]]:
        """The apps' compression requests not yet taken, soonest first: ``{"user_id", "due_at", "due"}``."""
        ...

    async def pause(self) -> None: ...

    async def resume(self) -> bool: ...

    async def paused(self) -> bool: ...

    async def status(self) -> dict[str, Any]:
        """Queue depth (waiting, deferred), requests (waiting, due), jobs in progress, last scan, worker
        health."""
        ...

    async def worker_health(self, host: str) -> dict[str, str]: ...
