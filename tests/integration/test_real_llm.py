"""The fold against a real LLM: llama-cpp-python's server with a small model (``make llm-server``).

Opt-in (marker ``real_llm``; ``make test-real-llm``): the default run never selects these, and they
skip, saying why, when no server of this checkout answers. A real server answers slowly, rewrites
values, ignores instructions, stops at ``max_tokens``, refuses a prompt beyond its context with HTTP
400 and counts tokens its own way; whatever it does, every compaction ends compressed or parked with
a reason, never a dead letter, and every event stays stored, archived, or carried. The guard's verdict
on every answer is printed (run with ``-s``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import openai
import pytest

from memcompress.jobs import Services
from memcompress.jobs.queued import run_queued_compression
from memcompress.models import CompactionRecord, Outcome
from memcompress.repositories.database import USER_MEMORY, USER_MEMORY_ARCHIVE, MongoDatabase
from memcompress.repositories.documents import document_to_event
from memcompress.summarizers.base import ContextOverflow, RejectedOutput, SummaryRequest
from memcompress.summarizers.openai_chat import OpenAISummarizer, context_overflow
from memcompress.testing.verdicts import JudgedSummarizer, Verdict
from tests.integration.conftest import ServicesFactory

pytestmark = pytest.mark.real_llm

ROOT = Path(__file__).resolve().parents[2]
SERVER_ENV = ROOT / ".llm-venv" / "server.env"
MAX_TRIES = 5  # the job's tries per compaction (MEMCOMPRESS_MAX_TRIES' default)
# A 1,000-character summary: answers of at most 500 tokens. The default budget (4,000) works too, but a
# CPU-served model writes ~10 tokens a second on a busy 2-core machine: minutes per answer.
SUMMARY_CHARS = 1000


def _server() -> dict[str, str]:
    """The running server's settings (``.llm-venv/server.env``, or ``MEMCOMPRESS_TEST_LLM_BASE_URL``)."""
    if url := os.environ.get("MEMCOMPRESS_TEST_LLM_BASE_URL"):
        values = {"MEMCOMPRESS_LLM_BASE_URL": url, "MEMCOMPRESS_LLM_MODEL": "any"}
    elif SERVER_ENV.exists():
        lines = SERVER_ENV.read_text(encoding="utf-8").splitlines()
        values = dict(line.split("=", 1) for line in lines if "=" in line)
    else:
        values = {}
    url = values.get("MEMCOMPRESS_LLM_BASE_URL")
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=30) as response:
            models = json.load(response)["data"]
    except Exception as error:
        pytest.skip(
            f"no real LLM server answers ({type(error).__name__}): `make llm-server` builds and starts "
            "one (about 15 minutes the first time), `make test-real-llm` does both"
        )
    values["MEMCOMPRESS_LLM_MODEL"] = models[0]["id"]
    return values


@pytest.fixture(scope="module")
def server() -> dict[str, str]:
    return _server()


@pytest.fixture
async def judged(server: dict[str, str]) -> AsyncIterator[JudgedSummarizer]:
    inner = OpenAISummarizer(
        model=server["MEMCOMPRESS_LLM_MODEL"],
        base_url=server["MEMCOMPRESS_LLM_BASE_URL"],
        api_key="any",
        timeout_s=600,
    )
    summarizer = JudgedSummarizer(inner)
    try:
        yield summarizer
    finally:
        await summarizer.aclose()
        _print_verdicts(summarizer.verdicts)


