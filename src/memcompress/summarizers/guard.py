"""The answer guard: nothing a summariser answers is trusted until it is checked against what it folds.

Pure and deterministic: no I/O, no clock, no randomness. Every verdict and reason here holds kinds and
counts only, never a value, so it may be logged and stored; the values themselves (for a repair request
or a patch) are user content.

What it guarantees (the fold's step 5 runs these on every answer, of every summariser):

* **Shape** (:func:`judge_answer`): an answer that is not a summary is rejected with one *check* name:
  ``prompt_echo`` (it repeats the prompt's own markers or instructions), ``markup`` (HTML/XML tags,
  script or style), ``code`` (fenced code, lines of program code), ``json`` (a JSON document),
  ``stack_trace``, ``invented_values`` (more than :data:`MAX_INVENTED` concrete values that appear in no
  input — dates, numbers, codes, names the model made up — and more than :data:`INVENTED_SHARE` of
  the answer's values), ``wrong_language`` (confidently in a
  language that is neither the profile's nor the one the user wrote in). Markup, code, JSON and
  stack traces are allowed when the folded events or the previous summary hold that kind themselves.
* **Carry** (:func:`missing_values`): every concrete value (number, date, time, code, e-mail, URL, name)
  of the previous summary, and of the folded events of the roles in :data:`CHECKED_ROLES`, must be in
  the new summary in some accepted form (:mod:`memcompress.summarizers.carry`), unless a later event of
  the same request supersedes it (:func:`superseded`: a correction).
* **Patch** (:func:`patch_summary`): what is still missing after the one repair request is put back
  deterministically: the source sentence that holds each missing value is appended verbatim (an
  event's sentence dated and attributed like the offline summariser's lines), within the character
  budget. What does not fit is a drop at the budget, counted, and its sentences are returned for the
  archive: never silent.

Why events of other roles are not value-checked: tool results and system text are machine output
(JSON payloads, search results) whose every number a summary cannot and should not carry; the user's
and the assistant's own words are what the memory is for. With ``RETENTION=archive`` (the default) the
folded events of every role are kept in the archive anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from memcompress.models import MemoryEvent
from memcompress.summarizers.carry import (
    AT_BUDGET_RATIO,
    CarryIndex,
    FoundValue,
    ValueKind,
    carried,
    carry_index,
    find_values,
)

CHECKED_ROLES = frozenset({"user", "assistant"})
MAX_INVENTED = 3  # an answer may hold this many values found in no input (computed dates, counts),
INVENTED_SHARE = 0.2  # or more, when they are at most this share of its values (a long honest summary)
SMALL_NUMBER = 12  # numbers up to this are never "invented" ("two children" written as 2)
DATE_SLACK = timedelta(days=31)  # a date this close to an event's date is a resolved relative date
MAX_PATCH_SENTENCE_CHARS = 240
SHRINK_RATIO = 0.5  # a summary under half the previous one's length gets a repair request
SMALL_SUMMARY_CHARS = 400  # ... once the previous one is at least this long

Check = str  # one of CHECKS
CHECKS = (
    "prompt_echo",
    "markup",
    "code",
    "json",
    "stack_trace",
    "invented_values",
    "wrong_language",
)

# --- shape ---------------------------------------------------------------------------------------

_ECHO = re.compile(
    r"</?(?:summary|transcript)>|\"(?:at|role)\"\s*:|current memory summary:|older messages to fold in:|"
    r"you maintain the long-term memory|answer with the summary text only|carry forward every concrete fact",
    re.IGNORECASE,
)
_MARKUP = re.compile(
    r"</?(?:script|style|html|head|body|div|span|iframe|svg|table|tr|td|ul|ol|li|p|br|a|img|meta|link|form|"
    r"input|button|h[1-6]|b|i|em|strong|code|pre)\b[^<>]{0,200}>|<\?xml|<!doctype|<!--",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*(?:```|~~~)", re.MULTILINE)
_CODE_LINE = re.compile(
    r"^\s*(?:def \w+\s*\(.*\)\s*(?:->.*)?:|class \w+(?:\(.*\))?:|import [\w.]+(?: as \w+)?$|"
    r"from [\w.]+ import |function\s*\w*\s*\(|(?:const|let|var) \w+\s*=|console\.\w+\(|print\(|"
    r"return\b.*;$|if\s*\(.*\)\s*\{|for\s*\(.*\)\s*\{|\}\s*else\s*\{|#include\s*<|public (?:static )?\w+)",
    re.MULTILINE,
)
_STACK_TRACE = re.compile(
    r"Traceback \(most recent call last\)|^\s+File \".*\", line \d+|^\s+at [\w.$<>]+\(.*\)\s*$|"
    r"Exception in thread \"",
    re.MULTILINE,
)
CODE_LINES = 2  # this many lines of program code make an answer code


def _is_json_document(text: str) -> bool:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return stripped.startswith(('{"', "[{", '["'))
    return True


def _shape_checks(text: str) -> dict[Check, bool]:
    return {
        "markup": bool(_MARKUP.search(text)),
        "code": bool(_FENCE.search(text)) or len(_CODE_LINE.findall(text)) >= CODE_LINES,
        "json": _is_json_document(text),
        "stack_trace": bool(_STACK_TRACE.search(text)),
    }


def _inputs_text(previous: str | None, events: Sequence[MemoryEvent]) -> str:
    return "\n".join([previous or "", *(event.content for event in events)])


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an answer is not a summary: a check name and a reason with counts only; for an answer cut off
    or over its budget, its draft (:func:`~memcompress.summarizers.base.draft_of`; user content)."""

    check: Check
    reason: str
    draft: str | None = None

    def __str__(self) -> str:
        return self.reason


