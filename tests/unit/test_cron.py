import pytest

from memcompress.cron import CronError, parse_cron


def test_every_ten_minutes() -> None:
    fields = parse_cron("*/10 * * * *")
    assert fields["minute"] == {0, 10, 20, 30, 40, 50}
    assert fields["second"] == {0}
    assert fields["hour"] is fields["day"] is fields["month"] is fields["weekday"] is None


def test_daily_at_two_on_weekdays_with_lists_and_ranges() -> None:
    fields = parse_cron("0 2 1,15 1-3 1-5")
    assert (fields["minute"], fields["hour"]) == ({0}, {2})
    assert fields["day"] == {1, 15}
    assert fields["month"] == {1, 2, 3}
    assert fields["weekday"] == {0, 1, 2, 3, 4}  # Monday..Friday in Python's numbering


def test_sunday_is_0_or_7_and_seconds_may_lead() -> None:
    assert parse_cron("0 0 * * 0")["weekday"] == parse_cron("0 0 * * 7")["weekday"] == {6}
    fields = parse_cron("*/15 * * * * *")
    assert fields["second"] == {0, 15, 30, 45}
    assert fields["minute"] is None


def test_step_from_a_start_value() -> None:
    assert parse_cron("5/20 * * * *")["minute"] == {5, 25, 45}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "expected 5 fields"),
        ("61 * * * *", "minute: 61 is outside 0-59"),
        ("x * * * *", "minute: 'x' is not a number"),
        ("5-1 * * * *", "minute: range 5-1 runs backwards"),
        ("*/0 * * * *", "minute: 0 is outside 1-59"),
        ("* * 0 * *", "day: 0 is outside 1-31"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(expression)
