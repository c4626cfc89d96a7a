"""Run every benchmark one after another and print their tables (``make bench`` runs ``--quick``).

    .venv/bin/python bench/run_all.py --quick                       # a few minutes
    .venv/bin/python bench/run_all.py --quick --json /tmp/bench.json
    .venv/bin/python bench/run_all.py --quick --chart /tmp/bench.png
    .venv/bin/python bench/run_all.py                               # the full versions (much longer)

Each benchmark is its own process with its own embedded servers (or the ones named by
MEMCOMPRESS_BENCH_MONGODB_URI / MEMCOMPRESS_BENCH_REDIS_URL). Numbers depend on the machine and on
whatever else runs on it: they are printed, never asserted.

``--json PATH`` writes one object computed from this run's rows (see :func:`headline`): the ratio to
the TL-08 design at 16 jobs, the fraction of the ideal users/s at 1 and 4 jobs, how far throughput
falls at the most processes × jobs from the best configuration (``collapse_ratio``), the store's CPU
per user against TL-08's, the fraction of the ideal at 16 jobs with a 2 s LLM, the store operations
of one single-chunk user, the peak RSS growth from a 1k- to a 100k-event history (full runs only;
null with ``--quick``), how much cheaper the incremental scan is than the full one at 100k events,
the users/s of ``memcompress demo`` in its own configuration (null when it failed), and the
machine's load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SLOW_LATENCY_S = 2.0  # throughput.py's --slow-latency default: the store is not the limit there


def steps(quick: bool, chart: Path | None, rows: Path) -> list[tuple[str, list[str]]]:
    """(title, script and arguments); each script writes its rows to ``rows / <script>.json``."""
    mode = ["--quick"] if quick else []
    throughput = [*mode, *(["--chart", str(chart)] if chart else [])]
    planned = [
        ("throughput: ours vs TL-08", ["throughput.py", *throughput]),
        ("per-user cost vs history length", ["per_user_cost.py", *mode]),
        ("scan cost vs total events", ["scan.py", *mode]),
        ("memcompress demo: users/s", ["demo_rate.py", *mode]),
    ]
    if not quick:
        planned.append(("fold memory: 1k vs 100k events", ["fold_memory.py", "--events", "1000", "100000"]))
    with_rows = [
        (title, [*argv, "--json", str(rows / f"{Path(argv[0]).stem}.json")]) for title, argv in planned
    ]
    return [
        *with_rows,
        ("fidelity: facts kept in summary", ["fidelity.py", "--quick" if quick else "--sweep"]),
    ]


def _rows(rows: Path, name: str) -> list[dict[str, Any]]:
    path = rows / f"{name}.json"
    loaded: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    return loaded


def _ours_at(throughput: list[dict[str, Any]], latency_s: float | None) -> list[dict[str, Any]]:
    """The product's own rows (the default poll delay) measured at ``latency_s``."""
    return [r for r in throughput if r["design"] == "ours" and latency_s and r["latency_s"] == latency_s]


def _ours(rows: list[dict[str, Any]], max_jobs: int) -> dict[str, Any] | None:
    """The row of one process at ``max_jobs``."""
    return next((r for r in rows if r["processes"] == 1 and r["max_jobs"] == max_jobs), None)


def _collapse_ratio(rows: list[dict[str, Any]]) -> float | None:
    """Best users/s of any processes × jobs ÷ users/s at the most processes × jobs (1.0: no collapse)."""
    if not rows:
        return None
    largest = max(rows, key=lambda r: (r["processes"] * r["max_jobs"], r["processes"]))
    best = max(r["users_per_s"] for r in rows)
    return round(best / largest["users_per_s"], 2) if largest["users_per_s"] else None


def _store_ms_per_user(row: dict[str, Any] | None) -> float | None:
    if row is None or row.get("mongo_cpu_s") is None or not row["compressed"]:
        return None
    return float(row["mongo_cpu_s"]) * 1000 / int(row["compressed"])


