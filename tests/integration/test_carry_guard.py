"""The carry guard on the real servers with the local LLM server: answers that lose what the summary
carried, and a server that cuts the prompt, trim nothing and are recorded with the kind of loss; a
good answer afterwards compresses with nothing lost."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from memcompress.jobs import run_compression
from memcompress.models import Outcome, utc_now
from memcompress.repositories.database import COMPACTION_LOG, USER_MEMORY, USER_PROFILES, MongoDatabase
from memcompress.summarizers.carry import carried, carry_index, find_values
from memcompress.testing.app_documents import app_event, app_profile
from memcompress.testing.llm_server import CUT_OFF, FakeLLM
from tests.integration.conftest import ServicesFactory, run_cli, seed_app_user

pytestmark = pytest.mark.redis

PREVIOUS = (
    "Anna lives in Riga and works at Baltic Freight. Her order ORD-4471 arrives on 2026-03-12. "
    "Budget 1500 EUR; contact anna@example.org; portal https://example.org/orders. "
    "Сын Пётр учится в школе номер 42, день рождения 15.06.2016."
)
TURNS = "{user} turn {i}: I like topic {i}."


async def _assert_unchanged(database: MongoDatabase, user: str) -> None:
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 60
    profile = await database.collection(USER_PROFILES).find_one({"user_id": user})
    assert profile is not None and profile["memory_summary"] == PREVIOUS


def _half_of_the_values(number: int, previous: str, texts: list[str]) -> str:
    return previous.split(". ")[0] + f". Summary {number}."


async def _values_all_kept(database: MongoDatabase, user: str, docs: list[dict[str, Any]]) -> str:
    """Every value of the seeded events and of the previous summary is stored, archived, or in the
    summary; returns the summary."""
    summary = (await database.collection(USER_PROFILES).find_one({"user_id": user}) or {})["memory_summary"]
    kept = {d["_id"] async for d in database.collection(USER_MEMORY).find({"user_id": user}, {"_id": 1})}
    kept |= {d["_id"] async for d in database.collection(USER_MEMORY + "_archive").find({"user_id": user})}
    index = carry_index(summary)
    for source in [PREVIOUS, *(d["content"] for d in docs if d["_id"] not in kept)]:
        lost = [v.surface for v in find_values(source) if not carried(v.kind, v.value, index)]
        assert lost == [], (source, lost)
    return str(summary)


@pytest.mark.parametrize("retention", ["delete", "archive"])
@pytest.mark.parametrize(
    "answer",
    [
        lambda number, previous, texts: "The user talked about various topics.",
        _half_of_the_values,
    ],
    ids=["generic answer", "half of the values"],
)
async def test_an_answer_that_loses_values_gets_one_repair_then_the_values_are_patched_in(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    answer: Any,
    retention: str,
) -> None:
    user = f"guard-{uuid.uuid4().hex[:8]}"
    docs = await seed_app_user(database, user, PREVIOUS, text=TURNS)
    services = make_services(retention=retention)
    llm.answer = answer

    record = await run_compression(services, user)

    assert record.outcome is Outcome.COMPRESSED and record.values_patched > 0
    assert llm.requests == 2 * record.chunks  # each answer, and one repair request naming what it dropped
    assert "ORD-4471" in llm.exchanges[1].body["messages"][-1]["content"].split("</transcript>")[-1]
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 20
    await _values_all_kept(database, user, docs)
    [stored] = await database.collection(COMPACTION_LOG).find({"user_id": user}).to_list()
    assert stored["values_patched"] == record.values_patched and "ORD-4471" not in str(stored)


def _first(answer: str) -> Any:
    """An LLM that answers ``answer`` to every request (the first summary: no previous one)."""
    return lambda number, previous, texts: answer


@pytest.mark.parametrize("retention", ["delete", "archive"])
@pytest.mark.parametrize(
    ("answer", "check"),
    [
        ("<script>document.title = 'summary'</script> The user likes topics.", "markup"),
        ("```python\ndef summary():\n    return 'topics'\n```", "code"),
        ('{"summary": "the user likes topics", "facts": []}', "json"),
        ('The user said:\nTraceback (most recent call last):\n  File "app.py", line 3', "stack_trace"),
        ("Current memory summary: <summary> null </summary> <transcript>", "prompt_echo"),
        (
            "Anna Karenina met Boris Godunov and Vladimir Lenin on 1999-01-01 about order XK-9911 and 77777.",
            "invented_values",
        ),
    ],
    ids=["markup", "code", "json", "stack trace", "prompt echo", "invented values"],
)
async def test_a_first_summary_that_is_no_summary_is_rejected_and_nothing_is_trimmed(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    answer: str,
    check: str,
    retention: str,
) -> None:
    user = f"first-{uuid.uuid4().hex[:8]}"
    docs = [
        app_event(
            user, "user", f"I like topic {i} and call me at noon.", utc_now() - timedelta(days=1, seconds=-i)
        )
        for i in range(60)
    ]
    await database.collection(USER_MEMORY).insert_many(docs)
    llm.answer = _first(answer)

    record = await run_compression(make_services(retention=retention), user)

    assert (record.outcome, record.error_class, record.retryable) == (Outcome.FAILED, "RejectedAnswer", True)
    assert record.answers_rejected == {check: 2}, record.answers_rejected
    assert "Anna" not in (record.reason or "") and "XK-9911" not in (record.reason or "")  # counts only
    assert llm.requests == 2  # the answer and its one repair request
    assert "Your last answer was rejected" in llm.exchanges[1].body["messages"][-1]["content"]
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 60
    assert await database.collection(USER_PROFILES).find_one({"user_id": user}) is None


async def test_a_first_summary_in_the_wrong_language_is_rejected(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"lang-{uuid.uuid4().hex[:8]}"
    await database.collection(USER_PROFILES).insert_one(app_profile(user))  # language "ru"
    texts = [
        "Я живу в Москве и работаю в банке, мне нравится джаз и долгие прогулки по вечерам.",
        "Мой любимый писатель Толстой, я перечитываю его романы каждую зиму у камина.",
    ]
    docs = [
        app_event(user, "user", texts[i % 2], utc_now() - timedelta(days=1, seconds=-i)) for i in range(60)
    ]
    await database.collection(USER_MEMORY).insert_many(docs)
    llm.answer = _first(
        "The user lives in a big city, works at a bank and likes jazz, long evening walks and the novels "
        "of a famous writer, which they reread every winter by the fireplace."
    )

    record = await run_compression(make_services(), user)

    assert (record.outcome, record.error_class) == (Outcome.FAILED, "RejectedAnswer")
    assert record.answers_rejected == {"wrong_language": 2}
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 60


async def test_an_incomplete_answer_is_never_stored(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"cut-{uuid.uuid4().hex[:8]}"
    await seed_app_user(database, user, PREVIOUS, text=TURNS)
    llm.fail_next(CUT_OFF, CUT_OFF)  # finish_reason "length", twice

    record = await run_compression(make_services(), user)

    assert (record.outcome, record.error_class) == (Outcome.FAILED, "RejectedAnswer")
    assert record.answers_rejected == {"incomplete": 2} and "finish_reason length" in (record.reason or "")
    assert record.llm_calls == 2 and record.prompt_tokens is not None  # counted, with the server's tokens
    await _assert_unchanged(database, user)


async def test_answers_cut_at_max_tokens_fold_as_their_complete_sentences_with_the_values_patched_in(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"cut-{uuid.uuid4().hex[:8]}"
    docs = await seed_app_user(database, user, PREVIOUS, text=TURNS)
    llm.answer = lambda number, previous, texts: "Anna lives in Riga. The user likes many topics. Then she wr"
    llm.cut_at_max_tokens = True

    record = await run_compression(make_services(), user)

    assert record.outcome is Outcome.COMPRESSED, record.reason
    assert record.answers_rejected == {"incomplete": 2 * record.chunks}  # each answer and its repair
    assert record.values_patched > 0
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 20
    summary = await _values_all_kept(database, user, docs)
    assert summary.startswith("Anna lives in Riga. The user likes many topics.\n")
    assert "Then she wr" not in summary  # the cut sentence is never stored


async def test_a_context_overflow_is_reported_with_its_sizes_and_halves_the_request(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"ctx-{uuid.uuid4().hex[:8]}"
    docs = await seed_app_user(database, user, PREVIOUS, text=TURNS)
    llm.max_context_tokens = 900  # the 40 folded events do not fit one request; half of them do

    record = await run_compression(make_services(), user)

    assert record.outcome is Outcome.COMPRESSED, record.reason
    assert llm.failures["context_length_exceeded"] >= 1 and record.chunks >= 2
    assert record.llm_calls == llm.requests  # the refused requests are counted too
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 20
    await _values_all_kept(database, user, docs)


async def test_a_context_too_small_for_any_request_is_a_clear_permanent_failure_with_the_sizes(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"tiny-{uuid.uuid4().hex[:8]}"
    await seed_app_user(database, user, PREVIOUS, text=TURNS)
    llm.max_context_tokens = 100  # not even the instructions fit

    record = await run_compression(make_services(), user)

    assert (record.outcome, record.error_class, record.retryable) == (
        Outcome.FAILED,
        "ContextOverflow",
        False,
    )
    assert "exceeds the model's context (context 100 tokens, requested " in (record.reason or "")
    assert llm.requests <= 4  # halved down to the smallest request, then given up
    await _assert_unchanged(database, user)


async def test_a_server_that_truncates_the_prompt_is_a_clear_permanent_failure(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"cut-{uuid.uuid4().hex[:8]}"
    docs = await seed_app_user(database, user, PREVIOUS, text=TURNS)
    # Keeps the tail: the instructions and the previous summary are gone. The client sees a cut only
    # when the server read under half of what it sent (TRUNCATION_RATIO), so the cut is deep enough
    # for every request down to the smallest: that one sends about 450 estimated tokens, 3 times the
    # 150 read. (At 300 the smaller requests were cut below the alarm, and whether the run ended in
    # this failure depended on the answers' lengths.)
    llm.context_tokens = 150

    record = await run_compression(make_services(), user)

    assert (record.outcome, record.retryable) == (Outcome.FAILED, False)
    assert "the server truncated the prompt: lower MEMCOMPRESS_CHUNK_CHARS" in (record.reason or "")
    # Halved from the chunk down to the smallest request (500 characters), each one refused: at most 7.
    assert record.chunks == 0 and llm.requests <= 7
    await _assert_unchanged(database, user)
    await _values_all_kept(database, user, docs)


async def test_extractive_with_delete_is_refused_unless_acknowledged(
    database: MongoDatabase, cli_env: dict[str, str]
) -> None:
    env = cli_env | {"MEMCOMPRESS_RETENTION": "delete"}
    refused = await run_cli(env, "compress", "nobody")
    assert refused.exit_code == 2 and "MEMCOMPRESS_ACCEPT_LOSSY_RETENTION" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    accepted = await run_cli(env | {"MEMCOMPRESS_ACCEPT_LOSSY_RETENTION": "true"}, "compress", "nobody")
    assert accepted.exit_code == 0, accepted.output
