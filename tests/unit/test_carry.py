from __future__ import annotations

import pytest

from memcompress.summarizers.carry import (
    KINDS,
    PROMPT_TRUNCATED,
    ValueKind,
    carried,
    carry_index,
    check_carry,
    estimate_prompt_tokens,
    extract_values,
    prompt_was_truncated,
)


def _only(text: str, kind: ValueKind) -> set[str]:
    values = extract_values(text)
    assert set(values) == set(KINDS)
    return values[kind]


# --- extraction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("paid 1500 EUR", "1500"),
        ("paid 1 500 EUR", "1500"),
        ("paid 1\u00a0500 EUR", "1500"),
        ("paid 1,500 EUR", "1500"),
        ("paid 1.500 EUR", "1500"),
        ("about 3.5 kg", "3.5"),
        ("about 3,5 kg", "3.5"),
        ("about 3,50 kg", "3.5"),
        ("just 0,125 l", "0.125"),
        ("total 1,500.25", "1500.25"),
        ("total 1 500,25", "1500.25"),
        ("a 1.500.000 budget", "1500000"),
        ("he is 007", "7"),
        ("ran 5km", "5"),
        ("the 3rd time", "3"),
        ("на 10-й день", "10"),
        ("в 1990-х", "1990"),
        ("зарплата ٣٥٠٠", "3500"),
    ],
)
def test_numbers_are_normalised(text: str, number: str) -> None:
    assert _only(text, "number") == {number}


def test_numbers_that_fit_no_grouping_are_split() -> None:
    assert _only("items 1,2,3 and room 12 5", "number") == {"1", "2", "3", "12", "5"}


@pytest.mark.parametrize(
    "text",
    [
        "on 2026-03-12",
        "on 12.03.2026",
        "on 12/03/2026",
        "on 12-03-2026",
        "at 2026-03-12T09:00Z",
        "on 2026/03/12",
    ],
)
def test_numeric_dates_become_iso(text: str) -> None:
    values = extract_values(text)
    assert values["date"] == {"2026-03-12"}
    assert values["number"] == set()  # the date's parts are not numbers of their own


def test_day_first_dates_and_impossible_dates() -> None:
    assert _only("on 1.2.2026", "date") == {"2026-02-01"}
    assert _only("on 03/12/2026", "date") == {"2026-12-03"}
    values = extract_values("on 31.02.2026")
    assert values["date"] == set()
    assert values["number"] == {"31", "2", "2026"}


def test_dates_in_words_are_dates_and_their_month_names_no_names() -> None:
    values = extract_values("Anna turns 7 on 12 March 2026 and Ольга приедет 5 Мая.")
    assert values["date"] == {"2026-03-12", "--05-05"}
    assert values["number"] == {"7"}
    assert values["name"] == {"ольга"}


def test_codes_phones_emails_and_urls() -> None:
    text = (
        "Order ORD-4471 and key A1B2; call +7 912 345-67-89 or 8-800-555-35-35 or +44 (20) 7946 0958; "
        "mail Anna.P@Mail.ru, see https://Example.com/Path/. Runs x86_64, version 1.2.3 on 192.168.0.1."
    )
    values = extract_values(text)
    assert values["code"] == {
        "ord-4471",
        "a1b2",
        "+79123456789",
        "88005553535",
        "+442079460958",
        "x86_64",
        "1.2.3",
        "192.168.0.1",
    }
    assert values["email"] == {"anna.p@mail.ru"}
    assert values["url"] == {"https://example.com/path"}
    assert values["number"] == set()  # every digit here belongs to a code, an address or a URL


def test_phone_spellings_are_one_value() -> None:
    assert _only("+7 912 345-67-89", "code") == _only("+7 (912) 345 67 89", "code") == {"+79123456789"}


def test_names_latin_cyrillic_and_other_cased_scripts() -> None:
    text = "We met Anna and Boris in Paris. Мы видели Ольгу в Казани. Είδαμε την Ελένη, Արամ lives in Երևան."
    assert _only(text, "name") == {"anna", "boris", "paris", "ольгу", "казани", "ελένη", "արամ", "երեւան"}


