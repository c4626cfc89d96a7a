"""Summarisers behind one interface (:class:`memcompress.summarizers.base.Summarizer`): OpenAI-compatible
LLMs (:mod:`~memcompress.summarizers.openai_chat`) or offline extraction
(:mod:`~memcompress.summarizers.extractive`).

This package re-exports nothing: importing the interface loads no LLM client. Import a summariser from
its own module; openai loads only with :mod:`~memcompress.summarizers.openai_chat`."""
