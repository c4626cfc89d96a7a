"""Liveness on the real servers: a user over the threshold ends under it within a bounded number of runs
and LLM requests, or is parked once with a reason. Honest rewrites are accepted as they are, real drops
are repaired and patched, an oversize event is summarised in parts, a server's context overflow makes
the request smaller, and a model that keeps answering garbage is parked, not paid again and again."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from typing import Any

import pytest

from memcompress.jobs import run_compression
from memcompress.models import Outcome, utc_now
from memcompress.repositories.database import USER_MEMORY, USER_PROFILES, MongoDatabase
from memcompress.summarizers.carry import carried, carry_index, find_values
from memcompress.summarizers.extractive import ExtractiveSummarizer
from memcompress.testing.answers import honest
from memcompress.testing.app_documents import app_event
from memcompress.testing.llm_server import FakeLLM
from tests.integration.conftest import ServicesFactory, seed_app_user

pytestmark = pytest.mark.redis

# (previous summary, the same facts as a real LLM rewrites them), Russian and English.
HONEST_REWRITES = [
    ("Встреча назначена на 2026-03-12.", "Встреча назначена на 12 марта 2026 года."),
    ("Meeting on 2026-03-12.", "Meeting on March 12, 2026."),
    ("Созвон в 14:30 по Москве.", "Созвон в 2:30 PM по Москве."),
    ("Budget: 1 500 000 RUB.", "Budget: 1.5 million RUB."),
    ("Бюджет: 1 500 000 рублей.", "Бюджет: 1,5 млн рублей."),
    ("Зарплата 12500 евро.", "Зарплата 12,5 тыс. евро."),
    ("У пользователя кот, его зовут Лев.", "Пользователь любит своего кота Льва."),
    ("Родители живут в городе Орёл.", "Родители пользователя живут в Орле."),
    ("Жена пользователя — Anna.", "Пользователь живёт с женой Анной."),
    ("Телефон +7 915 123-45-67.", "Телефон 8 (915) 123-45-67."),
    ("Phone +7 915 123-45-67.", "Phone +79151234567."),
]
# (previous summary, an answer that really lost or changed a value)
REAL_DROPS = [
    ("Телефон +7 915 123-45-67, кот Лев.", "Кот Лев."),
    ("Wife Anna, daughter Maria.", "Wife Anna."),
    ("Budget 1500 EUR.", "Budget 1600 EUR."),
    ("Meeting on 2026-03-12.", "Meeting on 2026-03-13."),
    ("Кот Лев, родители в городе Орёл.", "Кот Лев."),
]


def _answering(rewritten: str) -> Any:
    """An LLM that rewrites the previous summary as ``rewritten`` and carries the new messages' values."""
    return lambda number, previous, texts: honest(rewritten, texts)


async def _summary(database: MongoDatabase, user: str) -> str:
    return str((await database.collection(USER_PROFILES).find_one({"user_id": user}) or {})["memory_summary"])


@pytest.mark.parametrize(("previous", "rewritten"), HONEST_REWRITES)
async def test_an_honest_rewrite_is_accepted_as_it_is(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, previous: str, rewritten: str
) -> None:
    user = f"honest-{uuid.uuid4().hex[:8]}"
    await seed_app_user(database, user, previous)
    llm.answer = _answering(rewritten)

    record = await run_compression(make_services(), user)

    assert record.outcome is Outcome.COMPRESSED, record.reason
    assert llm.requests == record.chunks  # no repair request
    assert record.values_patched == 0
    assert (await _summary(database, user)).startswith(rewritten)  # stored as the model wrote it
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 20