def judge_answer(
    text: str,
    previous: str | None,
    events: Sequence[MemoryEvent],
    language: str,
) -> Rejection | None:
    """None when ``text`` looks like a summary of ``previous`` plus ``events`` in ``language``; else the
    first check it fails (in the order of :data:`CHECKS`)."""
    inputs = _inputs_text(previous, events)
    if _ECHO.search(text) and not _ECHO.search(inputs):
        return Rejection("prompt_echo", "the answer repeats the prompt's markers or instructions")
    allowed = _shape_checks(inputs)
    for check, found in _shape_checks(text).items():
        if found and not allowed[check]:
            return Rejection(
                check, f"the answer holds {check.replace('_', ' ')}, which the folded text does not"
            )
    invented, values = invented_values(text, previous, events)
    if invented > MAX_INVENTED and invented > INVENTED_SHARE * values:
        return Rejection(
            "invented_values", f"the answer holds {invented} values that appear in no folded text or summary"
        )
    found_language = _wrong_language(text, language, events)
    if found_language is not None:
        return Rejection(
            "wrong_language",
            f"the answer is in {found_language!r}, not in the profile's language {language!r} "
            "nor the user's own",
        )
    return None


def _wrong_language(text: str, language: str, events: Sequence[MemoryEvent]) -> str | None:
    from memcompress.summarizers.language import detect_language, wrong_language

    expected = {language}
    users = " ".join(event.content for event in events if event.role == "user")
    spoken = detect_language(users) if users else None
    if spoken is not None:
        expected.add(spoken[0])
    return wrong_language(text, expected)


def shape_repair_instruction(rejection: Rejection, language: str) -> str:
    """The repair request for an answer that is not a summary (names no value)."""
    return (
        f"Your last answer was rejected: {rejection.reason}. Answer again with the updated memory summary "
        f"only, as plain prose in the language with code {json.dumps(language)}: no code, markup or "
        "JSON, nothing that is not in the current summary or the messages, no repetition of these "
        "instructions."
    )


def usable_draft(
    rejection: Rejection, previous: str | None, events: Sequence[MemoryEvent], language: str
) -> str | None:
    """The draft of a rejected answer (cut off at ``max_tokens``, or over the budget) when it passes the
    shape checks (:func:`judge_answer`); else None. The caller checks what it carries and patches in
    what it misses: a draft is never stored as it is."""
    draft = rejection.draft
    if draft and judge_answer(draft, previous, events, language) is None:
        return draft
    return None


# --- invented values -----------------------------------------------------------------------------


