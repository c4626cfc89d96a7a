import pytest

from memcompress.cron import CronError, parse_cron


def test_every_ten_minutes() -> None:
    (fields,) = parse_cron("*/10 * * * *")
    assert fields["minute"] == {0, 10, 20, 30, 40, 50}
    assert fields["second"] == {0}
    assert fields["hour"] is fields["day"] is fields["month"] is fields["weekday"] is None


def test_names_ranges_and_lists() -> None:
    (fields,) = parse_cron("0 2 * jan-mar mon-fri")
    assert (fields["minute"], fields["hour"], fields["day"]) == ({0}, {2}, None)
    assert fields["month"] == {1, 2, 3}
    assert fields["weekday"] == {0, 1, 2, 3, 4}  # Monday..Friday in Python's numbering


def test_macros() -> None:
    (daily,) = parse_cron("@daily")
    assert (daily["minute"], daily["hour"], daily["day"], daily["weekday"]) == ({0}, {0}, None, None)
    (weekly,) = parse_cron("@weekly")
    assert weekly["weekday"] == {6}  # Sunday


def test_day_of_month_or_day_of_week_as_in_standard_cron() -> None:
    by_day, by_weekday = parse_cron("0 2 1,15 * mon")
    assert (by_day["day"], by_day["weekday"]) == ({1, 15}, None)
    assert (by_weekday["day"], by_weekday["weekday"]) == (None, {0})


def test_sunday_is_0_or_7_and_seconds_may_lead() -> None:
    assert parse_cron("0 0 * * 0")[0]["weekday"] == parse_cron("0 0 * * 7")[0]["weekday"] == {6}
    (fields,) = parse_cron("*/15 * * * * *")
    assert fields["second"] == {0, 15, 30, 45}
    assert fields["minute"] is None


@pytest.mark.parametrize(
    "expression",
    ["* * * *", "61 * * * *", "x * * * *", "* * 0 * *", "0 0 L * *", "0 0 * * mon#2"],
)
def test_bad_expressions_are_refused_with_the_expression(expression: str) -> None:
    with pytest.raises(CronError, match=repr(expression).replace("*", r"\*")):
        parse_cron(expression)
