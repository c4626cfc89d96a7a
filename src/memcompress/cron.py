"""``MEMCOMPRESS_SCAN_CRON``: a cron expression turned into the field sets arq's ``cron()`` takes.

Parsed once, when the settings are read (:class:`CronSchedule`), by croniter (a kept library): the
standard five fields ``minute hour day month weekday`` with names (``jan``, ``mon``), ranges, lists,
steps and the ``@hourly``/``@daily``/``@weekly``/``@monthly``/``@yearly`` macros, or six fields with a
leading ``second`` field. Weekday 0 or 7 is Sunday. As in standard cron, when both day-of-month and
day-of-week are restricted a day matches either of them: that is two arq cron entries (``runs``),
because arq matches every field at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from croniter import croniter
from croniter.croniter import CroniterError

FIELDS = ("minute", "hour", "day", "month", "weekday", "second")

CronFields = dict[str, set[int] | None]


class CronError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed cron expression: the text as given, and one or two arq field sets (see :func:`parse_cron`)."""

    expression: str
    runs: tuple[CronFields, ...]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        return cls(expression, parse_cron(expression))


def parse_cron(expression: str) -> tuple[CronFields, ...]:
    """``"*/10 * * * *"`` → ``({"second": {0}, "minute": {0, 10, ...}, "hour": None, ...},)``.

    ``None`` means "every"; weekdays come back as Python's (Monday 0 … Sunday 6), as arq expects.
    Two field sets when day-of-month and day-of-week are both restricted (standard cron's "either").
    """
    text = expression.strip()
    six = not text.startswith("@") and len(text.split()) == 6
    try:
        expanded, nth_weekdays = croniter.expand(text, second_at_beginning=six)
    except CroniterError as error:
        raise CronError(f"{expression!r}: {error}") from None
    if len(expanded) not in (5, 6) or nth_weekdays or any("l" in values for values in expanded):
        raise CronError(f"{expression!r}: use 5 fields (or 6 with seconds first), without L, # or a year")
    fields: CronFields = {
        name: None if values == ["*"] else {int(v) for v in values}
        for name, values in zip(FIELDS, expanded, strict=False)
    }
    fields["second"] = fields.get("second") or {0}
    if fields["weekday"] is not None:
        fields["weekday"] = {(day - 1) % 7 for day in fields["weekday"]}  # cron 0 = Sunday → Python 6
    if fields["day"] is not None and fields["weekday"] is not None:
        return (fields | {"weekday": None}, fields | {"day": None})
    return (fields,)
