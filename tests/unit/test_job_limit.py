"""The adaptive job limit: exact, from the times it is given alone (it reads no clock)."""

from __future__ import annotations

import math
import statistics

import pytest

from memcompress.worker.job_limit import WINDOW_S, AdaptiveJobLimit

TICK_S = 0.125  # and busy shares in eighths: every time below is exact in binary


class Clock:
    """Feeds a limit windows of store commands, as the worker's client would report them."""

    def __init__(self, limit: AdaptiveJobLimit) -> None:
        self.limit = limit
        self.ticks = 0

    def window(
        self, busy_share: float, in_flight: float, *, jobs: int | None = None, windows: int = 1
    ) -> None:
        """``windows`` windows in which, every tick, ``in_flight`` commands start together and end
        after ``busy_share`` of the tick (so the store has a command of this process in flight
        ``busy_share`` of the time, ``busy_share x in_flight`` of them on average), while ``jobs``
        jobs run (the whole limit unless told). Each call ends with the limit's decision on its last
        window (a window ends at the first command to end ``window_s`` after the previous one)."""
        per_tick = max(1, round(in_flight))
        for _ in range(windows):
            ticks = round(self.limit.window_s / TICK_S) + (1 if self.ticks == 0 else 0)
            for _ in range(ticks):
                now = self.ticks * TICK_S
                for _ in range(per_tick):
                    self.limit.command_started(now)
                running = self.limit.limit if jobs is None else jobs
                for _ in range(per_tick):
                    self.limit.command_finished(now + busy_share * TICK_S, running)
                self.ticks += 1


def test_it_starts_at_max_jobs_unless_told_and_keeps_within_its_bounds() -> None:
    assert AdaptiveJobLimit(16).limit == 16
    assert AdaptiveJobLimit(16, initial=4).limit == 4
    assert AdaptiveJobLimit(2, initial=4).limit == 2
    assert AdaptiveJobLimit(4, initial=0).limit == 1


def test_a_store_with_idle_time_is_never_throttled_however_slow_and_bursty_its_commands() -> None:
    """The first version's failure: on a busy machine every command took several times its usual
    latency while the store idled half the time, and bursts of jobs ending their LLM calls together
    queued ten commands at once. Neither is saturation."""
    limit = Clock(AdaptiveJobLimit(16))
    limit.window(0.625, 10, windows=50)
    limit.window(0.875, 16, windows=50)
    assert limit.limit.limit == 16


def test_a_saturated_store_lowers_it_at_most_to_half_per_window_and_never_below_one() -> None:
    limit = Clock(AdaptiveJobLimit(32))
    seen = [limit.limit.limit]
    for _ in range(6):
        limit.window(1.0, 20)  # never idle, twenty commands queued: ten times the allowed queue
        seen.append(limit.limit.limit)
    assert seen == [32, 16, 8, 4, 2, 1, 1]


def test_it_does_not_fall_again_while_jobs_from_before_a_fall_still_run() -> None:
    limit = Clock(AdaptiveJobLimit(32))
    limit.window(1.0, 20)  # saturated: 32 -> 16
    limit.window(1.0, 20, jobs=32)  # the 32 jobs claimed before are still running: the old limit's window
    assert limit.limit.limit == 16
    limit.window(1.0, 20, jobs=16)  # down to the limit, still saturated: now it falls
    assert limit.limit.limit == 8


def test_the_fall_follows_the_queue() -> None:
    limit = Clock(AdaptiveJobLimit(16, initial=12))
    limit.window(1.0, 3)  # three in flight where two may be: to two thirds
    assert limit.limit.limit == 8


def test_a_saturated_store_with_a_short_queue_keeps_it() -> None:
    """Saturated and holding no more than the allowed queue: the limit is where it should be (one
    job with a long history keeps the store busy by itself, and lowers nothing)."""
    limit = Clock(AdaptiveJobLimit(16, initial=6))
    limit.window(1.0, 2, windows=10)
    limit.window(1.0, 1, jobs=1, windows=10)
    assert limit.limit.limit == 6


