"""The benchmark scripts still import and parse their arguments (they are run by make targets the README
names, not by the suite, so an API change would otherwise break them unnoticed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = ["fidelity.py", "fold_memory.py", "per_user_cost.py", "run_all.py", "scan.py", "throughput.py"]


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
