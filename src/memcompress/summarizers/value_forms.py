"""Other honest spellings of one value, for the carry guard (:mod:`memcompress.summarizers.carry`).

A model that rewrites a summary writes ``2026-03-12`` as ``12 марта 2026 года``, ``14:30`` as
``2:30 PM``, ``1 500 000`` as ``1,5 млн``, ``Лев`` as ``Льва`` and ``Anna`` as ``Анной``. This module
reads those forms so that the guard sees one value where there is one, and nothing more: a changed
number, date or time, or a name that is gone, still differs.

What it guarantees
------------------
* Pure and deterministic: the same text gives the same values. The one dependency with data,
  pymorphy3's Russian dictionary, is loaded at the first name that needs it, once per process, and
  never downloads anything.
* Symmetric: a form read here gives the same normalised value as the canonical spelling
  (``12 марта 2026`` is the ``date`` ``2026-03-12``; ``2:30 PM`` is the ``time`` ``14:30``;
  ``1,5 млн`` is the ``number`` ``1500000``), so checking a summary against its inputs and checking
  inputs against a summary agree.

Forms read
----------
1. Dates in words (:data:`DATE_DAY_MONTH`, :data:`DATE_MONTH_DAY`): a day of one or two digits (with
   ``st``/``nd``/``rd``/``th`` or ``-го``/``-е``), an optional ``of``, a month word, an optional
   four-digit year (``12 марта 2026 года``, ``12th of March 2026``, ``12 мар. 2026``), or a month word
   then the day (``March 12, 2026``, ``May 5``). Month words: English names and abbreviations, Russian
   names in every case and the common abbreviations, any letter case. With a year it is the
   ``date`` ``YYYY-MM-DD``; without one, ``--MM-DD`` (ISO 8601's date without a year), which carries
   and is carried by any date of the same month and day. A day the month does not have is no date.
2. Times (:data:`TIME_12H`, :data:`TIME_24H`): ``H:MM`` or ``HH:MM`` (hours 0 to 23, optionally
   ``:SS``), and 12-hour times with ``am``/``pm`` in any case, dotted or not (``2:30 PM``, ``2pm``,
   ``12 a.m.``), become the ``time`` ``HH:MM`` (``HH:MM:SS`` when the seconds are not zero). Not
   read: ``14.30``, ``14 ч``, a time inside an ISO timestamp (part of its date).
3. Scaled numbers (:data:`SCALED_NUMBER`): a number then a scale, ``k``/``K``/``M`` written without a
   space, or a word after at most one space: ``thousand``, ``million``, ``mln``, ``mn``, ``billion``,
   ``bn``, ``bln``, ``trillion``, ``tn`` (any case, plural too), ``тыс.``, ``тысяч…``, ``млн``,
   ``миллион…``, ``млрд``, ``миллиард…``, ``трлн``, ``триллион…``. Before a scale a single ``.`` or ``,``
   is always the decimal point (``1,5 млн``, ``12.5k``); thousands may be grouped with spaces
   (``1 500 тыс.``). The value is the product (``1500000``); the number as written (``1.5``) is carried
   by it too.
4. Phone numbers in national form (:func:`same_phone`): a number without ``+`` that starts with the
   trunk prefix ``8`` or ``0`` (``8 915 123-45-67``, ``8-800-555-35-35``) is the number with ``+``
   whose digits end with the rest and that has one to three digits more (a country code):
   ``+7 915 123-45-67``. Regrouped spellings were already one value (``+79151234567``).
5. Names (:func:`name_keys`): a name's keys are its normalised form, for Cyrillic words every lemma
   pymorphy3 gives (``Льва`` → ``лев``, ``Орле`` → ``орёл``, ``Анной`` → ``анна``), and the Latin
   skeleton of each (:func:`latin_skeleton`): Cyrillic letters transliterated by a fixed table, then
   ``ph``→``f``, ``x``→``ks``, ``kh``→``h``, ``w``→``v``, ``j`` and ``y``→``i``, ``ii``→``i``. So
   ``Anna`` and ``Анной``, ``Olga`` and ``Ольгу``, ``Maria`` and ``Марии``, ``Julia`` and ``Юлия``,
   ``Alexey`` and ``Алексей`` share a key; ``Pyotr`` and ``Пётр`` do not.

Libraries measured (4,000-character Russian summary; one core, warm unless said)
-------------------------------------------------------------------------------
==============================  ============  ===========  =============================  ==========
library                         import        memory       speed                          used
==============================  ============  ===========  =============================  ==========
pymorphy3 2.0 + dicts-ru        30 + 55 ms    +29 MB RSS   ~50 µs a word uncached         yes, names
dateparser 1.5 (search_dates)   50 ms         +24 MB RSS   190 ms a summary; misreads     no
                                                           ``12,5`` and ``двенадцать
                                                           лет`` as dates
phonenumbers 9.0                15 ms         +2 MB RSS    2 ms a summary; 48 MB on       no
                                                           disk; national numbers need a
                                                           region we do not know
==============================  ============  ===========  =============================  ==========

Dates, times and scales are a few regular expressions here instead; phone numbers keep the guard's
own reading plus the trunk-prefix rule above.

With these forms a whole :func:`~memcompress.summarizers.carry.check_carry` of a 4,000-character
Russian summary against its rewrite takes about 11 ms warm (12 ms before them: the month-then-day
pattern is tried only before a day number); the first check in a process pays about 85 ms more to load
the dictionary, and a cold name cache about 50 µs a capitalised Cyrillic word.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache, lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymorphy3 import MorphAnalyzer

# --- months --------------------------------------------------------------------------------------


def _forms(stems: tuple[str, ...], endings: tuple[str, ...], month: int) -> dict[str, int]:
    return {stem + ending: month for stem in stems for ending in endings}


_SOFT = ("ь", "я", "ю", "е", "ем")  # январь, января, январю, январе, январем (ё written as е)
_HARD = ("", "а", "у", "е", "ом")  # март, марта, марту, марте, мартом

# Every month word, casefolded with ё as е, and its month.
MONTH_WORDS: dict[str, int] = {
    **{
        name: number
        for number, names in enumerate(
            (
                "january jan",
                "february feb",
                "march mar",
                "april apr",
                "may",
                "june jun",
                "july jul",
                "august aug",
                "september sep sept",
                "october oct",
                "november nov",
                "december dec",
            ),
            start=1,
        )
        for name in names.split()
    },
    **_forms(("январ",), _SOFT, 1),
    **_forms(("феврал",), _SOFT, 2),
    **_forms(("март",), _HARD, 3),
    **_forms(("апрел",), _SOFT, 4),
    **_forms(("ма",), ("й", "я", "ю", "е", "ем"), 5),
    **_forms(("июн",), _SOFT, 6),
    **_forms(("июл",), _SOFT, 7),
    **_forms(("август",), _HARD, 8),
    **_forms(("сентябр",), _SOFT, 9),
    **_forms(("октябр",), _SOFT, 10),
    **_forms(("ноябр",), _SOFT, 11),
    **_forms(("декабр",), _SOFT, 12),
}
# Russian abbreviations, read as months only in a date (not stop words for names).
_RUSSIAN_ABBREVIATIONS: dict[str, int] = {
    "янв": 1,
    "фев": 2,
    "февр": 2,
    "мар": 3,
    "апр": 4,
    "июн": 6,
    "июл": 7,
    "авг": 8,
    "сен": 9,
    "сент": 9,
    "окт": 10,
    "ноя": 11,
    "нояб": 11,
    "дек": 12,
}
_MONTHS = {**MONTH_WORDS, **_RUSSIAN_ABBREVIATIONS}
_ENGLISH_ABBREVIATIONS = ("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec")
_ABBREVIATIONS = [*_RUSSIAN_ABBREVIATIONS, *_ENGLISH_ABBREVIATIONS]  # may end in a dot: "12 дек. 2026"


def _alternation(words: list[str]) -> str:
    # Longest first, so that "марта" is not read as "март"; ё is also accepted where е is.
    return "|".join(re.escape(w).replace("е", "[её]") for w in sorted(words, key=len, reverse=True))


_MONTH = (
    r"(?i:(?P<month>"
    + _alternation([w for w in MONTH_WORDS if w not in _ABBREVIATIONS])
    + r")(?!\w)|(?P<abbr>"
    + _alternation(_ABBREVIATIONS)
    + r")(?:\.|(?!\w)))"
)
_SPACE = r"[ \u00a0]+"
_YEAR = r"(?:,?" + _SPACE + r"(?P<year>\d{4})(?!\w))?"
DATE_DAY_MONTH = re.compile(
    r"(?<![\w.,:/+-])(?P<day>\d{1,2})(?:st|nd|rd|th|-?(?:го|е|ое|ого))?" + _SPACE + r"(?:of" + _SPACE + r")?"
    r"" + _MONTH + _YEAR
)
DATE_MONTH_DAY = re.compile(
    # The lookahead first: trying every month word at every word start would take milliseconds.
    r"(?<!\w)(?=[^\W\d_]+\.?[ \u00a0]+\d)"
    + _MONTH
    + _SPACE
    + r"(?P<day>\d{1,2})(?:st|nd|rd|th)?(?!\w)(?![.,:]\d)"
    + _YEAR
)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def date_in_words(match: re.Match[str]) -> str | None:
    """A :data:`DATE_DAY_MONTH` or :data:`DATE_MONTH_DAY` match as ``YYYY-MM-DD`` or ``--MM-DD``, or
    None when it names no calendar day."""
    word = (match.group("month") or match.group("abbr")).casefold().replace("ё", "е")
    month, day, year = _MONTHS[word], int(match.group("day")), match.group("year")
    if not 1 <= day <= _DAYS_IN_MONTH[month - 1]:
        return None
    if year is None:
        return f"--{month:02d}-{day:02d}"
    leap = int(year) % 4 == 0 and (int(year) % 100 != 0 or int(year) % 400 == 0)
    if (month, day) == (2, 29) and not leap:
        return None
    return f"{year}-{month:02d}-{day:02d}"


def same_day(a: str, b: str) -> bool:
    """Whether two normalised dates name one day: equal, or one has no year and the month and day
    agree."""
    return a == b or ((a.startswith("--") or b.startswith("--")) and a[-5:] == b[-5:])


# --- times ---------------------------------------------------------------------------------------

TIME_12H = re.compile(
    r"(?<![\w:.,])(?P<hour>1[0-2]|0?[1-9])(?::(?P<minute>[0-5]\d))?[ \u00a0]?(?i:(?P<half>[ap])\.?m\.?)(?!\w)"
)
TIME_24H = re.compile(
    r"(?<![\w:.,])(?P<hour>[01]?\d|2[0-3]):(?P<minute>[0-5]\d)(?::(?P<second>[0-5]\d))?(?![\w:]|[.,]\d)"
)


def read_time(match: re.Match[str]) -> str:
    """A :data:`TIME_12H` or :data:`TIME_24H` match as ``HH:MM`` (``HH:MM:SS`` with seconds)."""
    groups = match.groupdict()
    hour, minute = int(groups["hour"]), int(groups["minute"] or 0)
    half = (groups.get("half") or "").casefold()
    if half:
        hour = hour % 12 + (12 if half == "p" else 0)
    second = int(groups.get("second") or 0)
    return f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")


# --- scaled numbers ------------------------------------------------------------------------------

_SCALE_LETTERS = {"k": 3, "K": 3, "M": 6}
_SCALE_WORDS = (
    (3, r"thousands?|тыс\.?|тысяч\w*"),
    (6, r"millions?|mln|mn|млн\.?|миллион\w*"),
    (9, r"billions?|bn|bln|млрд\.?|миллиард\w*"),
    (12, r"trillions?|tn|трлн\.?|триллион\w*"),
)
SCALED_NUMBER = re.compile(
    r"(?<![\w.,])(?P<integer>\d{1,3}(?:[ \u00a0\u2009\u202f]\d{3})+|\d+)(?:[.,](?P<fraction>\d+))?"
    r"(?:(?P<letter>[kKM])|[ \u00a0]?(?i:"
    + "|".join(f"(?P<e{exponent}>{words})" for exponent, words in _SCALE_WORDS)
    + r"))(?!\w)(?![-/.#_]\w)"  # part of no code: "5M-2" is one
)


def scaled_number(match: re.Match[str]) -> tuple[str, str]:
    """A :data:`SCALED_NUMBER` match as (the scaled number, the number as written), both plain
    decimals (``1500000``, ``1.5``)."""
    integer = re.sub(r"\D", "", match.group("integer"))
    written = Decimal(f"{integer}.{match.group('fraction') or '0'}")
    letter = match.group("letter")
    exponent = (
        _SCALE_LETTERS[letter]
        if letter
        else next(e for e, _ in _SCALE_WORDS if match.group(f"e{e}") is not None)
    )
    return _plain(written.scaleb(exponent)), _plain(written)


def _plain(number: Decimal) -> str:
    return format(number.normalize(), "f")


# --- phone numbers -------------------------------------------------------------------------------


def same_phone(a: str, b: str) -> bool:
    """Whether two normalised phone codes (``+`` and digits, or digits) are one number, one of them
    written nationally with its trunk prefix (``89151234567`` and ``+79151234567``)."""
    if a.startswith("+") == b.startswith("+"):
        return a == b
    international, national = (a[1:], b) if a.startswith("+") else (b[1:], a)
    return (
        international.isdigit()
        and national.isdigit()
        and len(national) >= 10
        and national[0] in "08"
        and 1 <= len(international) - len(national) + 1 <= 3
        and international.endswith(national[1:])
    )


# --- names ---------------------------------------------------------------------------------------

_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_TO_LATIN = str.maketrans(
    {
        **dict(zip("абвгдезийклмнопрстуфыэ", "abvgdeziiklmnoprstufye", strict=True)),
        "ж": "zh",
        "х": "kh",
        "ц": "ts",
        "ч": "ch",
        "ш": "sh",
        "щ": "shch",
        "ю": "yu",
        "я": "ya",
        "ё": "e",
        "ь": "",
        "ъ": "",
    }
)
_LATIN_FOLDS = (("ph", "f"), ("x", "ks"), ("kh", "h"), ("w", "v"), ("j", "i"), ("y", "i"), ("ii", "i"))


def latin_skeleton(word: str) -> str:
    """A casefolded word transliterated to Latin and folded so that common spellings of one name
    agree (``анна``, ``anna``; ``юлия``, ``julia``, ``yulia``)."""
    skeleton = word.translate(_TO_LATIN)
    for old, new in _LATIN_FOLDS:
        skeleton = skeleton.replace(old, new)
    return skeleton


@cache
def _morph() -> MorphAnalyzer:
    import pymorphy3  # here: 85 ms and 29 MB, paid only when a Cyrillic name is first matched

    return pymorphy3.MorphAnalyzer(lang="ru")


@lru_cache(maxsize=65_536)
def name_keys(folded: str) -> frozenset[str]:
    """The keys of a name or capitalised word (casefolded, ``ё`` as ``е``): two words name the same
    person or place when their keys meet (rule 5)."""
    forms = {folded}
    if _CYRILLIC.search(folded):
        forms.update(parse.normal_form.replace("ё", "е") for parse in _morph().parse(folded))
    return frozenset(forms | {latin_skeleton(form) for form in forms})
