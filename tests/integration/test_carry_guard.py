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
from memcompress.testing.app_documents import app_event, app_profile
from memcompress.testing.llm_server import FakeLLM, default_answer
from tests.integration.conftest import ServicesFactory, run_cli

pytestmark = pytest.mark.redis

PREVIOUS = (
    "Anna lives in Riga and works at Baltic Freight. Her order ORD-4471 arrives on 2026-03-12. "
    "Budget 1500 EUR; contact anna@example.org; portal https://example.org/orders. "
    "Сын Пётр учится в школе номер 42, день рождения 15.06.2016."
)


async def _seed(database: MongoDatabase, user: str) -> list[dict[str, Any]]:
    await database.collection(USER_PROFILES).insert_one(app_profile(user, memory_summary=PREVIOUS))
    docs = [
        app_event(
            user,
            "user" if i % 2 == 0 else "assistant",
            f"{user} turn {i}: I like topic {i}.",
            utc_now() - timedelta(days=1, seconds=-i),
        )
        for i in range(60)
    ]
    await database.collection(USER_MEMORY).insert_many(docs)
    return docs


async def _assert_unchanged(database: MongoDatabase, user: str) -> None:
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 60
    profile = await database.collection(USER_PROFILES).find_one({"user_id": user})
    assert profile is not None and profile["memory_summary"] == PREVIOUS


def _half_of_the_values(number: int, previous: str, texts: list[str]) -> str:
    return previous.split(". ")[0] + f". Summary {number}."


@pytest.mark.parametrize(
    ("answer", "losses"),
    [
        (lambda number, previous, texts: "The user talked about various topics.", ("date", "code", "name")),
        (_half_of_the_values, ("date", "code", "email")),
    ],
    ids=["generic answer", "half of the values"],
)
async def test_an_answer_that_loses_values_trims_nothing_then_a_good_one_compresses(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    answer: Any,
    losses: tuple[str, ...],
) -> None:
    user = f"guard-{uuid.uuid4().hex[:8]}"
    docs = await _seed(database, user)
    services = make_services()
    llm.answer = answer

    record = await run_compression(services, user)

    assert (record.outcome, record.error_class, record.retryable) == (Outcome.FAILED, "CarryLoss", True)
    assert all(kind in (record.reason or "") for kind in losses), record.reason
    assert "ORD-4471" not in (record.reason or "") and "anna@" not in (record.reason or "")
    assert llm.requests == 2  # the answer, and one repair request telling the model what it dropped
    assert "ORD-4471" in llm.exchanges[1].body["messages"][-1]["content"].split("</transcript>")[-1]
    await _assert_unchanged(database, user)
    [stored] = await database.collection(COMPACTION_LOG).find({"user_id": user}).to_list()
    assert stored["outcome"] == "failed" and "ORD-4471" not in str(stored)

    llm.answer = default_answer  # a good answer: carries the previous summary and adds to it
    record = await run_compression(services, user)
    assert record.outcome is Outcome.COMPRESSED
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 20
    summary = (await database.collection(USER_PROFILES).find_one({"user_id": user}) or {})["memory_summary"]
    assert PREVIOUS in summary  # the facts are carried
    summarised = {text for exchange in llm.exchanges for text in exchange.texts if exchange.answer in summary}
    kept = {d["content"] async for d in database.collection(USER_MEMORY).find({"user_id": user})}
    assert all(d["content"] in kept or d["content"] in summarised for d in docs)  # nothing lost


async def test_a_server_that_truncates_the_prompt_is_a_clear_permanent_failure(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"cut-{uuid.uuid4().hex[:8]}"
    await _seed(database, user)
    llm.context_tokens = 300  # keeps the tail: the instructions and the previous summary are gone

    record = await run_compression(make_services(), user)

    assert (record.outcome, record.retryable) == (Outcome.FAILED, False)
    assert "the server truncated the prompt: lower MEMCOMPRESS_CHUNK_CHARS" in (record.reason or "")
    assert llm.requests == 1
    await _assert_unchanged(database, user)


async def test_extractive_with_delete_is_refused_unless_acknowledged(
    database: MongoDatabase, cli_env: dict[str, str]
) -> None:
    env = cli_env | {"MEMCOMPRESS_RETENTION": "delete"}
    refused = await run_cli(env, "compress", "nobody")
    assert refused.exit_code == 2 and "MEMCOMPRESS_ACCEPT_LOSSY_RETENTION" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    accepted = await run_cli(env | {"MEMCOMPRESS_ACCEPT_LOSSY_RETENTION": "true"}, "compress", "nobody")
    assert accepted.exit_code == 0, accepted.output