def test_sentence_starts_and_stop_words_are_not_names() -> None:
    text = (
        "The user said hi. Then Anna left! Она ушла? I told the User on Monday in March; "
        "Пользователь сказал Пользователю в Пятницу. Note: Vegetarian food."
    )
    assert _only(text, "name") == {"anna"}


def test_words_that_are_not_capitalised_words_are_not_names() -> None:
    assert _only("we use NASA data, McDonald food, iPhone apps and a T-shirt", "name") == set()


def test_offline_prefixes_and_markdown_lists_start_sentences() -> None:
    text = (
        "- 2026-01-02 (user): My cat is called Tom.\n"
        "- 2026-01-03 (assistant): Noted that Anna likes jazz.\n"
        "- 2026-03-01..2026-03-05: small talk only.\n"
        "1. Boris visits\n"
        "2) Clara visits\n"
        "* **Kids** Zoe\n"
        "## Family\n"
        "> Quoted line"
    )
    values = extract_values(text)
    assert values["name"] == {"tom", "anna", "zoe"}
    # The prefixes' dates and the list numbers are markup, not values.
    assert values["date"] == set()
    assert values["number"] == set()


def test_names_fold_yo_and_possessives() -> None:
    assert _only("Встреча с Пётром, Anna's sister", "name") == {"петром", "anna"}


# --- matching ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "new_text", "expected"),
    [
        ("анна", "Мы встретились с Анной.", True),
        ("анна", "Позвонили Анну.", True),
        ("анна", "Дочь зовут Анне.", True),
        ("anna", "It is Anna's party.", True),
        ("петр", "Пришёл брат Петра.", True),
        ("anna", "Anna went home.", True),  # a sentence start in the new text still carries
        ("анна", "мы встретились с анной.", False),  # not capitalised
        ("tom", "Tomorrow is the party.", False),  # too long to be an inflection
        ("anna", "Hanna went home.", False),
        ("boris", "Bought a book.", False),
        # Russian lemmas (pymorphy3) and Cyrillic-Latin transliteration
        ("лев", "У брата Льва кот.", True),
        ("орле", "Он из города Орёл.", True),
        ("анна", "Met Anna.", True),
        ("anna", "Встреча с Анной.", True),
        ("olga", "Встреча с Ольгой.", True),
        ("марией", "Met Maria.", True),
        ("julia", "Встреча с Юлией.", True),
        ("орле", "Он из города Москва.", False),
        ("anna", "Встреча с Ольгой.", False),
        ("лев", "У брата кот.", False),
    ],
)
def test_names_are_carried_through_inflection(name: str, new_text: str, expected: bool) -> None:
    assert carried("name", name, carry_index(new_text)) is expected


def test_exact_kinds_need_the_same_normalised_value() -> None:
    index = carry_index("Order ord-4471, mail ANNA@MAIL.RU, on 12.03.2026, paid 1,500.")
    assert carried("code", "ord-4471", index)
    assert carried("email", "anna@mail.ru", index)
    assert carried("date", "2026-03-12", index)
    assert carried("number", "1500", index)
    assert not carried("code", "ord-4472", index)
    assert not carried("date", "2026-03-13", index)
    assert not carried("number", "150", index)


def test_a_number_is_carried_by_the_same_digits_inside_another_value() -> None:
    index = carry_index("Party on 2026-03-12, order ORD-4471, at 14:30; бюджет 1,5 млн.")
    assert carried("number", "12", index)
    assert carried("number", "4471", index)
    assert not carried("number", "447", index)
    assert carried("number", "14", index)  # and inside a time
    assert carried("number", "1.5", index)  # and as written before a scale
    assert carried("number", "1500000", index)
    assert carried("time", "14:30", index)
    assert not carried("time", "14:00", index)


