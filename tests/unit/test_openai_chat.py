"""How the OpenAI-compatible summariser reads what a real server answers: llama-cpp-python's server
(0.3.36) as it answered on this machine (tests/integration/test_real_llm.py runs against it)."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime

import openai
import pytest

from memcompress.models import MemoryEvent
from memcompress.summarizers.base import (
    ContextOverflow,
    RejectedOutput,
    SummaryRequest,
    max_completion_tokens,
)
from memcompress.summarizers.openai_chat import OpenAISummarizer, context_overflow

# llama-cpp-python's server, for a prompt of 9,031 tokens and max_tokens 10 with --n_ctx 8192.
LLAMA_CPP_OVERFLOW = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens. However, you requested 9041 tokens "
        "(9031 in the messages, 10 in the completion). Please reduce the length of the messages or "
        "completion.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
# The openai client's own HTTP library: httpx, or httpx2 from openai 3 on.
httpx = importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0])
REQUEST = SummaryRequest(
    None,
    [MemoryEvent(user_id="u1", role="user", content="My door code is 4471.", created_at=datetime.now(UTC))],
    "en",
    4000,
)


def test_llama_cpp_servers_overflow_is_a_context_overflow_with_its_sizes() -> None:
    response = httpx.Response(400, json=LLAMA_CPP_OVERFLOW, request=httpx.Request("POST", "http://x/v1"))
    error = openai.BadRequestError(
        LLAMA_CPP_OVERFLOW["error"]["message"], response=response, body=LLAMA_CPP_OVERFLOW
    )

    overflow = context_overflow(error)

    assert overflow is not None
    assert (overflow.context_tokens, overflow.requested_tokens) == (8192, 9041)


def _summarizer(
    finish_reason: str, completion_tokens: int, content: str = "The door code is 4471."
) -> OpenAISummarizer:
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["max_tokens"] == max_completion_tokens(REQUEST.max_chars)
        return httpx.Response(
            200,
            json={
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": "smollm2-135m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": 8141,
                    "completion_tokens": completion_tokens,
                    "total_tokens": 8141 + completion_tokens,
                },
            },
        )

    summarizer = OpenAISummarizer(model="smollm2-135m", base_url="http://127.0.0.1:9/v1")
    summarizer._client = openai.AsyncOpenAI(
        base_url="http://127.0.0.1:9/v1",
        api_key="any",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
    )
    return summarizer


async def test_an_answer_cut_short_by_a_full_context_is_a_context_overflow() -> None:
    # llama-cpp-python's server shortens max_tokens to what its context has left, without an error:
    # 8141 prompt tokens in a context of 8192 leave 51 of the tokens asked for.
    summarizer = _summarizer("length", 51)

    with pytest.raises(ContextOverflow) as overflow:
        await summarizer.summarize(REQUEST)

    assert (overflow.value.context_tokens, overflow.value.requested_tokens) == (
        8192,
        8141 + max_completion_tokens(REQUEST.max_chars),
    )
    assert (overflow.value.prompt_tokens, overflow.value.completion_tokens) == (8141, 51)
    await summarizer.aclose()


async def test_an_answer_that_used_all_its_max_tokens_is_incomplete() -> None:
    summarizer = _summarizer("length", max_completion_tokens(REQUEST.max_chars))

    with pytest.raises(RejectedOutput) as rejected:
        await summarizer.summarize(REQUEST)

    assert not isinstance(rejected.value, ContextOverflow)
    assert rejected.value.check == "incomplete"
    await summarizer.aclose()


async def test_an_incomplete_answer_carries_its_complete_sentences_as_a_draft() -> None:
    cut = "The door code is 4471. The user plans to"
    summarizer = _summarizer("length", max_completion_tokens(REQUEST.max_chars), cut)

    with pytest.raises(RejectedOutput) as rejected:
        await summarizer.summarize(REQUEST)

    assert (rejected.value.check, rejected.value.draft) == ("incomplete", "The door code is 4471.")
    await summarizer.aclose()


def test_max_tokens_lets_an_answer_in_cyrillic_reach_the_budget_at_a_token_a_letter() -> None:
    assert max_completion_tokens(1000) == max_completion_tokens(1000, "My door code is 4471.") == 500
    assert max_completion_tokens(1000, "Код двери 4471.") > 800  # 11 Cyrillic letters of 13
    assert max_completion_tokens(1000, "Кодовыйзамок") == 1000