def _event_dates(events: Iterable[MemoryEvent]) -> list[date]:
    return [event.created_at.date() for event in events]


def invented_values(text: str, previous: str | None, events: Sequence[MemoryEvent]) -> tuple[int, int]:
    """How many distinct values of ``text`` appear in no input, and how many distinct values it has: not in the previous summary, not in an
    event's text, not an event's date (nor within :data:`DATE_SLACK` of one: a resolved "tomorrow"),
    not a small number (at most :data:`SMALL_NUMBER`); a name counts when no word of the inputs,
    in any case, starts like it."""
    # The transcript dates every message: its dates, years and times are input too.
    stamps = " ".join(f"on {event.created_at:%Y-%m-%d} at {event.created_at:%H:%M}." for event in events)
    inputs = _inputs_text(previous, events) + "\n" + stamps
    dates = _event_dates(events)
    words = {word for word in re.findall(r"[^\W\d_]{2,}", inputs)}
    index = carry_index(inputs + "\n" + " ".join(word[:1].upper() + word[1:] for word in words))
    seen: set[tuple[ValueKind, str]] = set()
    invented = 0
    for found in find_values(text):
        key = (found.kind, found.value)
        if key in seen:
            continue
        seen.add(key)
        if carried(found.kind, found.value, index) or _explained(found, dates):
            continue
        invented += 1
    return invented, len(seen)


def _explained(found: FoundValue, dates: Sequence[date]) -> bool:
    if found.kind == "number":
        try:
            return float(found.value) <= SMALL_NUMBER
        except ValueError:
            return False
    if found.kind == "date":
        try:
            day = date.fromisoformat(found.value)
        except ValueError:
            return False
        return any(abs(day - event_day) <= DATE_SLACK for event_day in dates)
    return False


# --- carry ---------------------------------------------------------------------------------------

PREVIOUS = -1  # Required.source of a value of the previous summary


@dataclass(frozen=True, slots=True)
class Required:
    """A value the new summary must carry, and where it came from (user content: never log it)."""

    kind: ValueKind
    value: str
    surface: str
    source: int  # PREVIOUS, or the index of the event in the request
    sentence: str  # the sentence that holds it, as a patch would append it


_SENTENCE = re.compile(r"[^\n.!?…]*(?:[.!?…]+|\n|$)")


