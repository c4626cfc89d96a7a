"""How many jobs one worker process runs at once: a limit that backs off only when the store is saturated.

Two worker processes of 32 jobs each against one store can saturate it: every command then waits
behind the others, every fold slows down, and more jobs only add waiting. :class:`AdaptiveJobLimit`
gives the process a limit between 1 and ``MAX_JOBS`` that falls while the store is the bottleneck
and grows back while it is not. The worker claims a job from the queue only while it runs fewer than
the limit (:mod:`memcompress.worker.runner`), so a job waiting for a slot stays queued, where no time
limit runs and any other process may take it.

What saturation is here: the store is the bottleneck when, over a whole window, it never waited for
this process, i.e. at every moment at least one of the process's store commands was in flight (the
*busy share* of the window is ~1), and the commands queued behind each other (on average more than
``queue`` of them in flight). A command's latency alone cannot tell: on a machine whose CPUs are busy
with other programs every command takes several times longer without any queue at the store (a first
version that followed latency throttled a store that was 5 % busy; docs/benchmarks.md), and a burst
of jobs finishing their LLM calls together queues briefly at a store that then idles for seconds.
The busy share does tell: a store with spare capacity idles between this process's commands, however
slow each of them is, and a saturated one never does.

What it guarantees:

- ``limit`` is always an integer from 1 to ``max_jobs``; it starts at ``initial`` (default ``max_jobs``:
  a process runs what it was configured to until the store is seen saturated).
- It falls only at the end of a window in which the store was saturated (busy share at least
  ``saturated`` and more than ``queue`` commands in flight on average) and the process ran no more
  jobs than the limit at the window's end, to ``limit x queue / in flight``, at most to half per
  window. (Jobs above the limit are still running from before a fall: that window measured the old
  limit, and falling again on it would overshoot.) It never falls while the store has idle time
  between this process's commands, whatever their latency.
- It grows only after a window in which the store was not saturated and the process used at least
  half of its limit (a process that does not use its limit learns nothing about a larger one):
  doubling per window until it first falls (a slow start, as TCP's), then by about its square root.
- It is a pure function of the times it is given, in order: it reads no clock and draws nothing at
  random (so its tests are exact). The worker tells it when each MongoDB command starts and ends
  (:class:`memcompress.repositories.command_timing.CommandTimer`), with ``time.monotonic()``.
"""

from __future__ import annotations

import math

WINDOW_S = 4.0  # a decision per this many seconds: longer than a burst of jobs ending their LLM calls
SATURATED = 0.98  # busy share over which the store never waited for this process
QUEUE = 2.0  # commands in flight on average that a saturated store may hold for one process
MIN_GRADIENT = 0.5  # the limit falls at most to half per window


class AdaptiveJobLimit:
    """The number of jobs to run at once, from when the store is busy (see the module's docstring)."""

    def __init__(
        self,
        max_jobs: int,
        *,
        initial: int | None = None,
        window_s: float = WINDOW_S,
        saturated: float = SATURATED,
        queue: float = QUEUE,
    ) -> None:
        if max_jobs < 1 or window_s <= 0 or not 0 < saturated <= 1 or queue < 1:
            raise ValueError(
                "max_jobs must be at least 1, window_s over 0, saturated within (0, 1], queue at least 1"
            )
        self.max_jobs = max_jobs
        self.window_s = window_s
        self.saturated = saturated
        self.queue = queue
        self._limit = float(min(max(initial if initial is not None else max_jobs, 1), max_jobs))
        self._slow_start = True  # until the limit first falls
        self._in_flight = 0  # this process's store commands started and not yet ended
        self._last: float | None = None  # when the count last changed
        self._window_start: float | None = None
        self._busy = 0.0  # seconds of the window with a command in flight
        self._area = 0.0  # commands in flight x seconds
        self._busiest = 0  # the most jobs in flight seen at a command's end during the window

    @property
    def limit(self) -> int:
        return max(1, min(self.max_jobs, int(self._limit)))

    def command_started(self, now: float) -> None:
        """One of this process's store commands started at ``now`` (seconds, any monotonic clock)."""
        self._advance(now)
        self._in_flight += 1

    def command_finished(self, now: float, jobs_in_flight: int) -> None:
        """One ended at ``now``, while ``jobs_in_flight`` jobs ran in this process."""
        self._advance(now)
        self._in_flight = max(0, self._in_flight - 1)
        self._busiest = max(self._busiest, jobs_in_flight)
        assert self._window_start is not None  # set by _advance
        if now - self._window_start >= self.window_s:
            self._decide(now - self._window_start, jobs_in_flight)
            self._window_start = now
            self._busy = self._area = 0.0
            self._busiest = 0

    def _advance(self, now: float) -> None:
        if self._last is not None and self._in_flight:
            elapsed = max(0.0, now - self._last)
            self._busy += elapsed
            self._area += self._in_flight * elapsed
        self._last = now
        if self._window_start is None:
            self._window_start = now

    def _decide(self, span: float, jobs_now: int) -> None:
        busy_share, in_flight = self._busy / span, self._area / span
        if busy_share >= self.saturated:
            # Saturated: fall, unless the queue is short (the limit is where it should stay) or jobs
            # above the limit still run from before a fall (this window measured the old limit).
            if in_flight > self.queue and jobs_now <= self.limit:
                self._limit *= max(MIN_GRADIENT, self.queue / in_flight)
                self._slow_start = False
        elif self._busiest * 2 >= self.limit:
            self._limit += self._limit if self._slow_start else math.sqrt(self._limit)
        self._limit = min(float(self.max_jobs), max(1.0, self._limit))
