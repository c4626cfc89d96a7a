"""Fidelity: how much of what users said is still in their summary after incremental compactions.

A generated corpus (``fidelity_corpus.py``: Russian and English users, several sessions each, with
planted names, numbers, dates, preferences and corrections among the chatter) is appended session by
session, and after each session the user is compressed through the real fold
(``memcompress.jobs.run_compression`` on services from ``memcompress.bootstrap.build_services``).
After the last compaction, every planted fact is looked up in the stored summary
(``fidelity_corpus.recalled``: the carry guard's matching for names, numbers and dates, a word stem
for preferences). It prints recall per language and kind, how corrections were resolved, recall after
each compaction, and why each missed fact was missed; and what the answer guard did: its verdict on
every answer (accepted, values dropped, rejected by check), the repair requests, the values patched in
and dropped at the budget, and the false rejects (answers rejected although they carried every value of
their inputs; ``--dump-rejected FILE`` writes them with their inputs for a check by hand). Each
compaction is run as the queue runs it (``run_queued_compression``: a failed try is tried again, up to
``MEMCOMPRESS_MAX_TRIES``, without the backoff wait), so each ends compressed, skipped, parked or
dead-lettered. Numbers, not assertions.

    .venv/bin/python bench/fidelity.py              # 6 users per language, 6 sessions, the default budget
    .venv/bin/python bench/fidelity.py --sweep      # make fidelity: also at 2x and 4x the budget (~40 s)
    .venv/bin/python bench/fidelity.py --quick      # 3 users per language (make bench runs this)
    .venv/bin/python bench/fidelity.py --budget 4000 6000 --show-misses 10 --seed 3
    make fidelity-real-llm   # against the real server of make llm-server: 1 user per language, one at a time

The summariser is the one the settings choose: the offline extractive one unless
``MEMCOMPRESS_LLM_BASE_URL`` (or an API key) is set, then any OpenAI-compatible endpoint
(``MEMCOMPRESS_LLM_MODEL``, ``MEMCOMPRESS_LLM_API_KEY``). Retention is always ``archive`` (the folded
events stay readable; with the extractive summariser, delete would be the lossy configuration).
The servers are embedded SecantusDB and Valkey, or the ones named by MEMCOMPRESS_BENCH_MONGODB_URI /
MEMCOMPRESS_BENCH_REDIS_URL; the benchmark's database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from common import bench_servers, print_machine, table
from fidelity_corpus import KINDS, LANGUAGES, Fact, Summary, UserCorpus, generate, recalled
from redis.asyncio import Redis

from memcompress.bootstrap import build_services, build_summarizer
from memcompress.jobs import Services
from memcompress.jobs.queued import run_queued_compression
from memcompress.metrics import Metrics
from memcompress.models import CompactionRecord, ProfileDefaults, UserProfile
from memcompress.redaction import redact_url
from memcompress.repositories.database import USER_MEMORY, MongoDatabase
from memcompress.repositories.indexes import ensure_indexes
from memcompress.settings import Settings, load_settings
from memcompress.testing.verdicts import JudgedSummarizer, Verdict

DEFAULT_BUDGET: int = Settings.model_fields["summary_max_chars"].default
DEFAULT_THRESHOLD: int = Settings.model_fields["threshold"].default
DEFAULT_KEEP_LAST: int = Settings.model_fields["keep_last"].default
AT_BUDGET = 0.9  # a summary at >= 90 % of its budget has no room left for a typical fact line
TAIL_SLACK = 6  # fact-free events beyond KEEP_LAST at the end of the last session
GOAL = 0.9  # the offline summariser's goal: >= 90 % planted-fact recall


@dataclass
class UserRun:
    corpus: UserCorpus
    outcomes: list[tuple[str, str | None]] = field(default_factory=list)  # outcome, reason
    records: list[CompactionRecord] = field(default_factory=list)  # every try of every compaction
    summaries: list[str | None] = field(default_factory=list)  # after each compaction
    folded_at: dict[str, int] = field(default_factory=dict)  # event_id -> compaction that folded it

    @property
    def final(self) -> str | None:
        return self.summaries[-1] if self.summaries else None


@dataclass(frozen=True)
class Scored:
    fact: Fact
    latest: bool  # the (latest) value is in the final summary
    stale: bool | None  # a correction's overridden value is in it too
    miss: str | None  # why it is missing (None: recalled)


# --- running -----------------------------------------------------------------------------------------


async def run_user(services: Services, database: MongoDatabase, corpus: UserCorpus) -> UserRun:
    """Append each session, compress, and note the summary and which planted events were folded."""
    run = UserRun(corpus)
    defaults = ProfileDefaults(language=corpus.language)
    await services.profiles.save(UserProfile.new(corpus.user_id, defaults))
    planted = {f.event_id for f in corpus.facts} | {
        f.stale_event_id for f in corpus.facts if f.stale_event_id
    }
    events = database.collection(USER_MEMORY)
    appended: set[str] = set()
    for number, session in enumerate(corpus.sessions, start=1):
        await events.insert_many([dict(doc) for doc in session])  # copies: insert_many adds _id
        appended |= {doc["event_id"] for doc in session}
        for job_try in range(1, services.job_policy.max_tries + 1):
            decision = await run_queued_compression(services, corpus.user_id, job_try)
            run.records += await services.compaction_log.recent(1, corpus.user_id)
            if decision.retry_in_s is None:
                break
        outcome = str(decision.result.get("outcome", "retried"))
        run.outcomes.append((outcome, decision.result.get("reason")))
        profile = await services.profiles.find(corpus.user_id)
        run.summaries.append(profile.memory_summary if profile else None)
        stored = {d["event_id"] async for d in events.find({"user_id": corpus.user_id}, {"event_id": 1})}
        for event_id in (planted & appended) - stored - run.folded_at.keys():
            run.folded_at[event_id] = number
    return run


async def run_budget(
    servers_mongo: str, servers_redis: str, corpora: list[UserCorpus], args: argparse.Namespace, budget: int
) -> tuple[list[UserRun], Settings, float, list[Verdict]]:
    db_name = f"bench_fidelity_{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        mongodb_uri=servers_mongo,
        mongodb_db=db_name,
        redis_url=servers_redis,
        summary_max_chars=budget,
        retention="archive",
        threshold=args.threshold,
        keep_last=args.keep_last,
    )
    database = MongoDatabase(servers_mongo, db_name)
    await database.connect()
    redis = Redis.from_url(servers_redis)
    summarizer = JudgedSummarizer(build_summarizer(settings))
    started = time.perf_counter()
    try:
        await ensure_indexes(database)
        services = build_services(settings, database, redis, Metrics(), summarizer)
        limit = asyncio.Semaphore(args.concurrency)

        async def one(corpus: UserCorpus) -> UserRun:
            async with limit:
                return await run_user(services, database, corpus)

        runs = await asyncio.gather(*(one(c) for c in corpora))
    finally:
        await summarizer.aclose()
        await redis.aclose()
        await database.db.client.drop_database(db_name)
        await database.close()
    return list(runs), settings, time.perf_counter() - started, summarizer.verdicts


# --- scoring -----------------------------------------------------------------------------------------


def score(run: UserRun, budget: int) -> list[Scored]:
    final = Summary.of(run.final)
    scored = []
    for fact in run.corpus.facts:
        latest = recalled(fact.match, fact.value, final)
        stale = recalled(fact.match, fact.stale, final) if fact.stale is not None else None
        scored.append(Scored(fact, latest, stale, None if latest else _miss(run, fact, budget)))
    return scored


def _miss(run: UserRun, fact: Fact, budget: int) -> str:
    """Why a fact is not in the final summary:

    * ``kept verbatim``: its event was never folded (it is in the kept history, or every compaction
      that tried to fold it failed);
    * ``lost later``: the summary written when it was folded held it, a later one does not;
    * ``no room``: that summary was at >= 90 % of the budget (it had to compete for the last space);
    * ``left out``: that summary had room, and the summariser still did not take it.
    """
    folded = run.folded_at.get(fact.event_id)
    if folded is None:
        return "kept verbatim"
    then = run.summaries[folded - 1]
    if recalled(fact.match, fact.value, Summary.of(then)):
        return "lost later"
    return "no room" if len(then or "") >= AT_BUDGET * budget else "left out"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def report(
    runs: list[UserRun],
    settings: Settings,
    elapsed: float,
    verdicts: list[Verdict],
    show_misses: int,
    full: bool,
) -> dict[str, float]:
    """Print the tables (``full``) or only the headline; return the numbers of the budget sweep."""
    budget = settings.summary_max_chars
    every = [s for run in runs for s in score(run, budget)]
    sessions = max(len(run.corpus.sessions) for run in runs)
    outcomes = Counter(outcome for run in runs for outcome, _ in run.outcomes)
    finals = [len(run.final or "") for run in runs]
    print(
        f"\n## budget {budget} chars: {len(runs)} users x {sessions} sessions, "
        f"{sum(r.corpus.events for r in runs)} events, {len(every)} facts; {elapsed:.1f} s"
    )
    print(
        "compactions: "
        + ", ".join(f"{n} {o}" for o, n in outcomes.most_common())
        + f"; final summary {min(finals)}-{max(finals)} chars (mean {sum(finals) / len(finals):.0f}), "
        f"{sum(f >= AT_BUDGET * budget for f in finals)} of {len(finals)} at >= 90 % of the budget"
    )
    failures = Counter(
        reason or "" for run in runs for outcome, reason in run.outcomes if outcome != "compressed"
    )
    for reason, n in failures.most_common(5):
        print(f"  {n} x {reason[:160]}")
    guard(runs, verdicts, elapsed)
    if full:
        _tables(runs, every, sessions, show_misses)
    recall = _share([s.latest for s in every])
    goal = ""
    if settings.summarizer_name == "extractive":
        goal = f" (goal >= {100 * GOAL:.0f} % for the offline summariser: {'met' if recall >= GOAL else 'missed'})"
    print(f"planted-fact recall after {sessions} compactions at {budget} chars: {100 * recall:.1f} %{goal}")
    corrections = [s for s in every if s.fact.kind == "correction"]
    return {
        "recall": recall,
        **{lang: _share([s.latest for s in every if s.fact.language == lang]) for lang in LANGUAGES},
        "corrections_latest": _share([s.latest for s in corrections]),
        "corrections_stale": _share([bool(s.stale) for s in corrections]),
        "final_chars": sum(finals) / len(finals),
    }


def guard(runs: list[UserRun], verdicts: list[Verdict], elapsed: float) -> None:
    """What the answer guard did, per language: its verdicts on every answer, the repair requests, the
    values patched in and dropped at the budget (from the compaction records), the false rejects, and
    the seconds per compaction (the run's wall time over its compactions; one user at a time with a
    real server, whose requests queue anyway)."""
    rows: list[list[object]] = []
    for language in (*LANGUAGES, "all"):
        mine = [r for r in runs if language in ("all", r.corpus.language)]
        answers = [v for v in verdicts if language in ("all", v.request.language)]
        records = [record for r in mine for record in r.records]
        kinds = Counter(v.kind for v in answers)
        rejected: Counter[str] = Counter()
        for record in records:
            rejected.update(record.answers_rejected)
        compactions = sum(len(r.outcomes) for r in mine)
        rows.append(
            [
                language,
                compactions,
                len(records),
                len(answers),
                kinds["accepted"],
                kinds["dropped"],
                ", ".join(f"{check} {n}" for check, n in rejected.most_common()) or "-",
                sum(v.draft for v in answers),
                sum(v.repair for v in answers),
                sum(record.values_patched for record in records),
                sum(record.values_dropped for record in records),
                sum(v.false_reject for v in answers),
            ]
        )
    every = sum(len(r.outcomes) for r in runs)
    print(
        f"\nthe answer guard's verdicts ({elapsed / max(every, 1):.1f} s per compaction; "
        "dropped: a summary missing values of its inputs, repaired then patched; drafts: rejected "
        "answers, cut off or over the budget, whose complete sentences pass the shape checks; false "
        "rejects: rejected answers without a draft that carried every value)"
    )
    headers = ["language", "compactions", "tries", "answers", "accepted", "dropped", "rejected by check"]
    headers += ["drafts", "repair requests", "values patched", "values dropped", "false rejects"]
    print(table(headers, rows))


def dump_rejected(path: str, verdicts: list[Verdict]) -> None:
    """The rejected answers with their inputs, one JSON object a line, for a check by hand."""
    with open(path, "w", encoding="utf-8") as out:
        for v in verdicts:
            if v.kind != "rejected":
                continue
            request = v.request
            line = {
                "check": v.check,
                "false_reject": v.false_reject,
                "draft": v.draft,
                "missing": v.missing,
                "required": v.required,
                "repair": v.repair,
                "language": request.language,
                "previous_summary": request.previous_summary,
                "events": [[e.role, e.content] for e in request.events],
                "answer": v.answer,
            }
            out.write(json.dumps(line, ensure_ascii=False) + "\n")


def _tables(runs: list[UserRun], every: list[Scored], sessions: int, show_misses: int) -> None:
    rows: list[list[object]] = []
    for language in (*LANGUAGES, "all"):
        mine = [s for s in every if language in ("all", s.fact.language)]
        for kind in (*KINDS, "all"):
            these = [s for s in mine if kind in ("all", s.fact.kind)]
            got = sum(s.latest for s in these)
            rows.append([language, kind, len(these), got, _pct(got, len(these))])
    print("\nrecall of planted facts in the final summary (a correction counts its latest value)")
    print(table(["language", "kind", "facts", "recalled", "recall"], rows))

    rows = []
    for language in (*LANGUAGES, "all"):
        mine = [s for s in every if s.fact.kind == "correction" and language in ("all", s.fact.language)]
        latest = sum(s.latest for s in mine)
        stale = sum(bool(s.stale) for s in mine)
        only = sum(s.latest and not s.stale for s in mine)
        rows.append(
            [language, len(mine), _pct(latest, len(mine)), _pct(stale, len(mine)), _pct(only, len(mine))]
        )
    print("\ncorrections (a value planted, then overridden at least two sessions later)")
    print(table(["language", "corrections", "latest present", "stale also present", "latest only"], rows))

    rows = []
    for k in range(1, sessions + 1):
        folded = held = 0
        for run in runs:
            if len(run.summaries) < k:
                continue
            now = Summary.of(run.summaries[k - 1])
            for fact in run.corpus.facts:
                at = run.folded_at.get(fact.event_id)
                if at is not None and at <= k:
                    folded += 1
                    held += recalled(fact.match, fact.value, now)
        chars = [len(run.summaries[k - 1] or "") for run in runs if len(run.summaries) >= k]
        rows.append([k, f"{sum(chars) / len(chars):.0f}", folded, held, _pct(held, folded)])
    print("\nafter each compaction: facts folded so far, and how many of them that summary holds")
    print(table(["compaction", "summary chars (mean)", "facts folded", "in summary", "recall"], rows))

    misses = Counter((s.fact.language, s.miss) for s in every if s.miss)
    reasons = ("no room", "left out", "lost later", "kept verbatim")
    rows = [[language, *(misses[(language, r)] for r in reasons)] for language in LANGUAGES]
    print("\nwhy the missed facts are missing (see _miss)")
    print(table(["language", *reasons], rows))
    if show_misses:
        shown = [s for s in every if s.miss][:show_misses]
        print(f"\nfirst {len(shown)} missed facts")
        rows = [
            [
                s.fact.user_id.rsplit("-", 1)[0],
                s.fact.kind,
                s.fact.slot,
                s.fact.value,
                s.fact.session + 1,
                s.miss,
            ]
            for s in shown
        ]
        print(table(["user", "kind", "slot", "value", "session", "why"], rows))
    print()


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


# --- main --------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    run_id = uuid.uuid4().hex[:6]
    tail = args.keep_last + TAIL_SLACK
    corpora = generate(args.seed, args.users, args.sessions, tail, run_id)
    probe = load_settings(threshold=args.threshold, keep_last=args.keep_last)
    if probe.summarizer_name == "openai":
        described = f"openai-compatible {redact_url(probe.llm_base_url or 'https://api.openai.com/v1')} model {probe.llm_model}"
    else:
        described = "extractive (offline)"
    with bench_servers() as servers:
        print_machine(
            {
                "summarizer": described,
                "seed": str(args.seed),
                "users": f"{args.users} per language",
                "sessions": str(args.sessions),
                "threshold": str(args.threshold),
                "keep_last": str(args.keep_last),
                "chunk_chars": str(probe.chunk_chars),
            }
        )
        sweep = []
        for budget in args.budget:
            runs, settings, elapsed, verdicts = await run_budget(
                servers.mongo_url, servers.redis_url, corpora, args, budget
            )
            full = budget == args.budget[0]
            sweep.append((budget, report(runs, settings, elapsed, verdicts, args.show_misses, full)))
            if args.dump_rejected and full:
                dump_rejected(args.dump_rejected, verdicts)
    if len(sweep) > 1:
        print("\nby budget")
        print(
            table(
                ["budget", "recall", *LANGUAGES, "corrections latest", "stale also", "final chars (mean)"],
                [
                    [
                        b,
                        _pct(round(1000 * r["recall"]), 1000),
                        *(_pct(round(1000 * r[lang]), 1000) for lang in LANGUAGES),
                        _pct(round(1000 * r["corrections_latest"]), 1000),
                        _pct(round(1000 * r["corrections_stale"]), 1000),
                        f"{r['final_chars']:.0f}",
                    ]
                    for b, r in sweep
                ],
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 users per language (make fidelity)")
    parser.add_argument("--users", type=int, help="users per language (default 6, --quick 3)")
    parser.add_argument("--sessions", type=int, default=6, help="sessions = compactions per user (default 6)")
    parser.add_argument("--seed", type=int, default=12, help="corpus seed (default 12)")
    parser.add_argument(
        "--budget",
        type=int,
        nargs="+",
        help=f"summary budgets in chars; the tables are printed for the first (default {DEFAULT_BUDGET})",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also 2x and 4x the budget: where the recall would be (make fidelity)",
    )
    parser.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD)
    parser.add_argument("--keep-last", type=int, default=DEFAULT_KEEP_LAST)
    parser.add_argument("--concurrency", type=int, default=4, help="users compressed at once (default 4)")
    parser.add_argument(
        "--show-misses", type=int, default=0, metavar="N", help="list the first N missed facts"
    )
    parser.add_argument(
        "--dump-rejected", metavar="FILE", help="write the rejected answers with their inputs (JSON lines)"
    )
    args = parser.parse_args()
    args.users = args.users or (3 if args.quick else 6)
    args.budget = args.budget or [DEFAULT_BUDGET]
    if args.sweep:
        args.budget += [2 * args.budget[0], 4 * args.budget[0]]
    if args.sessions < 5:
        parser.error("--sessions must be at least 5 (five incremental compactions)")
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
