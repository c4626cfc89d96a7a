"""The carry guard's building blocks: does a new summary still carry what the previous one held?

Everything here is pure and deterministic: no I/O, no clock, no randomness. The same texts always
give the same values, the same verdict and the same reason. Other honest spellings of a value (dates
and times in words, scaled numbers, national phone numbers, declined and transliterated names) are
read by :mod:`memcompress.summarizers.value_forms`, which says what it accepts and why; it loads
pymorphy3's Russian dictionary (about 85 ms and 29 MB) once per process, at the first name it matches.

What it guarantees
------------------
* :func:`extract_values` finds the concrete values of a text (numbers, dates, times, codes, e-mail
  addresses, URLs, proper names) by the rules below, normalised so that two spellings of one value compare equal.
* :func:`check_carry` says which kinds of the previous summary's values the new summary lost, and how
  many of each, whether it shrank, and whether it is at its character budget. Its :class:`CarryVerdict`
  (fields, ``repr``, ``str`` and ``reason``) holds counts and lengths only, never a value, so it may be
  logged and stored.
* The values themselves (user content, never logged) are listed for the model by
  :func:`memcompress.summarizers.guard.missing_values` and ``carry_repair_instruction``.

Extraction rules
----------------
The text is first put in Unicode NFC and every Unicode decimal digit becomes its ASCII digit. Then
passes run in this order; each pass claims its spans, and later passes do not see claimed text:

1. Markup, which is no value: numbered list markers (``1.`` or ``2)`` at the start of a line) and
   the offline summariser's line prefixes, ``- 2026-01-02 (user):`` and ``- 2026-01-02..2026-01-05:``.
   Their dates say when something was said, not what: a summary that merges such lines need not
   repeat them.
2. ``url``: ``http://``, ``https://`` or ``www.`` up to whitespace, a quote or a bracket; trailing
   ``.,;:!?`` and one trailing ``/`` are not part of it. A bare domain (``example.com``) is no URL.
3. ``email``: ``local@domain.tld``.
4. ``date``: day, month and year all numeric: ``YYYY-MM-DD`` (also with ``/`` or ``.``, optionally
   followed by an ISO time, which is ignored) and day-first ``DD.MM.YYYY``, ``DD/MM/YYYY``,
   ``DD-MM-YYYY`` (one or two digits for day and month). A real calendar date is normalised to
   ``YYYY-MM-DD``. Day-first is always assumed, so ``03/12/2026`` is 3 December. A date-shaped
   text that is no calendar date (``31.02.2026``) gives its three parts as numbers. Then dates in
   words, English and Russian (``12 марта 2026 года``, ``March 12, 2026``, ``12 March``): with a
   year ``YYYY-MM-DD``, without one ``--MM-DD`` (value_forms rule 1).
   ``time``: ``14:30``, ``2:30 PM``, ``2pm`` become ``HH:MM`` in 24 hours (value_forms rule 2).
5. ``code``, phone numbers: an optional ``+``, then digits in groups separated by single spaces,
   dots, hyphens or a parenthesised area code, 7 to 15 digits in all, and either a leading ``+``, a
   ``(`` or at least two hyphens. Normalised to ``+`` (when present) and the digits.
6. ``code``, identifiers: a token of word characters joined by ``-``, ``/``, ``.``, ``#`` or ``_``
   that holds at least one letter and one digit (``ORD-4471``, ``A1B2``, ``COVID-19``, ``x86_64``),
   casefolded. Before this pass, a number with a scale (``1,5 млн``, ``1.5 million``, ``12.5k``,
   ``12,5 тыс.``) becomes the ``number`` it names (``1500000``, value_forms rule 3). A number followed by a lowercase word, with or without a hyphen (``5km``, ``3rd``,
   ``10-й``, ``1990-х``), is not a code: it is the number.
7. ``number``: digit groups joined by single separators. Spaces (also no-break and thin spaces) and
   apostrophes only ever group thousands. A ``.`` or ``,`` is the decimal point when it is the last
   separator and differs from the ones before it (``1,500.25``, ``1 500,25``), or when it is the only
   separator and is not followed by exactly three digits, or the integer part is ``0`` (``3.5``,
   ``3,5``, ``0,125``); otherwise it groups thousands (``1,500``, ``1.500.000``, and so ``2.500`` is
   2500). Grouped digits must be groups of three after a first group of one to three. Normalised to
   plain digits with ``.`` as the decimal point, no leading zeros, no trailing fractional zeros
   (``1 500``, ``1,500`` and ``1500`` are ``1500``; ``3,50`` is ``3.5``). Runs that fit none of these
   are split: at spaces first, then at every separator; dotted runs of three or more groups that are
   no grouping are codes (versions, IP addresses). Signs, currency and percent marks are ignored.
   A number inside a date, e-mail, URL or code is not reported as a number.
8. ``name``: a word of letters (``str.isalpha``), at least two long, first letter uppercase and the
   rest lowercase (``str.isupper``/``str.islower``, so Latin, Cyrillic, Greek, Armenian and other
   cased scripts), that does not start a sentence and is not in the stop list (``I``, ``User``,
   ``Assistant``, titles like ``Mr``/``Dr``, English and Russian months and weekdays in their
   common forms, ``Пользователь`` and ``Ассистент`` in every case). A word starts a sentence when the
   text between it and the previous boundary (the start of the text, a newline, or one of
   ``.!?…:``) is only whitespace, quotes, brackets, Markdown markup or list markers (``-``, ``*``,
   ``+``, ``•``, ``>``, ``#``, ``1)``). So the first word after the offline summariser's
   ``- 2026-01-02 (user): `` prefix starts a sentence, and so does a word after a colon.
   Apostrophes and hyphens split words: ``Anna's`` gives ``Anna``, ``Jean-Luc`` gives ``Jean`` and
   ``Luc``. Normalised by casefolding and writing ``ё`` as ``е``.

Every value is casefolded. Scripts without case (Chinese, Arabic, ...) have no names here.

Matching rules (:func:`carried`)
--------------------------------
* number: the value is any number of the new text, including the digit runs inside its dates, codes,
  e-mail addresses and URLs (``12`` is carried by ``2026-03-12``).
  A scaled number's number as written is carried too (``1.5`` by ``1.5 million``).
* time, email, url: the same normalised value of the same kind is in the new text.
* date: the same date, or one of the two has no year and the month and day agree (``12 марта``
  carries ``2026-03-12`` and the other way round); ``13 марта`` carries neither.
* code: the same code, or the same phone number with and without its trunk prefix
  (``8 915 123-45-67`` and ``+7 915 123-45-67``, value_forms rule 4).
* name: some word of the new text that starts with an uppercase letter (anywhere, sentence starts
  included) has the same first ``max(3, len - 2)`` characters as the name (all of them when the name
  is shorter than three), after the same normalisation, and is at most four characters longer. This
  lets declension and possessives through: ``Анна`` is carried by ``Анной`` and ``Анну``, ``Пётр`` by
  ``Петра``, ``Anna`` by ``Anna's``. Or it shares a key with the name (value_forms rule 5): a Russian
  lemma (``Лев`` is carried by ``Льва``, ``Орёл`` by ``Орле``) or a Latin transliteration (``Anna`` by
  ``Анной``, ``Анна`` by ``Anna``).

Check rules (:func:`check_carry`)
---------------------------------
Lengths are of the stripped texts. ``dropped`` counts, per kind, the previous summary's values that
the new one does not carry (kinds with none are left out). ``shrunk`` is true when the previous
summary had at least ``small_summary_chars`` characters and the new one has fewer than
``min_keep_ratio`` times as many. ``at_budget`` is true when the new summary has at least 90% of
``max_chars``. ``ok`` is true when nothing was dropped and it did not shrink, except that drops are
allowed (still counted) when the new summary is at its budget.

Prompt truncation
-----------------
:func:`estimate_prompt_tokens` estimates what a prompt costs in tokens, per character, so that it is
right for Cyrillic as well as Latin text, erring low; :func:`prompt_was_truncated` compares it with the
tokens the server reports having read. :func:`estimate_tokens` is the central estimate that budgets and
cost estimates use.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from memcompress.summarizers import value_forms

ValueKind = Literal["number", "date", "time", "code", "email", "url", "name"]
KINDS: tuple[ValueKind, ...] = ("number", "date", "time", "code", "email", "url", "name")

AT_BUDGET_RATIO = 0.9
# A name is carried by a word that starts like it and is at most this much longer (declension).
MAX_NAME_SUFFIX = 4

# --- extraction ----------------------------------------------------------------------------------

_MASK = "\x00"  # claimed text: not a word character, a digit, a space or a separator

_OFFLINE_PREFIX = re.compile(
    r"^[ \t]*- (\d{4}-\d{2}-\d{2} \((?:user|assistant|system)\)|\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2}):",
    re.MULTILINE,
)
_LIST_NUMBER = re.compile(r"^[ \t]*(?:[-*+•>][ \t]*)?(\d{1,3}[.)])(?=\s)", re.MULTILINE)
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'«»“”‘’()\[\]{}" + _MASK + r"]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?"
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_ISO_TIME = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
_DATE_START = r"(?<![\w-])(?<!\d[./])"
_DATE_END = r"(?!\w)(?![./-]\d)"
_ISO_DATE = re.compile(_DATE_START + r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})" + _ISO_TIME + _DATE_END)
_DAY_FIRST_DATE = re.compile(_DATE_START + r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4})" + _DATE_END)
_PHONE = re.compile(r"(?<![\w+-])\+?(?:\(\d{1,5}\)|\d)(?:[ .-]?(?:\(\d{1,5}\)|\d))+(?!\w)")
_PHONE_DIGITS = (7, 15)
_TOKEN = re.compile(r"(?<!\w)\w+(?:[-/.#]\w+)*")
_NUMBER_WITH_UNIT = re.compile(r"\d+(?:[.,]\d+)?-?([^\W\d_]+)")
_NUMBER = re.compile(r"\d+(?:[ \u00a0\u2009\u202f'’.,]\d+)*")
_SEPARATOR = re.compile(r"[^\d]")
_SPACE_LIKE = re.compile(r"[ \u00a0\u2009\u202f'’]")
_NUMBER_WITHOUT_SPACES = re.compile(r"\d+(?:[.,]\d+)*")
_DIGIT_RUN = re.compile(r"\d+")
_WORD = re.compile(r"[^\W\d_]+")

_SENTENCE_BOUNDARIES = "\n.!?…:"
_SENTENCE_LEAD = re.compile(r"[\s\"'«»“”„‘’()\[\]{}*_~`>#|•·‣◦▪●■□○\-–—+]*(?:\d{1,3}\)[\s\"'«“„‘(\[{*_~`]*)?")


def _words(text: str) -> list[str]:
    return text.split()


def _forms(stems: Iterable[str], endings: Iterable[str]) -> set[str]:
    endings = tuple(endings)
    return {stem + ending for stem in stems for ending in endings}


_STOP_NAMES = frozenset(
    {
        *_words("i user users assistant system mr mrs ms dr prof sir madam"),
        *value_forms.MONTH_WORDS,  # English and Russian, every case, ё written as е
        *_words("monday tuesday wednesday thursday friday saturday sunday"),
        *_words("mon tue tues wed thu thur thurs fri sat sun"),
        # Russian, with ё written as е like every name.
        *_forms(("понедельник", "вторник", "четверг"), ("", "а", "у", "е", "ом", "и", "ов", "ам")),
        *_forms(("сред", "суббот"), ("а", "у", "ы", "е", "ой", "ам")),
        *_forms(("пятниц",), ("а", "у", "ы", "е", "ей", "ам")),
        *_forms(("воскресень",), ("е", "я", "ю", "ем")),
        *_forms(("пользовател",), ("ь", "я", "ю", "ем", "е", "и", "ей", "ям")),
        *_forms(("ассистент",), ("", "а", "у", "ом", "е")),
    }
)


@dataclass(frozen=True, slots=True)
class _Found:
    start: int
    kind: ValueKind
    value: str  # normalised
    surface: str  # as written


@dataclass(slots=True)
class _Scan:
    found: list[_Found]
    embedded_numbers: set[str]  # digit runs inside dates, codes, e-mail addresses and URLs
    capitalised: set[str]  # every word starting uppercase, normalised like names


def _prepare(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() and not c.isascii() else c for c in text)


def _fold_name(word: str) -> str:
    return word.casefold().replace("ё", "е")


def _plain_number(integer: str, fraction: str = "") -> str:
    fraction = fraction.rstrip("0")
    whole = str(int(integer))
    return f"{whole}.{fraction}" if fraction else whole


def _grouped_number(groups: list[str], separators: list[str], decimal: bool) -> str | None:
    """The normalised number read with (or without) the last separator as the decimal point, or None
    when the digit groups do not fit that reading."""
    integer_groups, group_separators = (groups[:-1], separators[:-1]) if decimal else (groups, separators)
    if group_separators and (
        len(set(group_separators)) != 1
        or not 1 <= len(integer_groups[0]) <= 3
        or integer_groups[0].startswith("0")
        or any(len(group) != 3 for group in integer_groups[1:])
    ):
        return None
    return _plain_number("".join(integer_groups), groups[-1] if decimal else "")


def _read_number(run: str) -> str | None:
    """One run of digit groups as one number (rule 7), or None when it is not one."""
    groups, separators = _SEPARATOR.split(run), _SEPARATOR.findall(run)
    if not separators:
        return _plain_number(run)
    last, earlier = separators[-1], separators[:-1]
    if last not in ".," or last in earlier:
        return _grouped_number(groups, separators, decimal=False)
    if earlier:
        return _grouped_number(groups, separators, decimal=True)
    # One "." or ",": thousands before exactly three digits (but not after a lone 0), else decimal.
    if len(groups[1]) == 3 and groups[0] != "0":
        return _grouped_number(groups, separators, decimal=False) or _grouped_number(
            groups, separators, decimal=True
        )
    return _grouped_number(groups, separators, decimal=True)


def _numbers(run: str, start: int) -> list[_Found]:
    """The values of one run of digit groups, split when it is not one number (rule 7)."""
    number = _read_number(run)
    if number is not None:
        return [_Found(start, "number", number, run)]
    if set(_SEPARATOR.findall(run)) == {"."}:
        return [_Found(start, "code", run, run)]
    # Split at spaces first, then at every separator.
    pieces = _NUMBER_WITHOUT_SPACES if _SPACE_LIKE.search(run) else _DIGIT_RUN
    return [
        found for piece in pieces.finditer(run) for found in _numbers(piece.group(), start + piece.start())
    ]


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = _prepare(text)
        self.masked = list(self.text)
        self.found: list[_Found] = []
        self.embedded: set[str] = set()

    def view(self) -> str:
        return "".join(self.masked)

    def claim(self, start: int, end: int, kind: ValueKind | None, value: str = "") -> None:
        surface = self.text[start:end]
        if kind is not None:
            self.found.append(_Found(start, kind, value, surface))
        if kind is not None and kind != "number":
            self.embedded.update(_plain_number(run) for run in _DIGIT_RUN.findall(surface))
        self.masked[start:end] = _MASK * (end - start)

    def markup(self) -> None:
        for pattern in (_OFFLINE_PREFIX, _LIST_NUMBER):
            for match in pattern.finditer(self.view()):
                self.claim(match.start(1), match.end(1), None)

    def urls(self) -> None:
        for match in _URL.finditer(self.view()):
            url = match.group().rstrip(_URL_TRAILING)
            value = url.casefold()
            self.claim(
                match.start(), match.start() + len(url), "url", value[:-1] if value.endswith("/") else value
            )

    def emails(self) -> None:
        for match in _EMAIL.finditer(self.view()):
            self.claim(match.start(), match.end(), "email", match.group().casefold())

    def dates(self) -> None:
        for pattern, year_first in ((_ISO_DATE, True), (_DAY_FIRST_DATE, False)):
            for match in pattern.finditer(self.view()):
                a, _, b, c = match.groups()
                year, month, day = (a, b, c) if year_first else (c, b, a)
                try:
                    value = date(int(year), int(month), int(day)).isoformat()
                except ValueError:
                    for group in (1, 3, 4):
                        part = match.group(group)
                        self.found.append(_Found(match.start(group), "number", _plain_number(part), part))
                    self.claim(match.start(), match.end(), None)
                    continue
                self.claim(match.start(), match.end(), "date", value)
        for pattern in (value_forms.DATE_DAY_MONTH, value_forms.DATE_MONTH_DAY):
            for match in pattern.finditer(self.view()):
                in_words = value_forms.date_in_words(match)
                if in_words is not None:
                    self.claim(match.start(), match.end(), "date", in_words)

    def times(self) -> None:
        for pattern in (value_forms.TIME_12H, value_forms.TIME_24H):
            for match in pattern.finditer(self.view()):
                self.claim(match.start(), match.end(), "time", value_forms.read_time(match))

    def phones(self) -> None:
        for match in _PHONE.finditer(self.view()):
            phone = match.group()
            digits = "".join(_DIGIT_RUN.findall(phone))
            if not _PHONE_DIGITS[0] <= len(digits) <= _PHONE_DIGITS[1]:
                continue
            if phone.startswith("+") or "(" in phone or phone.count("-") >= 2:
                plus = "+" if phone.startswith("+") else ""
                self.claim(match.start(), match.end(), "code", plus + digits)

    def scaled_numbers(self) -> None:
        for match in value_forms.SCALED_NUMBER.finditer(self.view()):
            scaled, written = value_forms.scaled_number(match)
            self.claim(match.start(), match.end(), "number", scaled)
            self.embedded.add(written)

    def codes(self) -> None:
        for match in _TOKEN.finditer(self.view()):
            token = match.group()
            if not any(c.isdigit() for c in token) or not any(c.isalpha() for c in token):
                continue
            unit = _NUMBER_WITH_UNIT.fullmatch(token)
            if unit and unit.group(1).islower():
                continue  # a number with a unit or suffix: the number pass takes the digits
            self.claim(match.start(), match.end(), "code", token.casefold())

    def numbers(self) -> None:
        for match in _NUMBER.finditer(self.view()):
            for found in _numbers(match.group(), match.start()):
                self.found.append(found)
                if found.kind == "code":
                    self.embedded.update(_plain_number(run) for run in _DIGIT_RUN.findall(found.value))

    def names(self) -> set[str]:
        text = self.text
        boundaries = [i for i, c in enumerate(text) if c in _SENTENCE_BOUNDARIES]
        capitalised: set[str] = set()
        for match in _WORD.finditer(self.view()):
            word = match.group()
            if not word.isalpha() or not word[0].isupper():
                continue
            folded = _fold_name(word)
            capitalised.add(folded)
            if len(word) < 2 or not word[1:].islower() or folded in _STOP_NAMES:
                continue
            before = bisect_left(boundaries, match.start())
            lead_start = boundaries[before - 1] + 1 if before else 0
            if _SENTENCE_LEAD.fullmatch(text, lead_start, match.start()):
                continue
            self.found.append(_Found(match.start(), "name", folded, word))
        return capitalised

    def run(self) -> _Scan:
        self.markup()
        self.urls()
        self.emails()
        self.dates()
        self.times()
        self.phones()
        self.scaled_numbers()
        self.codes()
        self.numbers()
        capitalised = self.names()
        self.found.sort(key=lambda f: f.start)
        return _Scan(self.found, self.embedded, capitalised)


def _scan(text: str) -> _Scan:
    return _Scanner(text).run()


def _by_kind(found: Iterable[_Found]) -> dict[ValueKind, set[str]]:
    values: dict[ValueKind, set[str]] = {kind: set() for kind in KINDS}
    for value in found:
        values[value.kind].add(value.value)
    return values


def extract_values(text: str) -> dict[ValueKind, set[str]]:
    """The normalised concrete values of ``text`` by kind; every kind is a key (see the module rules)."""
    return _by_kind(_scan(text).found)


@dataclass(frozen=True, slots=True)
class FoundValue:
    """One value of a text where it stands: ``start`` is an offset into the text after NFC and digit
    normalisation (the same length as the text for every text but a few rare compositions)."""

    start: int
    kind: ValueKind
    value: str  # normalised
    surface: str  # as written: user content, never for a log line


def find_values(text: str) -> list[FoundValue]:
    """Every value of ``text`` in order of appearance, with where it stands and how it was written."""
    return [FoundValue(f.start, f.kind, f.value, f.surface) for f in _scan(text).found]


# --- matching ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CarryIndex:
    """What :func:`carried` looks values up in: built once per new text by :func:`carry_index`."""

    values: Mapping[ValueKind, frozenset[str]]
    numbers: frozenset[str]  # reported numbers and the digit runs inside other values
    capitalised: frozenset[str]  # every word that starts uppercase, normalised like names
    name_keys: frozenset[str] = frozenset()  # the capitalised words' lemmas and Latin skeletons


def carry_index(text: str) -> CarryIndex:
    scan = _scan(text)
    values = _by_kind(scan.found)
    return CarryIndex(
        values={kind: frozenset(found) for kind, found in values.items()},
        numbers=frozenset(values["number"] | scan.embedded_numbers),
        capitalised=frozenset(scan.capitalised),
        name_keys=frozenset().union(*map(value_forms.name_keys, scan.capitalised)),
    )


def _name_carried(name: str, index: CarryIndex) -> bool:
    stem = name[: max(3, len(name) - 2)]
    longest = len(name) + MAX_NAME_SUFFIX
    if any(word.startswith(stem) and len(word) <= longest for word in index.capitalised):
        return True
    return not value_forms.name_keys(name).isdisjoint(index.name_keys)


def carried(value_kind: ValueKind, value: str, new_text_index: CarryIndex) -> bool:
    """Whether the new text (indexed by :func:`carry_index`) carries this normalised value."""
    if value_kind == "number":
        return value in new_text_index.numbers
    if value_kind == "name":
        return _name_carried(value, new_text_index)
    if value_kind not in KINDS:
        raise ValueError(f"unknown value kind {value_kind!r}")
    values = new_text_index.values[value_kind]
    if value in values:
        return True
    if value_kind == "date":
        return any(value_forms.same_day(value, other) for other in values)
    if value_kind == "code":
        return any(value_forms.same_phone(value, other) for other in values)
    return False


def _missing(previous: str | None, new: str) -> list[_Found]:
    """The previous text's values the new one does not carry, once each, in order of appearance."""
    if not previous or not previous.strip():
        return []
    index = carry_index(new)
    seen: set[tuple[ValueKind, str]] = set()
    missing: list[_Found] = []
    for found in _scan(previous).found:
        key = (found.kind, found.value)
        if key in seen:
            continue
        seen.add(key)
        if not carried(found.kind, found.value, index):
            missing.append(found)
    return missing