# Honest rewrites a real model makes of the previous summary's values: each one was a drop before.
HONEST_REWRITES = [
    ("День рождения 2026-03-12.", "День рождения 12 марта 2026."),
    ("День рождения 2026-03-12.", "День рождения 12 марта 2026 года."),
    ("Party on 2026-03-12.", "Party on March 12, 2026."),
    ("Party on 2026-03-12.", "Party on 12 March 2026."),
    ("День рождения 2026-03-12.", "День рождения 12 марта."),  # no year: month and day agree
    ("День рождения 12 марта.", "День рождения 2026-03-12."),
    ("Встреча в 14:30.", "Meeting at 2:30 PM."),
    ("Бюджет 1 500 000 рублей.", "Budget 1.5 million."),
    ("Бюджет 1 500 000 рублей.", "Бюджет 1,5 млн рублей."),
    ("Budget 1 500 000.", "Budget 1.5M."),
    ("Аванс 12500 рублей.", "Advance 12.5k."),
    ("Аванс 12500 рублей.", "Аванс 12,5 тыс. рублей."),
    ("Позвонить +7 915 123-45-67.", "Позвонить 8 915 123-45-67."),  # the trunk prefix
    ("Кот принадлежит брату Лев.", "Кот брата Льва."),
    ("Брат живёт в городе Орёл.", "Брат живёт в Орле."),
    ("My daughter is Anna.", "Встреча с Анной."),
    ("My daughter is Anna.", "Дочь зовут Анна."),
    ("Дочь зовут Анна.", "My daughter is Anna."),
]


@pytest.mark.parametrize(("previous", "new"), HONEST_REWRITES)
def test_honest_rewrites_of_values_are_carried(previous: str, new: str) -> None:
    verdict = check_carry(previous, new, max_chars=1000)
    assert verdict.ok, verdict.reason


@pytest.mark.parametrize("new", ["Позвонить +79151234567.", "Позвонить +7 (915) 123 45 67."])
def test_a_regrouped_phone_number_is_carried(new: str) -> None:
    assert check_carry("Позвонить +7 915 123-45-67.", new, max_chars=1000).ok


# Real drops: each must still be caught, with the kind it lost.
REAL_DROPS = [
    ("Позвонить Анне: +7 915 123-45-67.", "Позвонить Анне.", {"code": 1}),
    ("Call Anna at +44 20 7946 0958.", "Call Anna.", {"code": 1}),
    ("Придут Анна и Борис.", "Придёт Анна.", {"name": 1}),
    ("We met Anna and Boris.", "We met Anna.", {"name": 1}),
    ("Paid 1500 EUR.", "Paid 1600 EUR.", {"number": 1}),
    ("Бюджет 1,5 млн рублей.", "Бюджет 1,6 млн рублей.", {"number": 1}),
    ("Party on 12 March 2026.", "Party on 13 March 2026.", {"date": 1}),
    ("Праздник 2026-03-12.", "Праздник 13 марта.", {"date": 1}),
    ("Встреча в 14:30.", "Meeting at 3:30 PM.", {"time": 1}),
    ("Мой брат Лев живёт в Орле.", "Мой брат Лев живёт в Москве.", {"name": 1}),
]


@pytest.mark.parametrize(("previous", "new", "dropped"), REAL_DROPS)
def test_real_drops_are_still_caught(previous: str, new: str, dropped: dict[str, int]) -> None:
    verdict = check_carry(previous, new, max_chars=1000)
    assert not verdict.ok
    assert verdict.dropped == dropped


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("on 12 марта 2026 года", "date", "2026-03-12"),
        ("on 12-го марта 2026 г.", "date", "2026-03-12"),
        ("on March 12, 2026", "date", "2026-03-12"),
        ("on the 12th of March 2026", "date", "2026-03-12"),
        ("до 12 дек. 2026", "date", "2026-12-12"),
        ("12 МАРТА", "date", "--03-12"),
        ("on May 5", "date", "--05-05"),
        ("at 2:30 PM", "time", "14:30"),
        ("at 2pm", "time", "14:00"),
        ("at 12 a.m.", "time", "00:00"),
        ("at 12:05 pm", "time", "12:05"),
        ("в 9:05", "time", "09:05"),
        ("в 14:30:00", "time", "14:30"),
        ("1,5 млн", "number", "1500000"),
        ("1.5 Million", "number", "1500000"),
        ("12,5 тыс.", "number", "12500"),
        ("1 500 тысяч", "number", "1500000"),
        ("2 млрд", "number", "2000000000"),
        ("0.5k", "number", "500"),
    ],
)
def test_other_spellings_give_the_canonical_value(text: str, kind: ValueKind, value: str) -> None:
    assert _only(text, kind) == {value}


