"""The token estimates budgets and dry runs use: calibrated against tiktoken's cl100k_base counts, and
the request estimate against the prompt the OpenAI summariser really builds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from memcompress.models import MemoryEvent, Role
from memcompress.summarizers.base import (
    SummaryRequest,
    estimate_request_tokens,
    max_completion_tokens,
)
from memcompress.summarizers.carry import estimate_tokens
from memcompress.summarizers.openai_chat import build_messages
from tests.unit.test_carry import CL100K_TOKENS, ENGLISH_SAMPLE, RUSSIAN_SAMPLE

# Whole prompts built from the samples by _request below, measured with cl100k_base.
CL100K_PROMPT_TOKENS = {"en": 2454, "ru": 3577}


def _request(language: str, sample: str) -> SummaryRequest:
    lines = sample.splitlines() * 6
    events = [
        MemoryEvent(
            user_id="u",
            role=(Role.USER, Role.ASSISTANT)[i % 2],
            content=line,
            created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
        )
        for i, line in enumerate(lines)
    ]
    return SummaryRequest(sample[:600], events, language, 4000)


def _prompt_text(request: SummaryRequest) -> str:
    return "".join(message["content"] for message in build_messages(request))


@pytest.mark.parametrize("text", [ENGLISH_SAMPLE, RUSSIAN_SAMPLE])
def test_the_estimate_is_within_a_fifth_of_cl100k_on_chat_text(text: str) -> None:
    assert estimate_tokens(text) == pytest.approx(CL100K_TOKENS[text], rel=0.2)


@pytest.mark.parametrize(("language", "sample"), [("en", ENGLISH_SAMPLE), ("ru", RUSSIAN_SAMPLE)])
def test_the_estimate_is_within_a_tenth_of_cl100k_on_whole_prompts(language: str, sample: str) -> None:
    prompt = _prompt_text(_request(language, sample))
    assert estimate_tokens(prompt) == pytest.approx(CL100K_PROMPT_TOKENS[language], rel=0.1)


def test_russian_costs_about_twice_what_english_does_per_character() -> None:
    per_char = {text: estimate_tokens(text) / len(text) for text in (ENGLISH_SAMPLE, RUSSIAN_SAMPLE)}
    assert 1.7 < per_char[RUSSIAN_SAMPLE] / per_char[ENGLISH_SAMPLE] < 2.5
    assert len(RUSSIAN_SAMPLE) / estimate_tokens(RUSSIAN_SAMPLE) < 2.5  # chars per token, as measured


@pytest.mark.parametrize(
    "request_",
    [
        _request("en", ENGLISH_SAMPLE),
        _request("ru", RUSSIAN_SAMPLE),
        SummaryRequest(None, [], "ru", 4000),
        SummaryRequest("Анна, 12 марта", [], "ru", 4000, repair_note="Carry 12 and Анна."),
    ],
)
def test_the_request_estimate_matches_the_prompt_the_summariser_builds(request_: SummaryRequest) -> None:
    estimate = estimate_request_tokens(request_)
    built = estimate_tokens(_prompt_text(request_))
    assert built <= estimate.prompt <= built * 1.05 + len(request_.events) + 3


def test_the_answer_estimate_is_a_summary_at_its_budget_within_max_tokens() -> None:
    english, russian = (
        estimate_request_tokens(_request(*lang)) for lang in (("en", ENGLISH_SAMPLE), ("ru", RUSSIAN_SAMPLE))
    )
    assert english.completion_max == max_completion_tokens(4000) == 2000  # 2 characters a token
    # Cyrillic at a token a letter (a small model's tokenizer), the Latin words of the sample at 2.
    assert max_completion_tokens(4000, RUSSIAN_SAMPLE) == russian.completion_max
    assert 0.9 * 4000 < russian.completion_max < 4000
    assert english.completion < russian.completion <= russian.completion_max
