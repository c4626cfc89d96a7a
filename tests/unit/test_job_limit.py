"""The adaptive job limit: exact, from the samples alone (it reads no clock)."""

from __future__ import annotations

import pytest

from memcompress.worker.job_limit import INITIAL_LIMIT, AdaptiveJobLimit


def feed(limit: AdaptiveJobLimit, seconds: float, *, in_flight: int | None = None, windows: int = 1) -> None:
    """``windows`` windows of one command taking ``seconds``, the limit fully used unless told."""
    for _ in range(windows * limit.window):
        limit.observe("find", seconds, limit.limit if in_flight is None else in_flight)


def test_it_starts_low_and_doubles_to_max_jobs_while_the_store_keeps_its_latency() -> None:
    limit = AdaptiveJobLimit(16)
    assert limit.limit == INITIAL_LIMIT == 4
    seen = [limit.limit]
    for _ in range(3):
        feed(limit, 0.010)
        seen.append(limit.limit)
    assert seen == [4, 8, 16, 16]
    feed(limit, 0.010, windows=20)
    assert limit.limit == 16  # never past max_jobs


def test_after_its_first_fall_it_grows_by_about_its_square_root() -> None:
    limit = AdaptiveJobLimit(64, initial=32)
    feed(limit, 0.010)  # the baseline; 32 -> 64
    feed(limit, 0.080)  # 8x: halved to 32
    assert limit.limit == 32
    feed(limit, 0.010)
    assert limit.limit == 37  # 32 + sqrt(32)


def test_a_max_jobs_under_the_initial_limit_is_where_it_starts() -> None:
    assert AdaptiveJobLimit(2).limit == 2
    assert AdaptiveJobLimit(1).limit == 1


def test_it_falls_at_most_to_half_per_window_and_never_below_one() -> None:
    limit = AdaptiveJobLimit(32, initial=32)
    feed(limit, 0.010)  # the baseline
    seen = [limit.limit]
    for _ in range(5):
        feed(limit, 0.200)  # 20 times slower than the baseline: the store is queueing
        seen.append(limit.limit)
    assert seen == [32, 16, 8, 4, 2, 1]
    feed(limit, 0.400, in_flight=3)  # slower still, but jobs still draining: nothing is learnt
    assert limit.limit == 1


def test_latency_within_the_tolerance_does_not_lower_it() -> None:
    limit = AdaptiveJobLimit(16, initial=8)
    feed(limit, 0.010)
    feed(limit, 0.029, windows=5)  # under three times the baseline
    assert limit.limit >= 8


def test_the_fall_follows_the_gradient() -> None:
    limit = AdaptiveJobLimit(16, initial=12, tolerance=2.0)  # a tolerance of 2 here
    feed(limit, 0.010, in_flight=0)  # the baseline; nothing in flight: no growth either
    assert limit.limit == 12
    feed(limit, 0.030, in_flight=12)  # 3x the baseline: tolerance / ratio = 2/3
    assert limit.limit == 8


def test_an_unused_limit_does_not_grow() -> None:
    limit = AdaptiveJobLimit(16)
    feed(limit, 0.010, in_flight=1, windows=10)  # 1 of 4 in use: below half
    assert limit.limit == INITIAL_LIMIT
    feed(limit, 0.010, in_flight=2)
    assert limit.limit > INITIAL_LIMIT


def test_each_command_is_measured_against_its_own_baseline() -> None:
    limit = AdaptiveJobLimit(16, initial=8)
    for _ in range(10 * limit.window // 2):  # a slow delete and a quick lookup, both at their usual cost
        limit.observe("delete", 0.030, 8)
        limit.observe("find", 0.002, 8)
    assert limit.limit == 16


def test_one_slow_command_in_a_window_is_not_a_slow_store() -> None:
    limit = AdaptiveJobLimit(64, initial=8)
    feed(limit, 0.010, in_flight=0)  # the baseline
    for _ in range(2):
        for i in range(limit.window):
            limit.observe("find", 1.0 if i == 0 else 0.010, limit.limit)  # the odd stall of a busy machine
    assert limit.limit == 32  # still doubling


def test_it_settles_near_what_a_saturated_store_can_serve() -> None:
    """A closed loop against a model store serving 4 commands at once at 10 ms; more queue: the
    latency grows with the jobs in flight past 4. The limit stays near the store's capacity,
    far from max_jobs, and recovers when the store gets faster."""
    limit = AdaptiveJobLimit(64)
    history = []
    for _ in range(200):
        in_flight = limit.limit
        feed(limit, 0.010 * max(1.0, in_flight / 4), in_flight=in_flight)
        history.append(limit.limit)
    settled = history[50:]
    assert max(settled) <= 16 and min(settled) >= 3, settled  # latency at most ~tolerance x capacity
    for _ in range(40):  # the store now serves 16 at once
        in_flight = limit.limit
        feed(limit, 0.010 * max(1.0, in_flight / 16), in_flight=in_flight)
    assert limit.limit >= 16


def test_a_store_that_became_slower_for_good_is_learnt() -> None:
    limit = AdaptiveJobLimit(16, initial=16)
    feed(limit, 0.010)
    feed(limit, 0.100, windows=4)  # the commands now always cost 10x (a bigger collection, say)
    assert limit.limit == 1
    feed(limit, 0.100, windows=20)  # learnt at a limit of one: it grows again
    assert limit.limit == 16


@pytest.mark.parametrize(
    "arguments", [{"max_jobs": 0}, {"max_jobs": 4, "window": 0}, {"max_jobs": 4, "tolerance": 0.5}]
)
def test_nonsense_is_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="at least"):
        AdaptiveJobLimit(**arguments)  # type: ignore[arg-type]
