"""The answer guard's pure checks: shape, invented values, what must be carried, corrections, patches."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from memcompress.models import MemoryEvent
from memcompress.summarizers.guard import (
    PREVIOUS,
    Rejection,
    Required,
    carry_repair_instruction,
    invented_values,
    judge_answer,
    missing_values,
    patch_summary,
    required_values,
    shrunk,
    usable_draft,
)

T0 = datetime(2026, 3, 11, 9, 15, tzinfo=UTC)


def _events(*texts: str, role: str = "user") -> list[MemoryEvent]:
    return [MemoryEvent(user_id="u", role=role, content=text, created_at=T0) for text in texts]


PLAIN = _events("I like jazz and long walks in the park with my dog in the evening.")


@pytest.mark.parametrize(
    ("answer", "check"),
    [
        ("Summary: <transcript> the user likes jazz", "prompt_echo"),
        ('{"at": "2026-03-11T09:15Z", "role": "user"}', "prompt_echo"),
        ("<script>alert(1)</script> The user likes jazz.", "markup"),
        ("The user likes <b>jazz</b>.", "markup"),
        ("```\nlikes = ['jazz']\n```", "code"),
        ("def summary():\n    return 1\nimport os", "code"),
        ('{"likes": ["jazz", "walks"]}', "json"),
        ('Likes jazz.\nTraceback (most recent call last):\n  File "x.py", line 1', "stack_trace"),
    ],
)
def test_an_answer_that_is_no_summary_fails_one_check(answer: str, check: str) -> None:
    rejection = judge_answer(answer, None, PLAIN, "en")
    assert rejection is not None and rejection.check == check
    assert "jazz" not in rejection.reason  # a check name and counts, never the answer


def test_markup_and_code_are_allowed_when_the_folded_text_holds_them() -> None:
    events = _events("Here is my snippet: ```print('hi')``` and <b>bold</b> text I wrote.")
    assert judge_answer("The user shared ```print('hi')``` and <b>bold</b> text.", None, events, "en") is None


def test_a_plain_summary_passes() -> None:
    assert judge_answer("The user likes jazz and evening walks with the dog.", None, PLAIN, "en") is None
    assert judge_answer("The user rates jazz < 3 and walks > 2 km; a <-> b.", None, PLAIN, "en") is None


def test_values_from_no_input_are_invented_but_resolved_dates_years_and_small_numbers_are_not() -> None:
    events = _events("I fly to Paris tomorrow with my 2 kids, order ORD-4471.")
    honest = (
        "On 2026-03-12 the user flies to Paris with 2 kids (order ORD-4471), said in March 2026 at 09:15."
    )
    assert invented_values(honest, None, events)[0] == 0
    invented, _ = invented_values("On 1999-01-01 Boris met Vladimir about XK-9911 and 77777.", None, events)
    assert invented == 5


def test_a_long_honest_summary_with_a_few_computed_values_is_not_invented() -> None:
    facts = [f"Order ORD-{4400 + i} costs {1000 + i} EUR." for i in range(20)]
    events = _events(*facts)
    answer = " ".join(facts) + " Totals: 20110 EUR, 4 shipments, 13 weeks, 17 parcels, 19 boxes."
    assert judge_answer(answer, None, events, "en") is None


def test_events_of_the_user_and_the_assistant_are_value_checked_tool_results_are_not() -> None:
    events = [
        *_events("My code is XK-9911."),
        *_events("Booked table 17 for you.", role="assistant"),
        *_events('{"temperature": 23.5, "station": 4417}', role="tool"),
    ]
    required = {(value.kind, value.value) for value in required_values("Lives in Riga.", events)}
    assert required == {("name", "riga"), ("code", "xk-9911"), ("number", "17")}


def test_a_correction_that_names_the_old_value_supersedes_it() -> None:
    events = _events("I moved from Moscow to Berlin.")
    required = required_values("Lives in Moscow.", events)
    assert missing_values(required, events, "Lives in Berlin.") == []


def test_a_correction_on_the_same_topic_supersedes_the_old_value() -> None:
    events = _events("My budget is now 2000 EUR.")
    required = required_values("Budget 1500 EUR.", events)
    assert missing_values(required, events, "Budget 2000 EUR.") == []


def test_a_new_value_of_the_same_kind_on_another_topic_is_no_correction() -> None:
    events = _events("I bought a new bike for 300 EUR.")
    required = required_values("Budget 1500 EUR.", events)
    assert [value.value for value in missing_values(required, events, "Bought a bike for 300 EUR.")] == [
        "1500"
    ]


def test_a_correction_earlier_than_the_value_does_not_supersede_it() -> None:
    events = _events("My new phone is +7 915 123-45-67.", "Call me at +49 30 1234567.")
    required = required_values(None, events)
    assert [value.value for value in missing_values(required, events, "Phone +7 915 123-45-67.")] == [
        "+49301234567"
    ]


def test_a_patch_appends_each_missing_sentence_once_within_the_budget_and_returns_what_did_not_fit() -> None:
    events = _events("My code is XK-9911. I live in Riga.", "Call me at 14:30 about ORD-4471, it is urgent.")
    required = required_values("Works at Baltic Freight.", events)
    missing = missing_values(required, events, "Summary.")
    patched = patch_summary("Summary.", missing, events, 120)
    # The answer's prose ("Summary.", no value) gave way to the values first.
    assert patched.text.startswith("Works at Baltic Freight.") and patched.unfit[0] == "Summary."
    assert len(patched.text) <= 120
    assert patched.patched + patched.dropped == len(missing) and patched.dropped > 0
    assert all(line not in patched.text for line in patched.unfit)
    whole = patch_summary("Summary.", missing, events, 1000)
    assert (
        whole.dropped == 0
        and "- 2026-03-11 (user): Call me at 14:30 about ORD-4471, it is urgent." in whole.text
    )


def test_shrunk_needs_a_previous_summary_of_some_size() -> None:
    assert not shrunk("short", "s")
    assert shrunk("x" * 400, "x" * 199) and not shrunk("x" * 400, "x" * 200)


def _required(surface: str) -> Required:
    return Required("code", surface, surface, PREVIOUS, surface)


def test_the_carry_repair_request_lists_every_missing_value_on_one_line() -> None:
    text = carry_repair_instruction([_required("ORD-4471"), _required("olga@example.ru")], shrunk=False)
    assert '"ORD-4471"' in text and '"olga@example.ru"' in text
    assert "dropped" in text and "\n" not in text


def test_the_carry_repair_request_quotes_values_as_data() -> None:
    text = carry_repair_instruction([_required('a "quoted" <b>')], shrunk=False)
    assert '"a \\"quoted\\" \\u003cb>"' in text


def test_a_shrunk_answer_gets_a_repair_request_without_values() -> None:
    text = carry_repair_instruction([], shrunk=True)
    assert "left out much of the current summary" in text and "dropped" not in text


def test_a_draft_is_usable_when_it_passes_the_shape_checks() -> None:
    events = _events("My door code is 4471 and my sister Beatrice calls on 2026-03-12.")
    cut = Rejection("incomplete", "cut", "Door code 4471, sister Beatrice.")
    markup = Rejection("oversize", "long", "<div>Door code 4471, sister Beatrice, 2026-03-12.</div>")

    assert usable_draft(cut, None, events, "en") == "Door code 4471, sister Beatrice."
    assert usable_draft(markup, None, events, "en") is None
    assert usable_draft(Rejection("empty", "empty"), None, events, "en") is None


def test_a_missing_value_takes_the_room_of_the_answer_s_prose_before_it_is_dropped() -> None:
    events = _events("My code is XK-9911.", "Call me at 14:30 about ORD-4471.")
    required = required_values(None, events)
    answer = "The user talked at length about many things.\nThe user has code XK-9911.\nIt was a nice chat."
    missing = missing_values(required, events, answer)
    assert [value.value for value in missing] == ["14:30", "ord-4471"]
    patched = patch_summary(answer, missing, events, len(answer) + 20)
    assert (patched.patched, patched.dropped) == (2, 0)
    assert "XK-9911" in patched.text and "14:30 about ORD-4471" in patched.text
    assert len(patched.text) <= len(answer) + 20
    # The first prose gave way, enough for the values; it is returned for the archive.
    assert patched.unfit == ("The user talked at length about many things.",)
    assert "It was a nice chat." in patched.text


def test_with_no_prose_left_to_give_way_a_value_that_does_not_fit_is_dropped() -> None:
    events = _events("Call me at 14:30 about ORD-4471.")
    missing = missing_values(required_values(None, events), events, "Code XK-9911.")
    patched = patch_summary("Code XK-9911.", missing, events, 30)
    assert patched.text == "Code XK-9911." and patched.dropped == 2 and len(patched.unfit) == 1