def test_forms_that_are_no_date_time_or_scale() -> None:
    values = extract_values("31 февраля 2026, ran 5km, scored 3:2, version 5M-2, 14.30")
    assert values["date"] == set()
    assert values["time"] == set()
    assert values["number"] == {"31", "2026", "5", "3", "2", "14.3"}
    assert values["code"] == {"5m-2"}


def test_carried_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown value kind"):
        carried("phone", "1", carry_index("1"))  # type: ignore[arg-type]


# --- the verdict ---------------------------------------------------------------------------------

PREVIOUS = (
    "- 2026-01-02 (user): My daughter Anna turns 7 on 2026-03-12; order ORD-4471, budget 1 500 EUR.\n"
    "- 2026-01-03 (user): Меня зовут Ольга, живу в Казани, муж Пётр, почта olga@example.ru."
)


def test_a_vague_summary_is_rejected_and_says_what_kinds_it_lost() -> None:
    verdict = check_carry(PREVIOUS, "The user talked about various topics.", max_chars=2000)
    assert not verdict.ok
    assert verdict.dropped == {"number": 2, "date": 1, "code": 1, "email": 1, "name": 4}
    assert verdict.reason == (
        "dropped 2 number, 1 date, 1 code, 1 email, 4 name of the previous summary's values"
    )
    assert not verdict.shrunk  # the previous summary is under small_summary_chars
    assert not verdict.at_budget


def test_a_rewrite_that_carries_every_value_is_ok() -> None:
    new = (
        "Ольга живёт в Казани с мужем Петром (olga@example.ru). Дочери Anna исполнится 7 лет "
        "2026-03-12. Заказ ORD-4471, бюджет 1500 EUR."
    )
    verdict = check_carry(PREVIOUS, new, max_chars=2000)
    assert verdict.ok, verdict.reason
    assert verdict.dropped == {}
    assert verdict.reason == "kept every value of the previous summary"


def test_the_verdict_never_shows_a_value() -> None:
    verdict = check_carry(PREVIOUS, "Nothing much.", max_chars=2000)
    shown = repr(verdict) + str(verdict) + verdict.reason
    for value in ("Anna", "ORD-4471", "2026-03-12", "1 500", "1500", "Ольга", "olga@example.ru"):
        assert value.casefold() not in shown.casefold()


def test_shrinking_is_checked_on_big_summaries_only() -> None:
    big = "Anna likes jazz. " * 40  # 680 chars
    shrunk = check_carry(big, "Big fan: Anna likes jazz.", max_chars=4000)
    assert shrunk.shrunk and not shrunk.ok
    assert shrunk.dropped == {}
    assert shrunk.reason == "shrank from 679 to 25 chars"
    small = check_carry(big[:200], "Big fan: Anna likes jazz.", max_chars=4000)
    assert not small.shrunk and small.ok
    kept_half = check_carry(big, big[:341], max_chars=4000)
    assert not kept_half.shrunk


def test_drops_are_allowed_but_reported_at_the_budget() -> None:
    new = "Ольга, Казань, муж Петр, дочь Anna, 7 лет, 2026-03-12, ORD-4471, 1500 EUR. " + "x" * 30
    verdict = check_carry(PREVIOUS, new, max_chars=len(new) + 5)
    assert verdict.at_budget
    assert verdict.ok
    assert verdict.dropped == {"email": 1}
    assert verdict.reason == (
        f"dropped 1 email of the previous summary's values; at {len(new)} of {len(new) + 5} chars, "
        "so the drops are allowed"
    )
    roomy = check_carry(PREVIOUS, new, max_chars=len(new) * 2)
    assert not roomy.at_budget and not roomy.ok


def test_shrinking_is_not_excused_by_the_budget() -> None:
    big = "Anna likes jazz. " * 100
    verdict = check_carry(big, "Anna likes jazz.", max_chars=16)
    assert verdict.at_budget and verdict.shrunk and not verdict.ok


def test_no_previous_summary_is_always_ok() -> None:
    for previous in (None, "", "   "):
        verdict = check_carry(previous, "Anna, 7.", max_chars=100)
        assert verdict.ok and verdict.dropped == {} and not verdict.shrunk
        assert verdict.reason == "no previous summary"


