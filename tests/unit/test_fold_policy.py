"""Where the kept history starts (jobs.boundary): counts, token targets and whole tool exchanges."""

from __future__ import annotations

from datetime import timedelta

from memcompress.jobs.fold_policy import Limits, events_to_fold, kept_start
from memcompress.models import MemoryEvent, ToolCall
from memcompress.testing.factories import T0

LIMITS = Limits(threshold=10, keep_last=3, trigger_tokens=None, target_tokens=None, min_fold=1)


def _event(
    i: int, content: str = "", *, calls: tuple[str, ...] = (), answers: str | None = None
) -> MemoryEvent:
    role = "tool" if answers else "assistant" if calls else "user"
    return MemoryEvent(
        user_id="u",
        role=role,
        content=content or f"message {i}",
        created_at=T0 + timedelta(seconds=i),
        tool_calls=tuple(ToolCall(id=c, name="lookup") for c in calls),
        tool_call_id=answers,
    )


def test_plain_history_keeps_the_newest_keep_last() -> None:
    window = [_event(i) for i in range(8)]
    assert kept_start(window, LIMITS) == 5
    assert events_to_fold(20, window, LIMITS) == 17


def test_a_result_kept_pulls_its_call_and_every_result_into_the_kept_history() -> None:
    # ... call(c1) | result(c1) result(c1) message: the boundary (index 5) would split them.
    window = [
        *(_event(i) for i in range(4)),
        _event(4, calls=("c1",)),
        _event(5, answers="c1"),
        _event(6, answers="c1"),
        _event(7),
    ]
    assert kept_start(window, LIMITS) == 4


def test_parallel_calls_stay_with_all_their_results() -> None:
    window = [
        *(_event(i) for i in range(3)),
        _event(3, calls=("a", "b")),
        _event(4, answers="a"),
        _event(5, answers="b"),
        _event(6),
        _event(7),
    ]
    assert kept_start(window, Limits(10, 4, None, None, 1)) == 3  # keep_last 4 would start at index 4


def test_a_call_with_no_result_yet_at_the_boundary_is_kept() -> None:
    window = [*(_event(i) for i in range(5)), _event(5, calls=("pending",)), _event(6), _event(7)]
    assert kept_start(window, Limits(10, 2, None, None, 1)) == 5


def test_a_whole_exchange_before_the_boundary_is_folded_whole() -> None:
    window = [_event(0, calls=("c",)), _event(1, answers="c"), *(_event(i) for i in range(2, 8))]
    assert kept_start(window, LIMITS) == 5


def test_a_token_target_keeps_fewer_events() -> None:
    window = [_event(i, "x" * 300) for i in range(8)]  # 100 estimated tokens each
    limits = Limits(threshold=10, keep_last=6, trigger_tokens=1000, target_tokens=250, min_fold=1)
    assert kept_start(window, limits) == 6  # two events: 200 tokens


def test_triggers_and_the_smallest_fold() -> None:
    limits = Limits(threshold=50, keep_last=20, trigger_tokens=2000, target_tokens=500, min_fold=10)
    assert limits.over_trigger(51, 0) and limits.over_trigger(3, 6003) and not limits.over_trigger(50, 6000)
    assert limits.smallest_fold == 10
    assert Limits(10, 3, None, None, 10).smallest_fold == 8  # a user over the count threshold folds