@pytest.mark.parametrize(("previous", "dropped"), REAL_DROPS)
async def test_a_real_drop_gets_a_repair_request_then_the_value_is_patched_in(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, previous: str, dropped: str
) -> None:
    user = f"drop-{uuid.uuid4().hex[:8]}"
    await seed_app_user(database, user, previous)
    llm.answer = _answering(dropped)

    record = await run_compression(make_services(), user)

    assert record.outcome is Outcome.COMPRESSED, record.reason
    assert llm.requests == 2 * record.chunks  # each answer gets its one repair request
    assert record.values_patched > 0
    summary = await _summary(database, user)
    index = carry_index(summary)
    assert [v.surface for v in find_values(previous) if not carried(v.kind, v.value, index)] == []


async def test_a_correction_in_the_folded_events_is_not_a_drop(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"fix-{uuid.uuid4().hex[:8]}"
    await seed_app_user(database, user, "Lives in Moscow. Phone +7 915 123-45-67.")
    await database.collection(USER_MEMORY).insert_many(
        [
            app_event(
                user, "user", "I moved from Moscow to Berlin last month.", utc_now() - timedelta(days=2)
            ),
            app_event(
                user, "user", "My new phone is +49 30 1234567.", utc_now() - timedelta(days=2, seconds=-1)
            ),
        ]
    )
    llm.answer = lambda number, previous, texts: (
        "Lives in Berlin, phone +49 30 1234567. "
        + honest("", [t for t in texts if "Moscow" not in t and "+49" not in t])
    )

    record = await run_compression(make_services(keep_last=20, threshold=50), user)

    assert record.outcome is Outcome.COMPRESSED, record.reason
    assert (llm.requests, record.values_patched) == (record.chunks, 0)  # accepted as it is


async def test_a_shrunk_summary_gets_a_repair_request_not_a_rejection(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"shrunk-{uuid.uuid4().hex[:8]}"
    previous = "The user enjoys long walks in the park with the dog every evening. " * 10  # no values
    await seed_app_user(database, user, previous)
    answers = iter(["Walks the dog.", previous.strip()])
    llm.answer = lambda number, previous, texts: honest(next(answers), texts)

    record = await run_compression(make_services(), user)

    assert record.outcome is Outcome.COMPRESSED
    assert (
        llm.requests == 2
        and "left out much of the current summary" in llm.exchanges[1].body["messages"][-1]["content"]
    )
    assert (await _summary(database, user)).startswith(previous.strip())


async def test_a_60k_event_with_a_30k_server_context_is_compressed_in_parts_within_3_runs(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"huge-{uuid.uuid4().hex[:8]}"
    await seed_app_user(database, user, "Works at a bank.", count=59)
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
    ]  # no values: prose only
    pasted = " ".join(f"The pasted document goes on about the {words[i % 10]} weather." for i in range(1500))
    pasted = pasted[:60_000]
    await database.collection(USER_MEMORY).insert_one(
        app_event(user, "user", pasted, utc_now() - timedelta(days=2))  # the oldest: folded first
    )
    llm.max_context_tokens = 7_500  # about 30,000 characters of this text
    services = make_services(chunk_chars=80_000, retention="archive")

    for _ in range(3):
        record = await run_compression(services, user)
        if record.outcome is Outcome.SKIPPED:
            break
        assert record.outcome is Outcome.COMPRESSED, record.reason
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 20
    assert llm.failures.get("context_length_exceeded", 0) >= 1  # the server refused, the request shrank
    parts = [text for exchange in llm.exchanges for text in exchange.texts if text and text in pasted]
    assert "".join(parts) == pasted  # every part was summarised, once each, in order
    assert await database.collection(USER_MEMORY + "_archive").count_documents({"content": pasted}) == 1


async def test_a_model_that_keeps_answering_garbage_is_sent_smaller_requests_then_parked(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"garbage-{uuid.uuid4().hex[:8]}"
    await seed_app_user(database, user, "Works at a bank.")
    llm.answer = lambda number, previous, texts: "<div>not a summary</div>"
    services = make_services()

    outcomes, sizes = [], []
    for _ in range(10):
        before = llm.requests
        record = await run_compression(services, user)
        outcomes.append(record.outcome)
        sizes.append(max((len(e.body["messages"][-1]["content"]) for e in llm.exchanges[before:]), default=0))
        if record.outcome is Outcome.PARKED:
            break
    assert outcomes[-1] is Outcome.PARKED and len(outcomes) <= 6, outcomes
    assert all(a > b for a, b in itertools.pairwise(sizes[:-1])), sizes  # never resent unchanged
    assert "rejected in" in (record.reason or "") and record.llm_calls == 0
    calls = llm.requests
    assert (await run_compression(services, user)).outcome is Outcome.PARKED
    assert llm.requests == calls  # a parked user costs no more LLM requests
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 60


async def test_the_per_user_call_budget_parks_a_user_before_it_pays_more(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"budget-{uuid.uuid4().hex[:8]}"
    await seed_app_user(database, user, "Works at a bank.")
    llm.answer = lambda number, previous, texts: "<div>not a summary</div>"
    services = make_services(max_llm_calls_per_user_day=3)

    records = [await run_compression(services, user) for _ in range(3)]

    assert llm.requests == 3  # the budget, never more
    assert records[-1].outcome is Outcome.PARKED and "per-user budget" in (records[-1].reason or "")
    assert records[-1].error_class == "Parked" and records[-1].llm_calls == 0


async def test_a_legacy_5200_char_app_summary_with_the_offline_summariser_at_3000_is_compressed(
    make_services: ServicesFactory, database: MongoDatabase
) -> None:
    user = f"legacy-{uuid.uuid4().hex[:8]}"
    legacy = "\n".join(f"Note {i}: the user once mentioned item {1000 + i} and a trip." for i in range(120))[
        :5200
    ]
    await seed_app_user(database, user, legacy)
    services = make_services(ExtractiveSummarizer(), summary_max_chars=3000)

    record = await run_compression(services, user)

    assert record.outcome is Outcome.COMPRESSED, record.reason
    assert record.summary_lines_archived > 0
    summary = await _summary(database, user)
    assert len(summary) <= 3000
    archive = database.collection(USER_MEMORY + "_archive")
    given_up = {d["content"] async for d in archive.find({"user_id": user, "role": "summary"})}
    assert all(line in summary or line in given_up for line in legacy.splitlines())  # nothing dropped


@pytest.mark.parametrize("retention", ["delete", "archive"])
async def test_a_generic_first_summary_is_patched_and_no_value_is_lost(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, retention: str
) -> None:
    user = f"generic-{uuid.uuid4().hex[:8]}"
    docs = [
        app_event(
            user,
            "user",
            f"My order ORD-{4400 + i} ships on 2026-03-{10 + i % 9:02d}.",
            utc_now() - timedelta(days=1, seconds=-i),
        )
        for i in range(60)
    ]
    await database.collection(USER_MEMORY).insert_many(docs)
    llm.answer = lambda number, previous, texts: "The user talked about various orders."

    record = await run_compression(make_services(retention=retention), user)

    assert record.outcome is Outcome.COMPRESSED and record.values_patched > 0
    summary = carry_index(await _summary(database, user))
    kept = {d["_id"] async for d in database.collection(USER_MEMORY).find({"user_id": user})}
    for doc in docs:
        if doc["_id"] not in kept:
            assert all(carried(v.kind, v.value, summary) for v in find_values(doc["content"])), doc["content"]


async def test_a_request_cut_short_by_the_time_limit_counts_towards_the_budget(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"slow-{uuid.uuid4().hex[:8]}"
    await seed_app_user(database, user, "Works at a bank.")
    llm.hold()  # every request stays unanswered until the run's time limit cuts it
    services = make_services(max_llm_calls_per_user_day=2, job_timeout_s=8.0)
    try:
        records = [await run_compression(services, user, time_limit_s=0.5) for _ in range(3)]
    finally:
        llm.release()
    assert [r.llm_calls for r in records] == [1, 1, 0]
    assert records[-1].outcome is Outcome.PARKED  # two paid requests, then no more
