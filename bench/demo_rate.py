"""Users/s of ``memcompress demo`` as a new user runs it: its own configuration (embedded servers, two
worker processes and their per-worker job limit, the offline summariser, archive retention), timed by
the demo itself from the first job queued to the last user ended.

    .venv/bin/python bench/demo_rate.py              # 200 users, as `make demo`: ~30 s here
    .venv/bin/python bench/demo_rate.py --quick      # 100 users (about 50 over the threshold)

The demo runs as a child process (``python -m memcompress demo``) and this script reads the rate from
its summary line. With MEMCOMPRESS_BENCH_MONGODB_URI / MEMCOMPRESS_BENCH_REDIS_URL the demo uses those
servers instead (its own database and queue, removed at the end). Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from common import MONGO_URI_ENV, REDIS_URL_ENV, load_average, print_machine, table

QUICK_USERS = 100
FULL_USERS = 200
# "2 worker processes, 4.3 users/s in 24 s; ..." (memcompress.demo.run_demo's summary line)
SUMMARY = re.compile(r"(\d+) worker process(?:es)?, ([\d.]+) users/s in (\d+) s")


def run(users: int) -> dict[str, object]:
    env = dict(os.environ)
    for bench, demo in ((MONGO_URI_ENV, "MEMCOMPRESS_MONGODB_URI"), (REDIS_URL_ENV, "MEMCOMPRESS_REDIS_URL")):
        if os.environ.get(bench):
            env[demo] = os.environ[bench]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "memcompress", "demo", "--users", str(users)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = SUMMARY.search(done.stdout)
    return {
        "users": users,
        "workers": int(found[1]) if found else None,
        "users_per_s": float(found[2]) if found else None,
        "in_span_s": int(found[3]) if found else None,
        "wall_s": round(time.perf_counter() - started, 1),
        "exit": done.returncode,
        "load": load_average(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_USERS} users instead of {FULL_USERS}")
    parser.add_argument("--json", type=Path, help="also write the rows here (scratch output, e.g. /tmp)")
    args = parser.parse_args()
    print_machine()
    row = run(QUICK_USERS if args.quick else FULL_USERS)
    headers = list(row)
    print(table(headers, [[row[h] if row[h] is not None else "-" for h in headers]]))
    if args.json is not None:
        args.json.write_text(json.dumps([row], indent=2))
    return 0 if row["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