@pytest.mark.parametrize(("max_chars", "min_keep_ratio"), [(0, 0.5), (100, 0.0), (100, 1.5)])
def test_check_carry_refuses_nonsense_settings(max_chars: int, min_keep_ratio: float) -> None:
    with pytest.raises(ValueError, match="must"):
        check_carry("a", "b", max_chars=max_chars, min_keep_ratio=min_keep_ratio)


def test_one_value_written_two_ways_counts_once() -> None:
    verdict = check_carry("Paid 1 500 EUR, that is 1500 EUR, on 12.03.2026 (2026-03-12).", "-", max_chars=100)
    assert verdict.dropped == {"number": 1, "date": 1}


# --- prompt truncation ---------------------------------------------------------------------------

# Chat text whose token counts were measured with tiktoken's cl100k_base (161 and 321 tokens).
ENGLISH_SAMPLE = """\
My daughter Anna turns 7 on 12 March and I want to plan a party for about 15 kids.
About 300 euros. I prefer vegetarian food, I never eat meat, and my husband is allergic to nuts.
Could you remind me to call the bakery on Friday? Their number is +44 20 7946 0958.
We moved to Manchester last year; before that we lived in Leeds for almost ten years.
I work as a nurse, mostly night shifts, so mornings are bad for me. My order ORD-4471 still hasn't arrived.
The user prefers short answers, likes jazz (especially Coltrane) and reads crime novels in the evening.
Book a table for 4 people on Friday at 19:30, somewhere quiet with vegetarian options please."""
RUSSIAN_SAMPLE = """\
Меня зовут Ольга, я живу в Казани и работаю учительницей в школе уже двенадцать лет.
У дочери Анны день рождения 12 марта, ей исполняется семь, хочу устроить праздник для пятнадцати детей.
Бюджет примерно 30 000 рублей. Я не ем мясо, а у мужа аллергия на орехи, пожалуйста, учитывай это.
Напомни мне позвонить в пекарню в пятницу, их номер +7 912 345-67-89.
Мы переехали из Самары в прошлом году, до этого почти десять лет жили в Нижнем Новгороде.
Пользователь предпочитает короткие ответы, любит джаз и по вечерам читает детективы.
Закажи столик на четверых в пятницу в 19:30, где-нибудь потише и с вегетарианским меню."""
CL100K_TOKENS = {ENGLISH_SAMPLE: 161, RUSSIAN_SAMPLE: 321}


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), (" \n\t", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 100, 25), ("я" * 100, 45)],
)
def test_estimate_prompt_tokens_per_character(text: str, tokens: int) -> None:
    assert estimate_prompt_tokens(text) == tokens


@pytest.mark.parametrize("text", [ENGLISH_SAMPLE, RUSSIAN_SAMPLE])
def test_the_estimate_errs_low_but_within_the_alarm_margin(text: str) -> None:
    measured = CL100K_TOKENS[text]
    estimate = estimate_prompt_tokens(text)
    assert measured / 2 < estimate <= measured
    assert not prompt_was_truncated(estimate, measured)


def test_cyrillic_costs_more_per_character_than_latin() -> None:
    cyrillic, latin = "Анна любит джаз. " * 10, "Anna likes jazz. " * 10
    assert estimate_prompt_tokens(cyrillic) > estimate_prompt_tokens(latin) * 1.5


@pytest.mark.parametrize(
    ("estimated", "reported", "truncated"),
    [
        (10_000, None, False),  # the server did not say
        (10_000, 9_000, False),
        (10_000, 5_000, False),  # exactly half is still believed
        (10_000, 4_999, True),
        (10_000, 0, True),
        (201, 100, True),
        (200, 1, False),  # too small to judge
    ],
)
def test_prompt_was_truncated(estimated: int, reported: int | None, truncated: bool) -> None:
    assert prompt_was_truncated(estimated, reported) is truncated


def test_the_truncation_message_names_the_remedy() -> None:
    assert PROMPT_TRUNCATED == (
        "the server truncated the prompt: lower MEMCOMPRESS_CHUNK_CHARS or raise the model's context"
    )