def _sentence_at(text: str, surface: str, start: int) -> str:
    """The sentence of ``text`` around the value written ``surface`` near ``start``, at most
    :data:`MAX_PATCH_SENTENCE_CHARS` long (a window around the value when the sentence is longer)."""
    at = text.find(surface, max(start - 8, 0))
    if at < 0:
        at = text.find(surface)
    at = max(at, 0)
    boundaries = [text.rfind(mark, 0, at) for mark in ("\n", ". ", "! ", "? ", "… ")]
    begin = max((i + (1 if text[i] == "\n" else 2) for i in boundaries if i >= 0), default=0)
    ends = [i for i in (text.find(mark, at + len(surface)) for mark in ("\n", ". ", "! ", "? ")) if i >= 0]
    end = min(ends) + 1 if ends else len(text)
    sentence = text[begin:end].strip()
    if len(sentence) <= MAX_PATCH_SENTENCE_CHARS:
        return sentence
    offset = max(at - begin - MAX_PATCH_SENTENCE_CHARS // 3, 0)
    window = text[begin + offset : begin + offset + MAX_PATCH_SENTENCE_CHARS - 2].strip()
    return f"…{window}…"


def required_values(previous: str | None, events: Sequence[MemoryEvent]) -> list[Required]:
    """The values the new summary must carry, once each, in order: the previous summary's, then those of
    the events of :data:`CHECKED_ROLES` in the request's order."""
    sources: list[tuple[int, str]] = [(PREVIOUS, previous or "")]
    sources += [(i, e.content) for i, e in enumerate(events) if e.role in CHECKED_ROLES]
    seen: set[tuple[ValueKind, str]] = set()
    required: list[Required] = []
    for source, text in sources:
        for found in find_values(text):
            key = (found.kind, found.value)
            if key in seen:
                continue
            seen.add(key)
            sentence = _sentence_at(text, found.surface, found.start)
            required.append(Required(found.kind, found.value, found.surface, source, sentence))
    return required


# A later statement that corrects an earlier one.
_CORRECTION = re.compile(
    r"\b(?:now|new|changed?|moved|moving|relocated|instead|actually|correction|updated?|no longer|"
    r"not any ?more|switched|replaced|теперь|нов\w*|сменил\w*|поменял\w*|переехал\w*|переезжа\w*|вместо|"
    r"на самом деле|исправ\w*|изменил\w*|больше не|уже не|обновил\w*)\b",
    re.IGNORECASE,
)
_CONTENT_WORD = re.compile(r"[^\W\d_]{4,}")
_STEM = 5
_NOT_TOPICS = frozenset(
    {
        *[
            "this",
            "that",
            "with",
            "have",
            "from",
            "your",
            "about",
            "what",
            "when",
            "will",
            "would",
            "there",
            "their",
            "they",
            "them",
            "been",
            "were",
            "than",
            "then",
            "just",
            "also",
            "only",
            "very",
            "into",
            "over",
            "more",
            "some",
            "such",
            "like",
            "user",
            "assistant",
        ],
        *[
            "пользователь",
            "ассистент",
            "это",
            "что",
            "как",
            "для",
            "его",
            "она",
            "они",
            "был",
            "была",
            "были",
            "есть",
            "очень",
            "тоже",
            "также",
        ],
    }
)


def _topics(sentence: str) -> set[str]:
    words = (word.casefold() for word in _CONTENT_WORD.findall(sentence))
    return {word[:_STEM] for word in words if word not in _NOT_TOPICS and not _CORRECTION.fullmatch(word)}


def superseded(
    value: Required, events: Sequence[MemoryEvent], new_index: CarryIndex, corrections: Sequence[Correction]
) -> bool:
    """Whether a later event of the request corrects ``value``: a sentence with a correction word ("now",
    "moved", "теперь", "вместо", ...) that holds another value of the same kind which the new summary
    carries, and that either names ``value`` itself ("moved from Moscow to Berlin") or shares a topic
    word with the sentence ``value`` came from ("my budget is 1500" → "my budget is now 2000")."""
    topics = _topics(value.sentence)
    for correction in corrections:
        if correction.source <= value.source:
            continue
        others = [v for v in correction.values if v.kind == value.kind and v.value != value.value]
        if not any(carried(v.kind, v.value, new_index) for v in others):
            continue
        names_it = any(v.kind == value.kind and v.value == value.value for v in correction.values)
        if names_it or topics & correction.topics:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Correction:
    """A sentence of an event that states a correction, with its values and topic words."""

    source: int
    values: list[FoundValue]
    topics: set[str]


def corrections(events: Sequence[MemoryEvent]) -> list[Correction]:
    found: list[Correction] = []
    for i, event in enumerate(events):
        if event.role not in CHECKED_ROLES or not _CORRECTION.search(event.content):
            continue
        for match in _SENTENCE.finditer(event.content):
            sentence = match.group()
            if sentence.strip() and _CORRECTION.search(sentence):
                found.append(Correction(i, find_values(sentence), _topics(sentence)))
    return found


def missing_values(required: Sequence[Required], events: Sequence[MemoryEvent], new: str) -> list[Required]:
    """The required values ``new`` does not carry and no later event supersedes, in order."""
    index = carry_index(new)
    absent = [value for value in required if not carried(value.kind, value.value, index)]
    if not absent:
        return []
    stated = corrections(events)
    return [value for value in absent if not superseded(value, events, index, stated)]


def carry_repair_instruction(missing: Sequence[Required], shrunk: bool) -> str:
    """The repair request for an answer that dropped values (or shrank): it lists them for the model."""
    listed = ", ".join(json.dumps(value.surface, ensure_ascii=False) for value in missing).replace(
        "<", "\\u003c"
    )
    parts = []
    if missing:
        parts.append(
            "Your last answer dropped values that the current memory summary or the messages hold: "
            f"{listed}. Write the updated summary again and carry every one of these values, written "
            "exactly as here, together with the other facts."
        )
    if shrunk:
        parts.append("Your last answer left out much of the current summary: carry all of its facts forward.")
    parts.append("If space is short, shorten the wording, not the facts.")
    return " ".join(parts)


def shrunk(previous: str | None, new: str) -> bool:
    before = len((previous or "").strip())
    return before >= SMALL_SUMMARY_CHARS and len(new.strip()) < SHRINK_RATIO * before


# --- patch ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Patched:
    """A summary with the missing values' sentences appended: how many values that put back, how many
    did not fit the budget (drops at the budget), and the lines taken out or left out (for the
    archive): the answer's sentences that gave way to values, and the values' sentences that did not
    fit."""

    text: str
    patched: int
    dropped: int
    unfit: tuple[str, ...] = ()


def _patch_line(value: Required, events: Sequence[MemoryEvent]) -> str:
    if value.source == PREVIOUS:
        return value.sentence
    event = events[value.source]
    return f"- {event.created_at:%Y-%m-%d} ({event.role}): {value.sentence}"


def patch_summary(
    text: str, missing: Sequence[Required], events: Sequence[MemoryEvent], max_chars: int
) -> Patched:
    """``text`` with the sentence of each missing value appended once, oldest source first, within
    ``max_chars``. A value's sentence that does not fit first takes the room of the answer's sentences
    that hold no concrete value (the first of them first): a value outranks prose, as in
    :func:`fit_summary`. Values whose sentence still does not fit are counted as dropped; every
    sentence taken out or left out is returned for the archive."""
    units = _units(text, max_chars)
    prose = [i for i, unit in enumerate(units) if not find_values(unit)]
    removed: set[int] = set()
    lines: list[str] = []
    unfit: list[str] = []
    patched = dropped = 0
    size = len(text)
    for value in missing:
        line = _patch_line(value, events)
        if line in lines:
            patched += 1
            continue
        while line not in unfit and size + 1 + len(line) > max_chars and prose:
            i = prose.pop(0)
            removed.add(i)
            size = sum(len(unit) + 1 for j, unit in enumerate(units) if j not in removed) - 1
            size += sum(len(kept) + 1 for kept in lines)
        if line in unfit or size + 1 + len(line) > max_chars:
            dropped += 1
            unfit += [] if line in unfit else [line]
        else:
            lines.append(line)
            size += 1 + len(line)
            patched += 1
    if removed:
        text = "\n".join(unit for i, unit in enumerate(units) if i not in removed)
    given_way = [unit for i, unit in enumerate(units) if i in removed]
    return Patched("\n".join(part for part in (text, *lines) if part), patched, dropped, (*given_way, *unfit))


def at_budget(text: str, max_chars: int) -> bool:
    return len(text.strip()) >= AT_BUDGET_RATIO * max_chars


# --- a summary over its budget -------------------------------------------------------------------

FIT_RATIO = 0.75  # a summary over its budget is shortened to this share of it: room for new facts
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?…])\s+")


