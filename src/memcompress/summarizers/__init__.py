"""Summarisers behind one interface (:class:`Summarizer`): OpenAI-compatible LLMs or offline extraction."""

from memcompress.summarizers.base import (
    PermanentSummarizerError,
    RejectedOutput,
    RetryableSummarizerError,
    Summarizer,
    SummarizerError,
    SummaryRequest,
    SummaryResult,
)
from memcompress.summarizers.extractive import ExtractiveSummarizer
from memcompress.summarizers.openai_chat import OpenAISummarizer

__all__ = [
    "ExtractiveSummarizer",
    "OpenAISummarizer",
    "PermanentSummarizerError",
    "RejectedOutput",
    "RetryableSummarizerError",
    "Summarizer",
    "SummarizerError",
    "SummaryRequest",
    "SummaryResult",
]
