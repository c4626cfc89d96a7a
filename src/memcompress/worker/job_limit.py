"""How many jobs one worker process runs at once: a limit that follows the store's observed latency.

Two worker processes of 16 jobs each against one store can saturate it: every command then waits
behind the others, every fold slows down, and more jobs only add waiting. :class:`AdaptiveJobLimit`
gives the process a limit between 1 and ``MAX_JOBS`` that backs off as the store's commands slow down
(a gradient limit in the spirit of Netflix's concurrency-limits ``Gradient2Limit``). The worker claims
a job from the queue only while it runs fewer than the limit (:mod:`memcompress.worker.runner`), so a
job waiting for a slot stays queued, where no time limit runs and any other process may take it.

What it guarantees:

- ``limit`` is always an integer from 1 to ``max_jobs``; it starts at ``min(max_jobs, INITIAL_LIMIT)``.
- It falls, at most to half per window, when the store's commands take more than ``tolerance`` times
  what each of them takes on a store that is not queueing; it never falls while they do not.
- It grows only while the latency is within ``tolerance`` and the process uses at least half of its
  limit (a process that does not use its limit learns nothing about a larger one): doubling per
  window until it first falls (a slow start, as TCP's), then by about its square root per window.
- It is a pure function of the samples and in-flight counts it is given, in order: no clock, no
  randomness (so its tests are exact). The worker feeds it every MongoDB command's duration (timed by
  the client, :class:`memcompress.repositories.command_timing.CommandTimer`).

How, in steps:

1. Every store command's duration is compared with that command's own baseline (a 30 ms delete and a
   2 ms lookup count alike): the baseline follows a faster sample by a quarter of the difference (a
   low quantile, not the single luckiest sample of a busy machine) and a slower one only while the
   process runs one job under a limit of one, when its own load cannot be what made the command slow:
   halfway per sample. So it stays what the command costs without queueing while the limit holds a
   queue at the tolerance, and a store that became slower for good (or busy with other processes'
   work) is learnt once the limit has fallen to one.
2. Every ``window`` samples, the median of their ratios (duration ÷ baseline) is the window's
   latency ratio; the median ignores the odd slow command of a busy machine.
3. ``gradient = clamp(tolerance / ratio, 0.5, 1)``; the limit becomes ``limit × gradient``, and when
   the gradient is 1 and at least half the limit was in use, ``+ limit`` before it first fell,
   ``+ sqrt(limit)`` after; then it is clamped.
"""

from __future__ import annotations

import math
import statistics

INITIAL_LIMIT = 4  # a new process starts here (or at MAX_JOBS if lower), then grows while the store keeps up
WINDOW_SAMPLES = 8  # store commands per decision: about one single-chunk fold's
TOLERANCE = 3.0  # the latency ratio over which the limit falls: commands queued ahead, past the noise
MIN_GRADIENT = 0.5  # the limit falls at most to half per window


class AdaptiveJobLimit:
    """The number of jobs to run at once, from the store's latency (see the module's docstring)."""

    def __init__(
        self,
        max_jobs: int,
        *,
        initial: int = INITIAL_LIMIT,
        window: int = WINDOW_SAMPLES,
        tolerance: float = TOLERANCE,
    ) -> None:
        if max_jobs < 1 or window < 1 or tolerance < 1:
            raise ValueError("max_jobs and window must be at least 1, tolerance at least 1.0")
        self.max_jobs = max_jobs
        self.window = window
        self.tolerance = tolerance
        self._limit = float(min(max(initial, 1), max_jobs))
        self._baselines: dict[str, float] = {}
        self._ratios: list[float] = []
        self._busiest = 0  # the most jobs in flight seen during the window
        self._slow_start = True  # until the limit first falls

    @property
    def limit(self) -> int:
        return max(1, min(self.max_jobs, int(self._limit)))

    def observe(self, command: str, seconds: float, in_flight: int) -> None:
        """One store command took ``seconds`` while ``in_flight`` jobs ran in this process."""
        baseline = self._baselines.get(command)
        if baseline is None or baseline <= 0:
            baseline = self._baselines[command] = seconds
        elif seconds < baseline:
            self._baselines[command] = baseline + (seconds - baseline) / 4
        elif self.limit == 1 and in_flight <= 1:
            self._baselines[command] = baseline + (seconds - baseline) / 2
        self._ratios.append(seconds / baseline if baseline > 0 else 1.0)
        self._busiest = max(self._busiest, in_flight)
        if len(self._ratios) >= self.window:
            self._decide(statistics.median(self._ratios), self._busiest)
            self._ratios.clear()
            self._busiest = 0

    def _decide(self, ratio: float, busiest: int) -> None:
        gradient = min(1.0, max(MIN_GRADIENT, self.tolerance / ratio)) if ratio > 0 else 1.0
        limit = self._limit * gradient
        if gradient < 1.0:
            self._slow_start = False
        elif busiest * 2 >= self.limit:
            limit += limit if self._slow_start else math.sqrt(limit)
        self._limit = min(float(self.max_jobs), max(1.0, limit))
