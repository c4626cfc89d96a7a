"""``MEMCOMPRESS_SCAN_CRON``: a cron expression turned into the field sets arq's ``cron()`` takes.

Parsed once, when the settings are read (:class:`CronSchedule`); the worker uses the parsed fields.

Five fields ``minute hour day month weekday`` (weekday 0 or 7 is Sunday), or six with a leading
``second`` field. Each field is ``*``, ``N``, ``A-B``, a comma list of these, with an optional ``/STEP``.
"""

from __future__ import annotations

from dataclasses import dataclass

FIELDS = ("second", "minute", "hour", "day", "month", "weekday")
RANGES = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day": (1, 31),
    "month": (1, 12),
    "weekday": (0, 7),
}

CronFields = dict[str, set[int] | None]


class CronError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed cron expression: the text as given and arq's field sets (see :func:`parse_cron`)."""

    expression: str
    fields: CronFields

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        return cls(expression, parse_cron(expression))


def parse_cron(expression: str) -> CronFields:
    """``"*/10 * * * *"`` → ``{"second": {0}, "minute": {0, 10, ...}, "hour": None, ...}``.

    ``None`` means "every"; weekdays come back as Python's (Monday 0 … Sunday 6), as arq expects.
    """
    parts = expression.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    if len(parts) != 6:
        raise CronError(f"expected 5 fields (or 6 with seconds first), got {len(parts)}: {expression!r}")
    fields: CronFields = {}
    for name, text in zip(FIELDS, parts, strict=True):
        values = _parse_field(name, text)
        if name == "weekday" and values is not None:
            values = {(day - 1) % 7 for day in values}  # cron 0/7 = Sunday → Python 6
        fields[name] = values
    return fields


def _parse_field(name: str, text: str) -> set[int] | None:
    low, high = RANGES[name]
    if text == "*":
        return None
    values: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = _number(name, step_text, 1, high) if step_text else 1
        if span == "*":
            start, end = low, high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = _number(name, first, low, high), _number(name, last, low, high)
            if start > end:
                raise CronError(f"{name}: range {span} runs backwards")
        else:
            start = _number(name, span, low, high)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return values


def _number(name: str, text: str, low: int, high: int) -> int:
    if not text.isdigit():
        raise CronError(f"{name}: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name}: {value} is outside {low}-{high}")
    return value
