"""A connection error of the LLM names the endpoint it asked (redacted): an operator reading a dead
letter or a log line sees which URL did not answer."""

from __future__ import annotations

import pytest

from memcompress.bootstrap import build_summarizer
from memcompress.embedded import free_port
from memcompress.models import MemoryEvent
from memcompress.settings import Settings
from memcompress.summarizers.base import RetryableSummarizerError, SummaryRequest


async def test_no_answer_from_the_llm_names_its_redacted_endpoint() -> None:
    port = free_port()  # nothing listens there
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        llm_base_url=f"http://user:hunter2@127.0.0.1:{port}/v1?api_key=s3cret",
        llm_max_retries=0,
        llm_timeout_s=5,
    )
    summarizer = build_summarizer(settings)
    request = SummaryRequest(None, [MemoryEvent(user_id="u", role="user", content="hello")], "en", 1000)
    try:
        with pytest.raises(RetryableSummarizerError) as raised:
            await summarizer.summarize(request)
    finally:
        await summarizer.aclose()
    message = str(raised.value)
    assert message == f"APIConnectionError: no answer from the LLM at http://user:***@127.0.0.1:{port}/v1"
    assert "hunter2" not in message and "s3cret" not in message
    assert raised.value.retryable and raised.value.requests >= 1
