"""Run every benchmark one after another and print their tables (``make bench`` runs ``--quick``).

    .venv/bin/python bench/run_all.py --quick                       # a few minutes
    .venv/bin/python bench/run_all.py --quick --chart /tmp/bench.png
    .venv/bin/python bench/run_all.py                               # the full versions (much longer)

Each benchmark is its own process with its own embedded servers (or the ones named by
MEMCOMPRESS_BENCH_MONGODB_URI / MEMCOMPRESS_BENCH_REDIS_URL). Numbers depend on the machine and on
whatever else runs on it: they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def steps(quick: bool, chart: Path | None) -> list[tuple[str, list[str]]]:
    mode = ["--quick"] if quick else []
    throughput = [*mode, *(["--chart", str(chart)] if chart else [])]
    return [
        ("throughput: ours vs TL-08", ["throughput.py", *throughput]),
        ("per-user cost vs history length", ["per_user_cost.py", *mode]),
        ("scan cost vs total events", ["scan.py", *mode]),
        ("fidelity: facts kept in summary", ["fidelity.py", "--quick" if quick else "--sweep"]),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the short versions (for `make bench`)")
    parser.add_argument("--chart", type=Path, help="PNG of users/s vs max_jobs (from the throughput run)")
    args = parser.parse_args()
    started = time.perf_counter()
    durations: list[tuple[str, float, int]] = []
    for title, argv in steps(args.quick, args.chart):
        print(f"\n=== {title} ({' '.join(argv)})", flush=True)
        step_started = time.perf_counter()
        code = subprocess.run([sys.executable, str(BENCH / argv[0]), *argv[1:]], check=False).returncode
        durations.append((title, time.perf_counter() - step_started, code))
    print("\n=== run times")
    for title, seconds, code in durations:
        print(f"{title:<34} {seconds:7.1f} s{'' if code == 0 else f'  (exit {code})'}")
    print(f"{'total':<34} {time.perf_counter() - started:7.1f} s")
    return max((code for _, _, code in durations), default=0)


if __name__ == "__main__":
    sys.exit(main())