# --- the verdict ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CarryVerdict:
    """Counts and lengths only: safe to log and store."""

    dropped: dict[str, int]
    shrunk: bool
    at_budget: bool
    ok: bool
    reason: str

    def __str__(self) -> str:
        return self.reason


def check_carry(
    previous: str | None,
    new: str,
    *,
    max_chars: int,
    min_keep_ratio: float = 0.5,
    small_summary_chars: int = 400,
) -> CarryVerdict:
    """Whether ``new`` still carries what ``previous`` held (the rules are in the module docstring)."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    if not 0 < min_keep_ratio <= 1:
        raise ValueError("min_keep_ratio must be in (0, 1]")
    previous_chars = len(previous.strip()) if previous else 0
    new_chars = len(new.strip())

    counts: dict[str, int] = {}
    for found in _missing(previous, new):
        counts[found.kind] = counts.get(found.kind, 0) + 1
    dropped: dict[str, int] = {kind: counts[kind] for kind in KINDS if kind in counts}
    shrunk = previous_chars >= small_summary_chars and new_chars < min_keep_ratio * previous_chars
    at_budget = new_chars >= AT_BUDGET_RATIO * max_chars
    ok = not shrunk and (not dropped or at_budget)

    parts: list[str] = []
    if dropped:
        kinds = ", ".join(f"{count} {kind}" for kind, count in dropped.items())
        parts.append(f"dropped {kinds} of the previous summary's values")
    if shrunk:
        parts.append(f"shrank from {previous_chars} to {new_chars} chars")
    if dropped and at_budget:
        parts.append(f"at {new_chars} of {max_chars} chars, so the drops are allowed")
    if not parts:
        parts.append(
            "no previous summary" if not previous_chars else "kept every value of the previous summary"
        )
    return CarryVerdict(dropped=dropped, shrunk=shrunk, at_budget=at_budget, ok=ok, reason="; ".join(parts))


# --- prompt truncation ---------------------------------------------------------------------------

# Tokens per character, in hundredths so that the estimate is exact integer arithmetic. OpenAI
# tokenizers average about 4 characters per token on English and about 2 to 2.5 on Cyrillic, hence a
# per-character estimate rather than one characters-per-token ratio. Measured here with tiktoken's
# cl100k_base on sample chat text (the samples are in tests/unit/test_carry.py): about 0.30 tokens per
# non-space ASCII character and 0.65 per Cyrillic letter; on JSON transcript lines, dense in
# punctuation, this estimate came to about 0.6 of cl100k_base's count. o200k_base and other servers'
# tokenizers, not measured here, are cheaper on Cyrillic. The constants are deliberately below the
# measurements: an estimate that errs low can only delay a truncation alarm, one that errs high would
# raise false ones.
ASCII_TOKENS_PER_100_CHARS = 25  # letters, digits and punctuation
OTHER_TOKENS_PER_100_CHARS = 45  # every other non-space character: Cyrillic, Greek, accented, ...
# Spaces and newlines mostly merge into the next token: they count 0.

TRUNCATION_MIN_TOKENS = 200  # below this the estimate is too rough to judge
TRUNCATION_RATIO = 0.5  # the server read fewer than half the estimated tokens
PROMPT_TRUNCATED = (
    "the server truncated the prompt: lower MEMCOMPRESS_CHUNK_CHARS or raise the model's context"
)


def _char_counts(text: str) -> tuple[int, int]:
    """Non-space ASCII characters, and every other non-space character."""
    ascii_chars = other_chars = 0
    for char in text:
        if char.isspace():
            continue
        if char.isascii():
            ascii_chars += 1
        else:
            other_chars += 1
    return ascii_chars, other_chars


def estimate_prompt_tokens(text: str) -> int:
    """A per-character estimate of the tokens ``text`` costs that errs low, rounded up."""
    ascii_chars, other_chars = _char_counts(text)
    hundredths = ASCII_TOKENS_PER_100_CHARS * ascii_chars + OTHER_TOKENS_PER_100_CHARS * other_chars
    return -(-hundredths // 100)


# A central estimate, for budgets and costs (the one above errs low on purpose). Calibrated with
# cl100k_base on whole prompts as the OpenAI summariser builds them (system prompt, summary, JSON
# transcript lines) from the samples in tests/unit/test_carry.py: 2,454 tokens for 6,660 non-space
# ASCII characters of English (0.37 each), 3,577 tokens for 3,284 ASCII and 3,300 Cyrillic characters
# of Russian (0.72 per Cyrillic letter); on plain chat text 0.30 and 0.65. o200k_base (the gpt-4o
# family) is cheaper on Cyrillic, so for those models this errs high. Not tiktoken itself: its wheel
# ships no BPE files and downloads them at first use, which an offline worker or CI cannot do.
ESTIMATE_ASCII_TOKENS_PER_100_CHARS = 35
ESTIMATE_OTHER_TOKENS_PER_100_CHARS = 70


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` costs (OpenAI's tokenizers; an estimate, within about 20 % on
    English and Russian chat text), rounded up."""
    ascii_chars, other_chars = _char_counts(text)
    hundredths = (
        ESTIMATE_ASCII_TOKENS_PER_100_CHARS * ascii_chars + ESTIMATE_OTHER_TOKENS_PER_100_CHARS * other_chars
    )
    return -(-hundredths // 100)


def prompt_was_truncated(estimated_tokens: int, reported_prompt_tokens: int | None) -> bool:
    """True when the server says it read far fewer prompt tokens than were sent; unknown is False."""
    if reported_prompt_tokens is None:
        return False
    return (
        estimated_tokens > TRUNCATION_MIN_TOKENS
        and reported_prompt_tokens < TRUNCATION_RATIO * estimated_tokens
    )
