"""The benchmark scripts still import and parse their arguments (they are run by make targets the README
names, not by the suite, so an API change would otherwise break them unnoticed)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = [
    "demo_rate.py",
    "fidelity.py",
    "fold_memory.py",
    "language_check.py",
    "llm_server.py",
    "per_user_cost.py",
    "request_path.py",
    "run_all.py",
    "scan.py",
    "throughput.py",
]


def test_every_script_is_listed() -> None:
    runnable = {path.name for path in BENCH.glob("*.py") if "__main__" in path.read_text(encoding="utf-8")}
    assert runnable == set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_script_starts(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


def test_the_headline_is_computed_from_the_rows_the_scripts_wrote(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)

    def ours(
        max_jobs: int, users_per_s: float, design: str = "ours", processes: int = 1, latency_s: float = 0.2
    ) -> dict[str, object]:
        return {
            "design": design,
            "processes": processes,
            "max_jobs": max_jobs,
            "latency_s": latency_s,
            "users_per_s": users_per_s,
            "compressed": 100,
            "mongo_cpu_s": 3.0,
            "job_span_s": 100 / (users_per_s * 1.25),
        }

    throughput = [
        {**ours(1, 4.0, design="tl08"), "mongo_cpu_s": 4.0},
        ours(1, 4.0),
        ours(4, 18.0),
        ours(16, 44.0),
        ours(16, 40.0, processes=2),  # the most processes x jobs at 200 ms
        ours(16, 10.0, design="ours-poll"),  # a what-if row: never the headline
        ours(16, 7.0, latency_s=2.0),  # the slow LLM
        {"design": "tl08", "processes": 1, "max_jobs": 1, "latency_s": 0.0, "users_per_s": 50.0},
    ]
    cost = [{"events": 60, "chunks": 1, "round_trips": 6}, {"events": 1000, "chunks": 2, "round_trips": 11}]
    fold = [
        {"events": 1000, "rss_peak_mb": 80.0, "rss_baseline_mb": 70.0},
        {"events": 100_000, "rss_peak_mb": 95.5, "rss_baseline_mb": 71.0},
    ]
    for name, rows in {"throughput": throughput, "per_user_cost": cost, "fold_memory": fold}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(rows))
    (tmp_path / "scan.json").write_text(json.dumps([{"events": 100_000, "full_vs_incremental": 12.5}]))
    (tmp_path / "demo_rate.json").write_text(json.dumps([{"users": 100, "users_per_s": 4.2, "exit": 0}]))

    result = run_all.headline(tmp_path, "0.10/0.20/0.30", "1.00/0.50/0.30")
    assert result == {
        "ratio_vs_tl08_j16": 11.0,
        "fraction_of_ideal_j1": 0.8,
        "fraction_of_ideal_j4": 0.9,
        "collapse_ratio": 1.1,
        "store_cpu_ms_per_user_vs_tl08": 0.75,
        "fraction_of_ideal_j16_slow_llm": 1.094,
        "fraction_of_ideal_j16_slow_llm_wall": 0.875,
        "store_ops_per_user": 6,
        "rss_growth_mb_1k_100k": 14.5,
        "scan_incremental_vs_full_100k": 12.5,
        "demo_users_per_s": 4.2,
        "load_average_before": "0.10/0.20/0.30",
        "load_average_after": "1.00/0.50/0.30",
    }
    (tmp_path / "fold_memory.json").unlink()  # --quick runs no fold_memory
    assert run_all.headline(tmp_path, "", "")["rss_growth_mb_1k_100k"] is None
    (tmp_path / "demo_rate.json").write_text(json.dumps([{"users": 100, "users_per_s": 0.1, "exit": 1}]))
    assert run_all.headline(tmp_path, "", "")["demo_users_per_s"] is None  # a failed demo has no rate