def _corpus() -> ModuleType:
    """bench/fidelity_corpus.py: Russian and English users with planted facts among the chatter."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location(
            "fidelity_corpus", ROOT / "bench" / "fidelity_corpus.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["fidelity_corpus"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _print_verdicts(verdicts: list[Verdict]) -> None:
    kinds = Counter(v.kind if v.check is None else f"{v.kind}:{v.check}" for v in verdicts)
    false_rejects = sum(v.false_reject for v in verdicts)
    seconds = sum(v.seconds for v in verdicts)
    print(
        f"\n[real LLM] {len(verdicts)} answers in {seconds:.0f} s: "
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        + f"; {sum(v.repair for v in verdicts)} to repair requests; {false_rejects} rejected with every value carried"
    )


async def _compress(services: Services, user: str) -> list[CompactionRecord]:
    """One compaction as the queue runs it: tries until it is done, parked, or dead-lettered (no
    waiting between tries). Returns the record of each try."""
    records: list[CompactionRecord] = []
    for job_try in range(1, MAX_TRIES + 1):
        decision = await run_queued_compression(services, user, job_try)
        records.append(await _last_record(services, user))
        if decision.retry_in_s is None:
            break
    return records


async def _last_record(services: Services, user: str) -> CompactionRecord:
    records = await services.compaction_log.recent(1, user)
    assert records, "every run leaves a record"
    return records[0]


async def _nothing_lost(database: MongoDatabase, user: str, event_ids: set[str]) -> None:
    """Every event appended is stored or archived (RETENTION=archive keeps what was folded)."""
    query = {"user_id": user}
    stored = {d["event_id"] async for d in database.collection(USER_MEMORY).find(query, {"event_id": 1})}
    archived = {
        d["event_id"] async for d in database.collection(USER_MEMORY_ARCHIVE).find(query, {"event_id": 1})
    }
    assert event_ids <= stored | archived, f"{len(event_ids - stored - archived)} events lost"


@pytest.mark.parametrize("language", ["ru", "en"])
async def test_a_user_through_several_compactions_ends_compressed_or_parked_and_loses_nothing(
    make_services: ServicesFactory,
    database: MongoDatabase,
    judged: JudgedSummarizer,
    server: dict[str, str],
    language: str,
) -> None:
    corpus = _corpus()
    user = next(c for c in corpus.generate(7, 1, 3, 26, uuid.uuid4().hex[:6]) if c.language == language)
    services = make_services(
        judged,
        retention="archive",
        summary_max_chars=SUMMARY_CHARS,
        chunk_chars=int(server.get("MEMCOMPRESS_CHUNK_CHARS", "7000")),
        llm_timeout_s=600,
        job_timeout_s=3600,
        max_tries=MAX_TRIES,
    )
    appended: set[str] = set()
    endings: list[CompactionRecord] = []
    for session in user.sessions:
        await database.collection(USER_MEMORY).insert_many([dict(doc) for doc in session])
        appended |= {doc["event_id"] for doc in session}
        records = await _compress(services, user.user_id)
        endings.append(records[-1])
        await _nothing_lost(database, user.user_id, appended)

    # Compressed (or nothing to do yet), or parked with its reason (the queue keeps a parked user as a
    # dead letter that says why); never a dead letter of a run that failed otherwise.
    for record in endings:
        assert record.outcome in (Outcome.COMPRESSED, Outcome.SKIPPED, Outcome.PARKED), (
            record.outcome,
            record.reason,
        )
    assert all(letter.reason.startswith("parked: ") for letter in await services.dead_letters.list())
    # The token metrics are the server's own counts, answer by answer.
    answered = [v for v in judged.verdicts if v.prompt_tokens is not None]
    every = await services.compaction_log.recent(100, user.user_id)
    assert sum(r.prompt_tokens or 0 for r in every) == sum(v.prompt_tokens or 0 for v in answered)
    assert sum(r.llm_calls for r in every) == len(judged.verdicts)
    # What the guard did is in the records: every rejected answer counted by its check.
    rejected = Counter(v.check for v in judged.verdicts if v.kind == "rejected")
    recorded: Counter[str] = Counter()
    for r in every:
        recorded.update(r.answers_rejected)
    assert recorded == rejected


async def test_a_request_over_the_context_gets_http_400_and_the_fold_sends_smaller_ones(
    make_services: ServicesFactory,
    database: MongoDatabase,
    judged: JudgedSummarizer,
    server: dict[str, str],
) -> None:
    # What the server answers for a prompt beyond its context, as the summariser classifies it.
    client = openai.OpenAI(base_url=server["MEMCOMPRESS_LLM_BASE_URL"], api_key="any", max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=server["MEMCOMPRESS_LLM_MODEL"],
            messages=[{"role": "user", "content": "word " * 40_000}],
            max_tokens=10,
        )
    client.close()
    assert refused.value.status_code == 400
    overflow = context_overflow(refused.value)
    assert overflow is not None and overflow.context_tokens and overflow.requested_tokens
    assert overflow.requested_tokens > overflow.context_tokens

    # The fold, with chunks far beyond the context: refused, halved, compressed; no dead letter.
    user = next(c for c in _corpus().generate(8, 1, 5, 26, uuid.uuid4().hex[:6]) if c.language == "en")
    services = make_services(
        judged,
        retention="archive",
        summary_max_chars=SUMMARY_CHARS,
        chunk_chars=200_000,
        llm_timeout_s=600,
        job_timeout_s=3600,
    )
    # ~32,000 characters of English JSON lines: ~9,000 tokens of this model's tokenizer.
    first = [doc for session in user.sessions for doc in session]
    await database.collection(USER_MEMORY).insert_many([dict(doc) for doc in first])
    records = await _compress(services, user.user_id)

    # The overflow made the requests smaller; it never failed a try (the answers may, on their merits).
    assert records[0].llm_calls > records[0].chunks  # the refused requests are counted too
    assert all(r.error_class != "ContextOverflow" for r in records), [r.reason for r in records]
    assert records[-1].outcome in (Outcome.COMPRESSED, Outcome.PARKED), records[-1].reason
    await _nothing_lost(database, user.user_id, {doc["event_id"] for doc in first})


async def test_an_answer_stopped_at_max_tokens_is_never_returned_as_a_summary(
    judged: JudgedSummarizer,
) -> None:
    corpus = _corpus()
    user = next(c for c in corpus.generate(9, 1, 3, 26, uuid.uuid4().hex[:6]) if c.language == "en")
    events = [document_to_event(USER_MEMORY, doc).event for doc in user.sessions[0][:30]]
    # A 200-character budget asks for max_tokens 100: fewer than this model writes for 30 events.
    request = SummaryRequest(None, events, "en", 200)
    outcomes: list[str] = []
    for _ in range(3):
        try:
            result = await judged.summarize(request)
        except RejectedOutput as rejected:
            outcomes.append("overflow" if isinstance(rejected, ContextOverflow) else rejected.check)
        else:
            assert len(result.text) <= request.max_chars
            outcomes.append("answered")
    assert "incomplete" in outcomes and "overflow" not in outcomes, outcomes
