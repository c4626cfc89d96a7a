"""What the two summary stores share: ``user_profiles`` (one document per user) and the worker's fields
of a conversation document (the ``conversations`` layout). Both hold a running summary fenced by a
version; they differ only in where the fields are (:class:`SummaryFields`).

- The fold's one read (:func:`fold_state_pipeline`, :func:`fold_state`): the summary document, the
  unit's overrides and its recent runs in one aggregation.
- The fenced summary write (:func:`fenced_summary_write`). What it guarantees: a summary is stored only
  over the version (and, when asked, the text) the run read, and it records the folded refs as the
  pending trim of the new version in the same atomic write, so that the trim can always be finished
  later. How, in steps:

  1. The filter: the version read (0 and a missing field alike, for a document never summarised) and,
     given ``expected_summary``, the stored text as read (``None`` matches a missing field and a null).
  2. The update: the summary, the worker's own copy of it (``summary_copy``, which detects an app
     overwriting it), the new version, the watermark, the pending trim (none without refs), the time;
     the summary's hash pushed onto the last :data:`SUMMARY_HISTORY`; the lifetime count of
     summarised events increased.
  3. The caller sends both in one ``update_one`` on its own document (and adds its own conditions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memcompress.metrics import Metrics
from memcompress.models import (
    FoldState,
    RunNote,
    UserOverrides,
    UserProfile,
    Watermark,
    summary_hash,
    utc_now,
)
from memcompress.repositories.database import COMPACTION_LOG, OVERRIDES, Document
from memcompress.repositories.documents import valid_models
from memcompress.repositories.protocols import ANY_SUMMARY, ExpectedSummary

SUMMARY_HISTORY = 5  # hashes of the worker's recent summaries kept on the profile
# Keys under which `find_for_fold` returns the documents of the other collections it reads.
OVERRIDES_KEY, RUNS_KEY = "__overrides", "__runs"
RUNS_READ = 1_000  # at most this many runs of the period are read (the daily cap keeps them far fewer)


@dataclass(frozen=True, slots=True)
class SummaryFields:
    """Where a summary document keeps the worker's fields: ``summary`` and ``version`` by name, the
    rest (pending trim, watermark, copy, history, count, time) under ``state`` (a path prefix, ``""``
    for the document's top level)."""

    summary: str = "memory_summary"
    version: str = "summary_version"
    state: str = ""

    def at(self, name: str) -> str:
        """The path of one of the bookkeeping fields."""
        return self.state + name


def fenced_summary_write(
    fields: SummaryFields,
    *,
    expected_version: int,
    summary: str,
    watermark: Watermark | None,
    folded_refs: Sequence[Any],
    expected_summary: ExpectedSummary = ANY_SUMMARY,
) -> tuple[Document, Document]:
    """Steps 1 and 2 (see the module): the fence's conditions and the update of a summary write."""
    fence: Document = {fields.version: expected_version if expected_version else {"$in": [0, None]}}
    if expected_summary is not ANY_SUMMARY:  # None matches a missing field and a null alike
        fence[fields.summary] = expected_summary
    new_version = expected_version + 1
    pending = {"summary_version": new_version, "refs": list(folded_refs)} if folded_refs else None
    update: Document = {
        "$set": {
            fields.summary: summary,
            fields.at("summary_copy"): summary,
            fields.version: new_version,
            fields.at("watermark"): None if watermark is None else watermark.model_dump(),
            fields.at("pending_trim"): pending,
            fields.at("updated_at"): utc_now(),
        },
        "$push": {
            fields.at("summary_history"): {"$each": [summary_hash(summary)], "$slice": -SUMMARY_HISTORY}
        },
        "$inc": {fields.at("events_summarized"): len(folded_refs)},
    }
    return fence, update


def fold_state_pipeline(
    summary_stages: list[Document], user_id: str, compressed_since: datetime
) -> list[Document]:
    """What the fold knows of a user in one aggregation: the document ``summary_stages`` select (the
    profile; a conversation's summary fields), with the user's overrides and its runs since
    ``compressed_since`` (newest first: outcome, error class, LLM calls, when) added by ``$unionWith``,
    each under a key of its own."""
    since = {"user_id": user_id, "finished_at": {"$gte": compressed_since}}
    return [
        *summary_stages,
        {
            "$unionWith": {
                "coll": OVERRIDES,
                "pipeline": [{"$match": {"_id": user_id}}, {"$replaceWith": {OVERRIDES_KEY: "$$ROOT"}}],
            }
        },
        {
            "$unionWith": {
                "coll": COMPACTION_LOG,
                "pipeline": [
                    {"$match": since},
                    {"$sort": {"finished_at": -1}},
                    {"$limit": RUNS_READ},
                    {
                        "$group": {
                            "_id": None,
                            RUNS_KEY: {
                                "$push": {
                                    "outcome": "$outcome",
                                    "error_class": "$error_class",
                                    "llm_calls": "$llm_calls",
                                    "finished_at": "$finished_at",
                                }
                            },
                        }
                    },
                ],
            }
        },
    ]


def fold_state(
    rows: list[Document], profile_of: Callable[[Document], UserProfile | None], metrics: Metrics
) -> FoldState:
    """:func:`fold_state_pipeline`'s rows as a :class:`FoldState` (``profile_of``: the profile a summary
    row stands for, None when it stands for none)."""
    profile: UserProfile | None = None
    overrides: list[UserOverrides] = []
    runs: list[RunNote] = []
    for row in rows:
        if OVERRIDES_KEY in row:
            overrides = valid_models(UserOverrides, OVERRIDES, [row[OVERRIDES_KEY]], metrics)
        elif RUNS_KEY in row:
            runs = [_run_note(run) for run in row[RUNS_KEY]]
        else:
            profile = profile_of(row)
    return FoldState.of_runs(profile, overrides[0] if overrides else None, runs)


def _run_note(run: Document) -> RunNote:
    calls = run.get("llm_calls")
    return RunNote(
        outcome=str(run.get("outcome")),
        error_class=run.get("error_class") if isinstance(run.get("error_class"), str) else None,
        llm_calls=calls if isinstance(calls, int) else 0,
        finished_at=run.get("finished_at"),
    )
