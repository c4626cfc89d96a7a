"""The fault suite's checker must be able to fail: made-up situations, each with one thing wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from memcompress.layouts import StoreLayout
from memcompress.models import MemoryEvent
from memcompress.repositories.documents import event_to_document
from memcompress.testing.factories import make_events
from memcompress.testing.llm_server import Exchange, FakeLLM
from tests.faults.checker import PARKED, FaultReport, Liveness, Snapshot, Window, check

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
THRESHOLD = 30


@dataclass
class Situation:
    """User ``u1``: 40 events, the oldest 25 folded by two LLM answers, the newest 15 still stored;
    user ``u2``: 5 events, never compressed; one malformed document. Everything in order."""

    events: list[MemoryEvent] = field(default_factory=lambda: make_events("u1", 40, tag="u1"))
    others: list[MemoryEvent] = field(default_factory=lambda: make_events("u2", 5, tag="u2"))
    llm: FakeLLM = field(default_factory=FakeLLM)
    snapshot: Snapshot = field(default_factory=Snapshot)
    malformed: dict[Any, dict[str, Any]] = field(default_factory=dict)
    restarts: list[Window] = field(default_factory=list)
    # The faults stopped at T + 4 s: the run from 5 to 7 s is u1's one run after them (3 allowed); each
    # of its two LLM requests (2 allowed) is on the server's record and in compaction_log. A user over
    # the threshold may be left dead-lettered with no error class (abandoned), or parked.
    liveness: Liveness = field(
        default_factory=lambda: Liveness(T + timedelta(seconds=4), 3, 2, frozenset({"None", PARKED}))
    )

    def __post_init__(self) -> None:
        texts = [e.content for e in self.events]
        self.llm.exchanges += [
            Exchange("(none yet)", texts[:15], "summary one", {}),
            Exchange("summary one", texts[15:25], "summary two", {}),
        ]
        self.llm.received += [exchange.texts for exchange in self.llm.exchanges]
        self.snapshot.memory = [self.doc(e) for e in self.events[25:] + self.others]
        self.snapshot.profiles["u1"] = {
            "user_id": "u1",
            "memory_summary": "summary two",
            "summary_version": 2,
            "events_summarized": 25,
            "pending_trim": None,
        }
        self.snapshot.runs = [
            self.run("u1", 0, 2, calls=1),
            self.run("u1", 5, 7, calls=1),
            self.run("u1", 1, 3, "skipped"),
        ]
        bad = self.doc(self.others[0]) | {"role": "", "content": "not a valid event"}
        self.malformed[bad["_id"]] = dict(bad)
        self.snapshot.memory.append(bad)

    @staticmethod
    def doc(event: MemoryEvent) -> dict[str, Any]:
        return event_to_document(event) | {"_id": ObjectId()}

    @staticmethod
    def run(
        user: str, start_s: float, end_s: float, outcome: str = "compressed", calls: int = 0
    ) -> dict[str, Any]:
        return {
            "user_id": user,
            "outcome": outcome,
            "started_at": T + timedelta(seconds=start_s),
            "finished_at": T + timedelta(seconds=end_s),
            "llm_calls": calls,
        }

    def check(self) -> FaultReport:
        return check(
            self.snapshot,
            self.llm,
            self.events + self.others,
            self.malformed,
            threshold=THRESHOLD,
            redis_restarts=self.restarts,
            liveness=self.liveness,
        )


def test_a_sound_situation_passes() -> None:
    report = Situation().check()
    assert report.problems() == {}
    assert (report.checked, report.stored, report.summarised) == (45, 20, 25)
    assert (report.compressed_runs, report.malformed_checked, report.users_compressed) == (2, 1, 1)


def test_a_lost_event_is_reported() -> None:
    situation = Situation()
    lost = situation.events[30]
    situation.snapshot.memory = [
        d for d in situation.snapshot.memory if d.get("event_id") != str(lost.event_id)
    ]
    report = situation.check()
    assert report.problems() == {"lost": [lost.content[:60]]}
    assert (report.stored, report.summarised) == (19, 25)


def test_an_event_deleted_but_not_inside_the_stored_chain_is_lost() -> None:
    """Its LLM answer exists, but the stored summary does not descend from it."""
    situation = Situation()
    texts = [e.content for e in situation.events]
    situation.llm.exchanges.append(Exchange("summary two", texts[25:27], "summary three (never stored)", {}))
    situation.snapshot.memory = situation.snapshot.memory[2:]
    assert situation.check().problems() == {"lost": texts[25:27]}


def test_an_event_summarised_twice_is_reported() -> None:
    situation = Situation()
    situation.llm.exchanges[1].texts.append(situation.events[3].content)
    situation.snapshot.profiles["u1"]["events_summarized"] = 26
    assert situation.check().problems() == {"summarised_twice": [situation.events[3].content]}


def test_a_summarised_event_still_stored_needs_a_pending_trim() -> None:
    situation = Situation()
    kept = situation.doc(situation.events[24])
    situation.snapshot.memory.append(kept)
    assert situation.check().problems() == {"summarised_but_kept": [situation.events[24].content]}

    situation.snapshot.profiles["u1"]["pending_trim"] = {"summary_version": 2, "refs": [kept["_id"]]}
    report = situation.check()
    assert (report.problems(), report.pending_trim) == ({}, 1)


def test_an_archived_event_in_the_summary_is_summarised_not_kept_by_mistake() -> None:
    situation = Situation()
    situation.snapshot.archive.append(situation.doc(situation.events[24]))  # RETENTION=archive
    report = situation.check()
    assert report.problems() == {} and report.summarised == 25


def test_another_users_event_in_a_summary_is_reported() -> None:
    situation = Situation()
    situation.llm.exchanges[1].texts.append(situation.others[1].content)
    situation.snapshot.profiles["u1"]["events_summarized"] = 26
    problems = situation.check().problems()
    assert list(problems) == ["foreign_in_chain"]
    assert "appended for u2" in problems["foreign_in_chain"][0]


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ({"summary_version": 3}, "2 LLM answers in the chain, summary_version 3"),
        ({"events_summarized": 24}, "25 events in the chain, events_summarized 24"),
        ({"memory_summary": "made up"}, "stored summary was never an LLM answer"),
    ],
)
def test_a_summary_chain_that_does_not_match_the_profile_is_reported(
    profile: dict[str, Any], expected: str
) -> None:
    situation = Situation()
    situation.snapshot.profiles["u1"] |= profile
    assert any(expected in line for line in situation.check().problems()["chain_mismatch"])


def test_a_broken_chain_is_reported() -> None:
    situation = Situation()
    situation.llm.exchanges.pop(0)  # "summary one" was never an LLM answer
    situation.snapshot.profiles["u1"] |= {"summary_version": 1, "events_summarized": 10}
    problems = situation.check().problems()
    assert any("chain breaks" in line for line in problems["chain_mismatch"])
    assert len(problems["lost"]) == 15


def test_two_compressions_of_a_user_at_once_are_reported() -> None:
    situation = Situation()
    situation.snapshot.runs.append(situation.run("u1", 6, 8))  # inside the run from 5 to 7
    situation.snapshot.runs.append(situation.run("u1", 1.5, 2.5, "failed"))  # not compressed: fine
    problems = situation.check().problems()
    assert list(problems) == ["overlapping_runs"] and len(problems["overlapping_runs"]) == 1


def test_an_overlap_after_a_redis_restart_is_excused_and_counted() -> None:
    situation = Situation()
    situation.snapshot.runs.append(situation.run("u1", 6, 8))
    situation.restarts.append(Window(T + timedelta(seconds=5.5), T + timedelta(seconds=5.8)))
    report = situation.check()
    assert (report.problems(), report.overlaps_excused) == ({}, 1)

    situation.restarts[0] = Window(T + timedelta(seconds=20), T + timedelta(seconds=21))  # too late
    assert list(situation.check().problems()) == ["overlapping_runs"]


def test_a_user_left_over_the_threshold_must_be_dead_lettered_with_a_reason() -> None:
    situation = Situation()
    extra = make_events("u2", 30, start=T, tag="u2-more")
    situation.others += extra
    situation.snapshot.memory += [situation.doc(e) for e in extra]
    assert situation.check().problems() == {"unsettled": ["u2: 35 events, not dead-lettered"]}

    situation.snapshot.dead_letters["u2"] = {"_id": "u2", "reason": " "}
    assert list(situation.check().problems()) == ["unsettled"]
    situation.snapshot.dead_letters["u2"] = {"_id": "u2", "reason": "LLM answered HTTP 400"}
    assert situation.check().problems() == {}


def test_a_malformed_document_deleted_or_changed_is_reported() -> None:
    situation = Situation()
    ref = next(iter(situation.malformed))
    bad = situation.snapshot.memory.pop()
    assert situation.check().problems() == {"malformed_missing": [repr(ref)]}

    situation.snapshot.memory.append(bad | {"content": "rewritten"})
    assert situation.check().problems() == {"malformed_changed": [repr(ref)]}


def test_a_malformed_document_nobody_inserted_is_reported() -> None:
    situation = Situation()
    stray = situation.doc(situation.events[39]) | {"created_at": "yesterday"}
    situation.snapshot.memory.append(stray)
    assert situation.check().problems() == {"unexpected_malformed": [repr(stray["_id"])]}


def test_liveness_figures_of_a_sound_situation() -> None:
    report = Situation().check()
    assert report.runs_after_faults == {"u1": 1}
    assert report.calls_served == report.calls_recorded == {"u1": 2}
    assert (report.dead_lettered_over, report.parked, report.calls_unattributed) == (0, [], 0)


def test_a_user_left_over_the_threshold_for_an_unexplained_reason_is_reported() -> None:
    situation = Situation()
    extra = make_events("u2", 30, start=T, tag="u2-more")
    situation.others += extra
    situation.snapshot.memory += [situation.doc(e) for e in extra]
    letter = {"_id": "u2", "reason": "a bug", "error_class": "KeyError"}
    situation.snapshot.dead_letters["u2"] = letter
    report = situation.check()
    assert report.problems() == {"unexplained_letters": ["u2: dead-lettered for KeyError"]}
    assert report.dead_lettered_over == 1

    situation.snapshot.dead_letters["u2"] = letter | {"reason": "parked: budget", "error_class": PARKED}
    report = situation.check()
    assert (report.problems(), report.parked) == ({}, ["u2: parked: budget"])  # allowed, and counted


def test_a_user_needing_more_runs_than_the_bound_after_the_faults_is_reported() -> None:
    situation = Situation()
    situation.snapshot.runs += [
        *(situation.run("u1", 8 + i, 8.5 + i, "failed") for i in range(3)),
        situation.run("u1", 12, 12.5, "busy"),  # runs that did not try are not counted
        situation.run("u2", 12, 12.5, "skipped"),
    ]
    report = situation.check()
    assert report.problems() == {"slow_to_settle": ["u1: 4 runs after the faults stopped"]}


def test_a_user_over_the_call_bound_is_reported_by_either_count() -> None:
    situation = Situation()
    situation.llm.received.append(situation.llm.exchanges[1].texts)  # a request no run recorded (killed)
    situation.llm.received.append(["no appended event", "has this text"])
    report = situation.check()
    assert report.problems() == {"over_call_bound": ["u1: 3 LLM requests (served)"]}
    assert report.calls_unattributed == 1

    situation.llm.received.pop(-2)
    situation.snapshot.runs.append(situation.run("u1", 8, 8.5, "failed", calls=1))
    assert situation.check().problems() == {"over_call_bound": ["u1: 3 LLM requests (recorded)"]}


def test_a_layout_without_event_ids_is_checked_by_content() -> None:
    """The ``messages`` layout, as :func:`tests.faults.stores.take_snapshot` reads it: no ``event_id`` on the documents."""
    situation = Situation()
    situation.snapshot.layout = StoreLayout.default("messages")
    for doc in situation.snapshot.memory:
        if doc["_id"] not in situation.malformed:
            doc.pop("event_id")
    assert situation.check().problems() == {}

    lost = situation.snapshot.memory.pop(0)
    assert situation.check().problems() == {"lost": [lost["content"][:60]]}