def fit_summary(text: str, max_chars: int) -> tuple[str, list[str]]:
    """``text`` shortened to at most ``max_chars`` characters by removing whole lines (sentences, for a
    paragraph longer than a quarter of the budget), the least informative first: those with the fewest
    concrete values, the oldest first among equals. Returns what is kept and the removed lines, in
    their order, for the archive: nothing is dropped silently."""
    units = _units(text, max_chars)
    size = sum(len(unit) + 1 for unit in units) - 1
    if size <= max_chars:
        return text, []
    ranked = sorted(range(len(units)), key=lambda i: (len(find_values(units[i])), i))
    removed: set[int] = set()
    for i in ranked:
        if size <= max_chars:
            break
        removed.add(i)
        size -= len(units[i]) + 1
    kept = "\n".join(unit for i, unit in enumerate(units) if i not in removed)
    return kept, [unit for i, unit in enumerate(units) if i in removed]


def _units(text: str, max_chars: int) -> list[str]:
    """The lines of ``text``, a paragraph longer than a quarter of ``max_chars`` split into sentences."""
    units: list[str] = []
    for line in text.splitlines():
        if line.strip():
            units.extend(
                _SENTENCE_SPLIT.split(line.strip()) if len(line) > max_chars // 4 else [line.strip()]
            )
    return units
