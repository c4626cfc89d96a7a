"""Conversation shape on the real servers: tool exchanges never split, pinned events kept verbatim,
token watermarks, the minimum fold and the daily cap, per-user overrides."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from memcompress.cli.app import cli
from memcompress.jobs import find_users, run_compression
from memcompress.models import Outcome, UserOverrides, utc_now
from memcompress.repositories.database import USER_MEMORY, MongoDatabase
from memcompress.testing.app_documents import app_event
from memcompress.testing.llm_server import FakeLLM
from tests.integration.conftest import ServicesFactory, run_cli

pytestmark = pytest.mark.redis


def _at(i: int) -> Any:
    return utc_now() - timedelta(days=1) + timedelta(seconds=i)


def _call(user: str, i: int, *ids: str) -> dict[str, Any]:
    calls = [
        {"id": c, "type": "function", "function": {"name": "weather", "arguments": '{"city": "Riga"}'}}
        for c in ids
    ]
    return app_event(user, "assistant", None, _at(i), tool_calls=calls)


def _result(user: str, i: int, call_id: str) -> dict[str, Any]:
    return app_event(user, "tool", f'{{"call": "{call_id}", "n": {i}}}', _at(i), tool_call_id=call_id)


def _plain(user: str, i: int, text: str = "") -> dict[str, Any]:
    return app_event(user, "user" if i % 2 == 0 else "assistant", text or f"{user} says {i}", _at(i))


async def _kept(database: MongoDatabase, user: str) -> list[dict[str, Any]]:
    return await database.collection(USER_MEMORY).find({"user_id": user}).sort([("created_at", 1)]).to_list()


def _orphans(kept: list[dict[str, Any]]) -> list[str]:
    """Tool results kept without their call, and calls kept without all their results."""
    calls = {c["id"] for d in kept for c in d.get("tool_calls") or []}
    results = {d["tool_call_id"] for d in kept if d.get("tool_call_id")}
    return sorted((results - calls) | (calls - results))


@pytest.mark.parametrize(
    "shape",
    ["one call, several results", "parallel calls", "a call with no result yet"],
)
async def test_tool_exchanges_across_the_boundary_are_never_split(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, shape: str
) -> None:
    user = f"tools-{uuid.uuid4().hex[:8]}"
    # 60 events; keep_last 20 puts the boundary between index 39 and 40, inside the exchange.
    docs = [_plain(user, i) for i in range(38)]
    if shape == "one call, several results":
        docs += [_call(user, 38, "c1"), _result(user, 39, "c1"), _result(user, 40, "c1")]
    elif shape == "parallel calls":
        docs += [_call(user, 38, "a", "b"), _result(user, 39, "a"), _result(user, 40, "b")]
    else:
        docs += [_plain(user, 38), _call(user, 39, "pending"), _plain(user, 40)]
    docs += [_plain(user, i) for i in range(41, 60)]
    await database.collection(USER_MEMORY).insert_many(docs)

    record = await run_compression(make_services(), user)

    assert record.outcome is Outcome.COMPRESSED
    kept = await _kept(database, user)
    pending = shape == "a call with no result yet"
    assert _orphans(kept) == (["pending"] if pending else [])  # a call waiting for its result is kept
    assert len(kept) > 20  # the boundary moved older to keep the exchange whole
    summarised = {text for exchange in llm.exchanges for text in exchange.texts}
    for doc in docs:  # nothing lost: every event is still stored or was in a request
        assert doc["_id"] in {k["_id"] for k in kept} or any(
            str(doc.get("content") or "calls weather") in text or text in str(doc.get("content"))
            for text in summarised
        ), doc


async def test_pinned_events_survive_five_compactions_verbatim(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"pins-{uuid.uuid4().hex[:8]}"
    services = make_services(pinned_roles="system")
    pinned = [
        app_event(user, "user", "My passport number is 4471-ZZ, never forget it.", _at(0), tags=["pinned"]),
        app_event(user, "system", "You are Alfred, the user's butler.", _at(1)),
    ]
    await database.collection(USER_MEMORY).insert_many(pinned)  # gives each its _id
    for round_ in range(5):  # 60 new events, then 40 more each round (20 are kept each time)
        start = 10 + round_ * 100
        new = 60 if round_ == 0 else 40
        await database.collection(USER_MEMORY).insert_many([_plain(user, start + i) for i in range(new)])
        record = await run_compression(services, user)
        assert record.outcome is Outcome.COMPRESSED, record.reason
        assert record.unfoldable == 0  # pinned events are not "unfoldable": they are kept on purpose
    kept = {d["_id"]: d for d in await _kept(database, user)}
    for doc in pinned:  # unchanged
        assert {k: kept[doc["_id"]][k] for k in ("role", "content", "tags", "event_id")} == {
            k: doc[k] for k in ("role", "content", "tags", "event_id")
        }
    assert len(kept) == 2 + 20  # the pins are never counted toward keep_last
    assert not any("passport" in text for exchange in llm.exchanges for text in exchange.texts)


async def test_token_watermarks_fold_to_the_target(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"tokens-{uuid.uuid4().hex[:8]}"
    services = make_services(threshold=1000, keep_last=100, trigger_tokens=2000, target_tokens=500)
    await database.collection(USER_MEMORY).insert_many(
        [_plain(user, i, f"{i:03d} " + "x" * 296) for i in range(30)]
    )

    record = await run_compression(services, user)  # 30 x 100 estimated tokens = 3000 > 2000

    assert (record.outcome, record.events_folded) == (Outcome.COMPRESSED, 25)
    assert len(await _kept(database, user)) == 5  # 5 x 100 tokens = the 500-token target


async def test_fewer_new_events_than_the_minimum_is_skipped_without_an_llm_call(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"small-{uuid.uuid4().hex[:8]}"
    services = make_services(threshold=1000, keep_last=100, trigger_tokens=2000, target_tokens=1900)
    await database.collection(USER_MEMORY).insert_many(
        [_plain(user, i, f"{i:03d} " + "x" * 296) for i in range(21)]
    )

    record = await run_compression(services, user)  # 2100 tokens: folding 2 events would reach 1900

    assert record.outcome is Outcome.SKIPPED and "fewer than the minimum of 10" in (record.reason or "")
    assert llm.requests == 0
    assert [u.user_id for u in await find_users(services)] == [user]  # over the trigger, all the same


async def test_the_daily_cap_stops_runaway_compressions(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"cap-{uuid.uuid4().hex[:8]}"
    services = make_services(max_compactions_per_day=1)
    await database.collection(USER_MEMORY).insert_many([_plain(user, i) for i in range(60)])
    assert (await run_compression(services, user)).outcome is Outcome.COMPRESSED
    await database.collection(USER_MEMORY).insert_many([_plain(user, 100 + i) for i in range(40)])

    record = await run_compression(services, user)

    assert record.outcome is Outcome.SKIPPED and "24 hours" in (record.reason or "")
    assert llm.requests == 1
    assert services.metrics.registry.get_sample_value("memcompress_compaction_cap_hits_total") == 1


async def test_overrides_change_what_one_user_gets_and_no_one_else(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    tag = uuid.uuid4().hex[:8]
    special, other = f"special-{tag}", f"other-{tag}"
    services = make_services()
    await database.collection(USER_MEMORY).insert_many(
        [_plain(user, i) for user in (special, other) for i in range(40)]
    )
    await services.overrides.set(special, UserOverrides(threshold=30, keep_last=10, model="small-model"))

    assert [u.user_id for u in await find_users(services)] == [special]
    assert (await run_compression(services, special)).events_folded == 30
    assert (await run_compression(services, other)).outcome is Outcome.SKIPPED
    assert len(await _kept(database, special)) == 10 and len(await _kept(database, other)) == 40
    assert [exchange.body["model"] for exchange in llm.exchanges] == ["small-model"]


async def test_override_and_config_user_commands(database: MongoDatabase, cli_env: dict[str, str]) -> None:
    set_ = await run_cli(cli_env, "override", "u1", "--threshold", "30", "--keep-last", "5", "--json")
    assert set_.exit_code == 0, set_.output
    shown = await run_cli(cli_env, "config", "--user", "u1", "--json")
    assert '"threshold": 30' in shown.output and '"keep_last": 5' in shown.output
    others = await run_cli(cli_env, "config", "--user", "u2", "--json")
    assert '"threshold": 50' in others.output and '"overrides": {}' in others.output
    refused = await run_cli(cli_env, "override", "u1", "--keep-last", "40")
    assert refused.exit_code == 2 and "keep-last (40) must be less than threshold (30)" in refused.output
    cleared = await run_cli(cli_env, "override", "u1", "--clear", "--json")
    assert cleared.exit_code == 0 and '"overrides": {}' in cleared.output


def test_config_shows_where_each_setting_comes_from(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, mongo_uri: str
) -> None:
    """A .env that happens to hold OPENAI_API_KEY switches nothing (neither the summariser nor the
    retention): config shows each setting's source, and says why the key is not used."""
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv-secret\n")
    monkeypatch.chdir(tmp_path)
    env = {"MEMCOMPRESS_MONGODB_URI": mongo_uri, "MEMCOMPRESS_THRESHOLD": "70"}
    result = CliRunner().invoke(cli, ["config", "--json"], env=env, catch_exceptions=False)
    shown = json.loads(result.stdout)
    assert shown["threshold"] == {"value": 70, "source": "env"}
    assert shown["llm_api_key"] == {"value": "***", "source": ".env"}
    assert shown["summarizer"] == {
        "value": "extractive",
        "source": "default: no LLM endpoint is set (MEMCOMPRESS_LLM_BASE_URL)",
    }
    assert shown["retention"] == {"value": "archive", "source": "default"}
    assert shown["keep_last"]["source"] == "default"
    assert "an LLM API key is set but no LLM endpoint" in result.stderr
    assert "sk-from-dotenv-secret" not in result.output

    with_endpoint = env | {"MEMCOMPRESS_LLM_BASE_URL": "http://llm.internal:8000/v1"}
    result = CliRunner().invoke(cli, ["config", "--json"], env=with_endpoint, catch_exceptions=False)
    shown = json.loads(result.stdout)
    assert shown["summarizer"] == {
        "value": "openai",
        "source": "default: an LLM endpoint is set (llm_base_url, env)",
    }
    assert shown["retention"]["value"] == "archive" and result.stderr == ""