def test_it_grows_back_by_its_square_root_once_the_store_idles_again() -> None:
    limit = Clock(AdaptiveJobLimit(64, initial=32))
    limit.window(1.0, 10)  # saturated: 32 -> 16
    assert limit.limit.limit == 16
    limit.window(0.5, 4)
    assert limit.limit.limit == 20  # 16 + sqrt(16)


def test_below_max_jobs_at_start_it_doubles_until_it_first_falls() -> None:
    limit = Clock(AdaptiveJobLimit(64, initial=4))
    seen = [limit.limit.limit]
    for _ in range(5):
        limit.window(0.5, 2)
        seen.append(limit.limit.limit)
    assert seen == [4, 8, 16, 32, 64, 64]


def test_an_unused_limit_does_not_grow() -> None:
    limit = Clock(AdaptiveJobLimit(16, initial=4))
    limit.window(0.25, 1, jobs=1, windows=10)  # 1 of 4 in use: below half
    assert limit.limit.limit == 4
    limit.window(0.25, 1, jobs=2)
    assert limit.limit.limit == 8


def test_a_window_lasts_window_s() -> None:
    limit = AdaptiveJobLimit(16)
    limit.command_started(0.0)
    limit.command_finished(WINDOW_S * 0.9, 16)  # saturated, but the window is not over yet
    assert limit.limit == 16
    for _ in range(20):  # twenty queued until the window ends
        limit.command_started(WINDOW_S * 0.9)
    for _ in range(20):
        limit.command_finished(WINDOW_S * 1.5, 16)
    assert limit.limit < 16


def _closed_loop(clock: Clock, llm_s: float, store_s: float, windows: int) -> list[int]:
    """A model store serving one command at a time: each job waits ``llm_s`` at the LLM and needs
    ``store_s`` of the store. With L jobs the store serves min(L / (llm_s + store_s), 1 / store_s)
    jobs a second; the jobs not at the LLM queue at the store. Returns the limit after each window."""
    limit, seen = clock.limit, []
    for _ in range(windows):
        jobs = limit.limit
        rate = min(jobs / (llm_s + store_s), 1 / store_s)
        busy_share = min(1.0, math.floor(rate * store_s * 8 + 1e-9) / 8)  # in eighths, see TICK_S
        clock.window(busy_share, max(1.0, jobs - rate * llm_s), jobs=jobs)
        seen.append(limit.limit)
    return seen


def test_against_a_saturated_store_it_settles_at_the_knee_and_loses_no_throughput() -> None:
    """200 ms at the LLM, 50 ms of store per job: the store saturates at 5 jobs. From 64 the limit
    falls to about there, where the store is still never idle, and stays near it."""
    seen = _closed_loop(Clock(AdaptiveJobLimit(64)), llm_s=0.2, store_s=0.05, windows=60)
    settled = seen[10:]
    assert min(settled) >= 5 and max(settled) <= 8, seen


def test_with_a_slow_llm_the_store_has_room_and_it_stays_at_max_jobs() -> None:
    seen = _closed_loop(Clock(AdaptiveJobLimit(16)), llm_s=2.0, store_s=0.05, windows=30)
    assert set(seen) == {16}


def test_it_follows_a_store_that_gets_faster() -> None:
    clock = Clock(AdaptiveJobLimit(64))
    _closed_loop(clock, llm_s=0.2, store_s=0.05, windows=30)
    assert clock.limit.limit <= 8
    seen = _closed_loop(clock, llm_s=0.2, store_s=0.01, windows=30)  # five times faster: knee at 21
    assert max(seen) > 21 and statistics.mean(seen[5:]) >= 14, seen  # up to the new knee, then around it


@pytest.mark.parametrize(
    "arguments",
    [
        {"max_jobs": 0},
        {"max_jobs": 4, "window_s": 0},
        {"max_jobs": 4, "saturated": 0},
        {"max_jobs": 4, "saturated": 1.5},
        {"max_jobs": 4, "queue": 0.5},
    ],
)
def test_nonsense_is_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="at least"):
        AdaptiveJobLimit(**arguments)  # type: ignore[arg-type]
