"""An offline, deterministic summariser: no network, the default when no LLM is configured.

It keeps the lines of the previous summary and adds the most informative sentences of the folded
events, each dated and attributed, within the character budget. Once the budget is full, the previous
lines compete with the new sentences on the same score and the least informative ones go: the summary
stays at its budget and keeps the best facts, old or new (the carry guard records such drops). "Informative" is scored from what a
memory needs: numbers and dates, names, first-person statements of preference or fact, and the user's
own words over the assistant's. Ties go to the earlier sentence, so the output is reproducible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memcompress.models import MemoryEvent, Role
from memcompress.summarizers.base import SummaryRequest, SummaryResult

MAX_SENTENCE_CHARS = 240
MIN_SENTENCE_CHARS = 12
# A sentence with no signal at all (no number, name, first person or preference) is not kept.
MIN_SCORE = 2.0

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_NUMBER = re.compile(r"\d")
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-ZА-ЯЁ][a-zа-яё]{1,}")
_FIRST_PERSON = re.compile(
    r"\b(i|i'm|i am|my|mine|me|we|our|я|мне|меня|мой|моя|моё|мои|мы|наш|ich|mein|meine|mir|je|mon|ma|mes|yo|mi)\b",
    re.IGNORECASE,
)
_PREFERENCE = re.compile(
    r"\b(like|love|prefer|hate|dislike|enjoy|favou?rite|allergic|always|never|birthday|name is|"
    r"люблю|нравится|предпочитаю|ненавижу|аллерги|всегда|никогда|день рождения|зовут|"
    r"mag|liebe|hasse|lieblings|aime|préfère|déteste|gusta|encanta|odio)",
    re.IGNORECASE,
)
_SMALL_TALK = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|ok|okay|sure|bye|привет|спасибо|пока|хорошо|ладно|hallo|danke|merci)\b"
    r"[\s!.,]*$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class _Candidate:
    score: float
    position: int
    line: str


def _sentences(text: str) -> list[str]:
    parts = (part.strip() for part in _SENTENCE_END.split(text))
    return [
        p if len(p) <= MAX_SENTENCE_CHARS else p[: MAX_SENTENCE_CHARS - 1].rstrip() + "…" for p in parts if p
    ]


# The user's own words first; tool output, system text and other roles count least.
ROLE_WEIGHTS: dict[str, float] = {Role.USER: 1.5, Role.ASSISTANT: 0.6, Role.SYSTEM: 0.4}
OTHER_ROLE_WEIGHT = 0.4


def score_sentence(sentence: str, role: str) -> float:
    if len(sentence) < MIN_SENTENCE_CHARS or _SMALL_TALK.match(sentence):
        return 0.0
    score = 1.0
    score += 3.0 if _NUMBER.search(sentence) else 0.0
    score += min(len(_NAME.findall(sentence)), 3) * 1.5
    score += 2.0 if _FIRST_PERSON.search(sentence) else 0.0
    score += 3.0 if _PREFERENCE.search(sentence) else 0.0
    score -= 1.5 if sentence.endswith("?") else 0.0
    weight = ROLE_WEIGHTS.get(role, OTHER_ROLE_WEIGHT)
    return max(score, 0.0) * weight


def _fact_line(event: MemoryEvent, sentence: str) -> str:
    return f"- {event.created_at:%Y-%m-%d} ({event.role}): {sentence}"


_FACT_LINE = re.compile(r"^- \d{4}-\d{2}-\d{2} \(([^)]*)\): (.*)$")


def _line_score(line: str) -> float:
    """A previous summary's line, scored as the sentence it holds (a line of another format, say an
    LLM's or the app's summary, as the user's own words)."""
    found = _FACT_LINE.match(line)
    return score_sentence(found.group(2), found.group(1)) if found else score_sentence(line, Role.USER)


class ExtractiveSummarizer:
    name = "extractive"
    model: str | None = None

    async def summarize(self, request: SummaryRequest) -> SummaryResult:
        kept = [line for line in (request.previous_summary or "").splitlines() if line.strip()]

        seen = {line.split("): ", 1)[-1].casefold() for line in kept}
        candidates: list[_Candidate] = []
        for event in request.events:
            for sentence in _sentences(event.content):
                if sentence.casefold() in seen:
                    continue
                seen.add(sentence.casefold())
                score = score_sentence(sentence, event.role)
                if score >= MIN_SCORE:
                    candidates.append(_Candidate(score, len(candidates), _fact_line(event, sentence)))

        # The previous lines first in the order (positions before every new sentence), then by score;
        # when everything fits, all of them stay. Ties go to the newer sentence: a later message
        # (a correction) wins over an earlier one of the same weight.
        previous = [_Candidate(_line_score(line), index - len(kept), line) for index, line in enumerate(kept)]
        pool = previous + [_Candidate(c.score, c.position, c.line) for c in candidates]
        if sum(len(c.line) + 1 for c in pool) <= request.max_chars:
            chosen = pool
        else:
            chosen, used = [], 0
            for candidate in sorted(pool, key=lambda c: (-c.score, -c.position)):
                if used + len(candidate.line) + 1 <= request.max_chars:
                    chosen.append(candidate)
                    used += len(candidate.line) + 1
        text = "\n".join(c.line for c in sorted(chosen, key=lambda c: c.position)).strip()
        if not text:
            # Nothing worth keeping (only small talk): say so rather than store an empty summary.
            first, last = request.events[0], request.events[-1]
            text = f"- {first.created_at:%Y-%m-%d}..{last.created_at:%Y-%m-%d}: small talk only."
        return SummaryResult(text=text, requests=0)  # no LLM request

    async def aclose(self) -> None:
        return None
