"""The fault suite's checker: what the stores and the LLM's record must look like after any run.

It works on a :class:`Snapshot` (plain documents read once the workers have stopped), the events the
test appended, and the :class:`FakeLLM` record, so the unit tests can feed it made-up situations:

(a) every appended event is still stored (or archived), or inside an LLM request whose answer is part of
    the user's stored summary chain; no event is summarised twice; an event both summarised and still
    stored is in the profile's ``pending_trim``; a chain holds only its own user's events, has exactly
    ``summary_version`` links and ``events_summarized`` events, and starts from no summary;
(b) no user was compressed by two runs at once: the ``[started_at, finished_at]`` intervals of the
    ``compressed`` runs of a user do not overlap. arq (one job id per user, its in-progress key) and the
    user's Redis lock both exclude that, except when Redis itself restarts and forgets both: an overlap
    whose earlier run was under way during a Redis restart is counted as excused, not as a violation;
(c) every user with more than ``threshold`` well-formed events stored is dead-lettered with a reason;
(d) every malformed document put into ``user_memory`` is still there, unchanged;
(e) liveness, given :class:`Liveness` bounds: a user left over the threshold is dead-lettered for a
    reason the faults explain (its ``error_class`` in the allowed set; parked users are counted), no user
    took more than ``max_runs`` runs (busy and skipped ones aside) once the faults stopped, and no user
    made more than ``max_calls`` LLM requests, counted both by the LLM server (a request belongs to the
    user whose events its transcript holds) and by ``compaction_log`` (``llm_calls``).

The history may be in any layout (:mod:`memcompress.layouts`): :func:`tests.faults.stores.take_snapshot`
reads it into one shape, a document per stored or archived message (``user_id`` the unit of
compression, ``_id`` what a pending trim names), and profiles with ``memory_summary``,
``summary_version``, ``events_summarized`` and ``pending_trim``. Outside ``user_memory`` messages have no ids of their own: an event is found by
its content (the tests give each a distinct one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from memcompress.layouts import StoreLayout
from memcompress.models import MemoryEvent
from memcompress.repositories.database import USER_MEMORY
from memcompress.repositories.documents import MalformedDocument, document_to_event
from memcompress.testing.app_layouts import AppLayout, app_layout
from memcompress.testing.llm_server import FakeLLM

Document = dict[str, Any]
NO_SUMMARY = "(none yet)"  # what the summariser sends as the previous summary of a first request
# How long after a Redis restart ended a run may have started and still have been hit by it: the test
# notes the restart's end from its own process, a moment after the server is back.
RESTART_SLACK = timedelta(seconds=1)
PARKED = "Parked"  # the error_class of a parked run and its dead letter (memcompress.jobs.compress)
SETTLING = frozenset({"compressed", "failed", "conflict", "parked"})  # outcomes of runs that tried


@dataclass
class Snapshot:
    """Everything the checks read from MongoDB, taken once the workers have stopped."""

    memory: list[Document] = field(default_factory=list)
    archive: list[Document] = field(default_factory=list)
    profiles: dict[str, Document] = field(default_factory=dict)
    runs: list[Document] = field(default_factory=list)
    dead_letters: dict[str, Document] = field(default_factory=dict)
    layout: StoreLayout = field(default_factory=StoreLayout)

    @property
    def app(self) -> AppLayout:
        return app_layout(self.layout)

    def key(self, doc: Document) -> str:
        """What identifies a stored message: its ``event_id`` in ``user_memory``, else its content (the
        layout's :attr:`AppLayout.field`)."""
        return str(doc[self.app.field])

    def event_key(self, event: MemoryEvent) -> str:
        return str(self.app.key(event))


def is_well_formed(doc: Document) -> bool:
    """The product's own reading of a ``user_memory`` document."""
    try:
        document_to_event(USER_MEMORY, doc)
    except MalformedDocument:
        return False
    return True


@dataclass
class Window:
    """A span of time during which a server was down (from the test's stop call to its start's end)."""

    begin: datetime
    end: datetime


@dataclass(frozen=True)
class Liveness:
    """The bounds of check (e). ``faults_over``: when the faults (and the appends) stopped."""

    faults_over: datetime
    max_runs: int  # runs (busy and skipped ones aside) a user may take once the faults stopped
    max_calls: int  # LLM requests a user may make in all (the per-user daily budget)
    letters: frozenset[str]  # error classes a user over the threshold may be left dead-lettered with


@dataclass
class FaultReport:
    checked: int = 0
    stored: int = 0
    summarised: int = 0
    pending_trim: int = 0  # summarised and still stored, awaiting the next run's trim (allowed)
    users: int = 0
    users_compressed: int = 0
    users_over_threshold: int = 0
    compressed_runs: int = 0
    overlaps_excused: int = 0
    malformed_checked: int = 0
    # Liveness figures (e): of the users over the threshold, those dead-lettered and those parked; per
    # user, the runs after the faults stopped and the LLM requests (served: by the LLM server's record;
    # recorded: compaction_log's llm_calls); requests whose transcript names no appended event.
    dead_lettered_over: int = 0
    parked: list[str] = field(default_factory=list)
    runs_after_faults: Counter[str] = field(default_factory=Counter)
    calls_served: Counter[str] = field(default_factory=Counter)
    calls_recorded: Counter[str] = field(default_factory=Counter)
    calls_unattributed: int = 0
    # Problems: each list names what is wrong; all must stay empty.
    lost: list[str] = field(default_factory=list)
    summarised_twice: list[str] = field(default_factory=list)
    summarised_but_kept: list[str] = field(default_factory=list)
    foreign_in_chain: list[str] = field(default_factory=list)
    chain_mismatch: list[str] = field(default_factory=list)
    overlapping_runs: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    malformed_missing: list[str] = field(default_factory=list)
    malformed_changed: list[str] = field(default_factory=list)
    unexpected_malformed: list[str] = field(default_factory=list)
    unexplained_letters: list[str] = field(default_factory=list)
    slow_to_settle: list[str] = field(default_factory=list)
    over_call_bound: list[str] = field(default_factory=list)

    PROBLEMS = (
        "lost",
        "summarised_twice",
        "summarised_but_kept",
        "foreign_in_chain",
        "chain_mismatch",
        "overlapping_runs",
        "unsettled",
        "malformed_missing",
        "malformed_changed",
        "unexpected_malformed",
        "unexplained_letters",
        "slow_to_settle",
        "over_call_bound",
    )

    def problems(self) -> dict[str, list[str]]:
        """Only the non-empty problem lists (at most 20 items each, for readable failures)."""
        found = {name: getattr(self, name) for name in self.PROBLEMS}
        return {name: items[:20] for name, items in found.items() if items}


def check(
    snapshot: Snapshot,
    llm: FakeLLM,
    appended: Iterable[MemoryEvent],
    malformed: dict[Any, Document],
    *,
    threshold: int,
    redis_restarts: Iterable[Window] = (),
    liveness: Liveness | None = None,
) -> FaultReport:
    """Run checks (a)-(d) on ``snapshot``, and (e) when given its bounds. ``malformed``: the malformed
    documents inserted, by ``_id``."""
    report = FaultReport()
    events_by_user: dict[str, list[MemoryEvent]] = {}
    owner: dict[str, str] = {}  # content -> user (contents are unique in these tests)
    for event in appended:
        events_by_user.setdefault(event.user_id, []).append(event)
        owner[event.content] = event.user_id

    stored_by_user: dict[str, dict[str, Any]] = {}  # user -> event_id -> _id, in the live collection
    archived_by_user: dict[str, set[Any]] = {}  # user -> event_id, in the archive (RETENTION=archive)
    well_formed_count: Counter[str] = Counter()
    for docs, archived in ((snapshot.memory, False), (snapshot.archive, True)):
        for doc in docs:
            if doc.get("_id") in malformed:
                continue
            if not is_well_formed(doc):
                report.unexpected_malformed.append(repr(doc.get("_id")))
            elif archived:
                archived_by_user.setdefault(doc["user_id"], set()).add(snapshot.key(doc))
            else:
                stored_by_user.setdefault(doc["user_id"], {})[snapshot.key(doc)] = doc["_id"]
    for doc in snapshot.memory:
        if doc.get("_id") not in malformed and is_well_formed(doc):
            well_formed_count[doc["user_id"]] += 1

    users = set(events_by_user) | set(snapshot.profiles) | set(stored_by_user)
    report.users = len(users)
    for user in sorted(users):
        _check_user(
            report, user, snapshot, llm, events_by_user.get(user, []), stored_by_user, archived_by_user, owner
        )

    _check_overlaps(report, snapshot.runs, list(redis_restarts))

    for user in sorted(users):  # (c)
        if well_formed_count[user] > threshold:
            report.users_over_threshold += 1
            letter = snapshot.dead_letters.get(user)
            if letter is None or not str(letter.get("reason") or "").strip():
                report.unsettled.append(f"{user}: {well_formed_count[user]} events, not dead-lettered")
            elif liveness is not None:
                _check_letter(report, user, letter, liveness)
    if liveness is not None:
        _check_effort(report, snapshot, llm, owner, liveness)

    present = {doc["_id"]: doc for doc in snapshot.memory if doc.get("_id") in malformed}  # (d)
    for ref, original in malformed.items():
        report.malformed_checked += 1
        if ref not in present:
            report.malformed_missing.append(repr(ref))
        elif present[ref] != original:
            report.malformed_changed.append(repr(ref))
    return report


def _check_user(
    report: FaultReport,
    user: str,
    snapshot: Snapshot,
    llm: FakeLLM,
    events: list[MemoryEvent],
    stored_by_user: dict[str, dict[str, Any]],
    archived_by_user: dict[str, set[Any]],
    owner: dict[str, str],
) -> None:
    profile = snapshot.profiles.get(user) or {}
    summary = profile.get("memory_summary")
    version = int(profile.get("summary_version") or 0)
    chain = llm.chain(summary)
    if version:
        report.users_compressed += 1

    # The chain itself: built only by LLM answers, link by link, one link per stored summary version.
    if summary is not None and not chain:
        report.chain_mismatch.append(f"{user}: stored summary was never an LLM answer")
    elif chain and chain[-1].previous_summary != NO_SUMMARY:
        report.chain_mismatch.append(f"{user}: chain breaks at a summary the LLM never wrote")
    if len(chain) != version:
        report.chain_mismatch.append(
            f"{user}: {len(chain)} LLM answers in the chain, summary_version {version}"
        )
    folded = sum(len(exchange.texts) for exchange in chain)
    if folded != int(profile.get("events_summarized") or 0):
        report.chain_mismatch.append(
            f"{user}: {folded} events in the chain, events_summarized {profile.get('events_summarized')}"
        )

    in_chain = Counter(text for exchange in chain for text in exchange.texts)
    for text in in_chain:
        if owner.get(text) != user:
            report.foreign_in_chain.append(f"{user}: {text[:60]!r} (appended for {owner.get(text)})")

    pending = profile.get("pending_trim") or {}
    pending_refs = {str(ref["_id"] if isinstance(ref, dict) else ref) for ref in pending.get("refs") or []}
    stored = stored_by_user.get(user, {})
    archived = archived_by_user.get(user, set())
    for event in events:
        report.checked += 1
        key = snapshot.event_key(event)
        ref = stored.get(key)
        if in_chain[event.content] > 1:
            report.summarised_twice.append(event.content[:60])
        if ref is None and key in archived:  # summarised (it must be in the chain), and kept verbatim
            report.summarised += 1
            if not in_chain[event.content]:
                report.lost.append(f"archived but never summarised: {event.content[:40]}")
        elif ref is not None:
            report.stored += 1
            if in_chain[event.content]:
                if str(ref) in pending_refs:
                    report.pending_trim += 1
                else:
                    report.summarised_but_kept.append(event.content[:60])
        elif in_chain[event.content]:
            report.summarised += 1
        else:
            report.lost.append(event.content[:60])


def _check_letter(report: FaultReport, user: str, letter: Document, liveness: Liveness) -> None:
    """(e) for a user over the threshold with a dead letter: a reason the faults explain; parked counted."""
    error_class = str(letter.get("error_class"))
    report.dead_lettered_over += 1
    if error_class == PARKED:
        report.parked.append(f"{user}: {str(letter.get('reason'))[:80]}")
    if error_class not in liveness.letters:
        report.unexplained_letters.append(f"{user}: dead-lettered for {error_class}")


def _check_effort(
    report: FaultReport, snapshot: Snapshot, llm: FakeLLM, owner: dict[str, str], liveness: Liveness
) -> None:
    """(e): the runs of each user once the faults stopped, and its LLM requests, within their bounds."""
    for run in snapshot.runs:
        user = str(run["user_id"])
        report.calls_recorded[user] += int(run.get("llm_calls") or 0)
        if run.get("outcome") in SETTLING and run["started_at"] >= liveness.faults_over:
            report.runs_after_faults[user] += 1
    for texts in llm.received:
        users = {owner[text] for text in texts if text in owner}
        if len(users) == 1:
            report.calls_served[users.pop()] += 1
        else:  # no appended event (or, which check (a) reports, another user's events too)
            report.calls_unattributed += 1
    for user, runs in sorted(report.runs_after_faults.items()):
        if runs > liveness.max_runs:
            report.slow_to_settle.append(f"{user}: {runs} runs after the faults stopped")
    for name, calls in (("served", report.calls_served), ("recorded", report.calls_recorded)):
        for user, count in sorted(calls.items()):
            if count > liveness.max_calls:
                report.over_call_bound.append(f"{user}: {count} LLM requests ({name})")


def _check_overlaps(report: FaultReport, runs: list[Document], redis_restarts: list[Window]) -> None:
    by_user: dict[str, list[Document]] = {}
    for run in runs:
        if run.get("outcome") == "compressed":
            by_user.setdefault(run["user_id"], []).append(run)
            report.compressed_runs += 1
    for user, user_runs in by_user.items():
        user_runs.sort(key=lambda r: (r["started_at"], r["finished_at"]))
        latest = user_runs[0]  # the run, among those started so far, that finished last
        for run in user_runs[1:]:
            if run["started_at"] < latest["finished_at"]:
                if any(_spans(latest, window) for window in redis_restarts):
                    report.overlaps_excused += 1
                else:
                    report.overlapping_runs.append(
                        f"{user}: run {run['started_at']:%H:%M:%S.%f}-{run['finished_at']:%H:%M:%S.%f} "
                        f"overlaps {latest['started_at']:%H:%M:%S.%f}-{latest['finished_at']:%H:%M:%S.%f}"
                    )
            if run["finished_at"] > latest["finished_at"]:
                latest = run


def _spans(run: Document, window: Window) -> bool:
    """Was ``run`` under way while Redis restarted (so its job and lock may have been forgotten)?"""
    started: datetime = run["started_at"]
    finished: datetime = run["finished_at"]
    return started <= window.end + RESTART_SLACK and finished >= window.begin