def _fraction_of_ideal_in_span(row: dict[str, Any] | None) -> float | None:
    """Users/s between the first job's start and the last one's end ÷ the ideal: the steady rate,
    without the worker process's start-up and exit."""
    if row is None or not row["latency_s"] or not row.get("job_span_s"):
        return None
    ideal = row["processes"] * row["max_jobs"] / row["latency_s"]
    return round(row["compressed"] / row["job_span_s"] / ideal, 3)


def _fraction_of_ideal(row: dict[str, Any] | None) -> float | None:
    if row is None or not row["latency_s"]:
        return None
    return round(row["users_per_s"] / (row["processes"] * row["max_jobs"] / row["latency_s"]), 3)


def headline(rows: Path, load_before: str, load_after: str) -> dict[str, Any]:
    """The machine-readable result, every number computed from the rows the scripts wrote."""
    throughput = _rows(rows, "throughput")
    tl08 = next((r for r in throughput if r["design"] == "tl08" and r["latency_s"]), None)
    ours = _ours_at(throughput, tl08["latency_s"] if tl08 else None)
    j16 = _ours(ours, 16)
    slow = _ours(_ours_at(throughput, SLOW_LATENCY_S), 16)
    ours_ms, tl08_ms = _store_ms_per_user(j16), _store_ms_per_user(tl08)
    single_chunk = next((r for r in _rows(rows, "per_user_cost") if r["chunks"] == 1), None)
    fold = {r["events"]: r["rss_peak_mb"] - r["rss_baseline_mb"] for r in _rows(rows, "fold_memory")}
    scan = {r["events"]: r for r in _rows(rows, "scan")}
    at_100k = scan.get(100_000, {})
    demo = next((r for r in _rows(rows, "demo_rate") if r["exit"] == 0), None)
    return {
        "ratio_vs_tl08_j16": round(j16["users_per_s"] / tl08["users_per_s"], 2) if j16 and tl08 else None,
        "fraction_of_ideal_j1": _fraction_of_ideal(_ours(ours, 1)),
        "fraction_of_ideal_j4": _fraction_of_ideal(_ours(ours, 4)),
        "collapse_ratio": _collapse_ratio(ours),
        "store_cpu_ms_per_user_vs_tl08": round(ours_ms / tl08_ms, 2) if ours_ms and tl08_ms else None,
        "fraction_of_ideal_j16_slow_llm": _fraction_of_ideal_in_span(slow),
        "fraction_of_ideal_j16_slow_llm_wall": _fraction_of_ideal(slow),
        "store_ops_per_user": single_chunk["round_trips"] if single_chunk else None,
        "rss_growth_mb_1k_100k": round(fold[100_000] - fold[1000], 1)
        if 1000 in fold and 100_000 in fold
        else None,
        "scan_incremental_vs_full_100k": at_100k.get("full_vs_incremental"),
        "demo_users_per_s": demo["users_per_s"] if demo else None,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }


def _load() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the short versions (for `make bench`)")
    parser.add_argument("--chart", type=Path, help="PNG of users/s vs max_jobs (from the throughput run)")
    parser.add_argument("--json", type=Path, help="write the headline numbers here as one JSON object")
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = _load()
    durations: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="memcompress-bench-") as scratch:
        rows = Path(scratch)
        for title, argv in steps(args.quick, args.chart, rows):
            print(f"\n=== {title} ({' '.join(argv)})", flush=True)
            step_started = time.perf_counter()
            code = subprocess.run([sys.executable, str(BENCH / argv[0]), *argv[1:]], check=False).returncode
            durations.append((title, time.perf_counter() - step_started, code))
        result = headline(rows, load_before, _load())
    print("\n=== run times")
    for title, seconds, code in durations:
        print(f"{title:<34} {seconds:7.1f} s{'' if code == 0 else f'  (exit {code})'}")
    print(f"{'total':<34} {time.perf_counter() - started:7.1f} s")
    print("\n=== headline\n" + json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return max((code for _, _, code in durations), default=0)


if __name__ == "__main__":
    sys.exit(main())
