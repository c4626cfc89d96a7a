"""What a summariser that keeps every value answers, for test stubs: the folded texts' concrete values
listed once each, as the answer guard (:mod:`memcompress.summarizers.guard`) reads them."""

from __future__ import annotations

from collections.abc import Iterable

from memcompress.summarizers.carry import find_values


def carried_values(texts: Iterable[str]) -> str:
    """The values of ``texts`` as written there, once each, in order, joined by ``"; "``."""
    seen: list[str] = []
    for text in texts:
        for value in find_values(text):
            if value.surface not in seen:
                seen.append(value.surface)
    return "; ".join(seen)


def honest(line: str, texts: Iterable[str]) -> str:
    """``line`` followed by the values of ``texts`` (in brackets), or ``line`` alone when they hold none."""
    values = carried_values(texts)
    return f"{line} [{values}]" if values else line
