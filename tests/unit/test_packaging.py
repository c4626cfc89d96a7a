"""The package as an app installs it: ``pip install memcompress 'redis>=6'`` in a fresh venv resolves,
and ``request_compression`` is there without arq. Builds the wheel from the repository's files with
pip and the machine's package index (about 10 s), so it runs in the default suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import importlib.metadata, importlib.resources, importlib.util, sys
import memcompress, redis

assert importlib.util.find_spec("arq") is None, "arq was installed"
assert int(redis.__version__.split(".")[0]) >= 6, redis.__version__

class Client:  # stands in for a redis-py client: records the command it would send
    def zadd(self, key, mapping, nx):
        self.sent = (key, dict(mapping), nx)
        return 1

client = Client()
assert memcompress.request_compression(client, "u1", 5) is True
key, mapping, nx = client.sent
assert (key, list(mapping), nx) == ("memcompress:requests", ["u1"], True)
assert "arq" not in sys.modules

assert importlib.resources.files("memcompress").joinpath("py.typed").is_file()
meta = importlib.metadata.metadata("memcompress")
assert meta["License-Expression"] == "MIT", meta["License-Expression"]
files = [str(f) for f in importlib.metadata.files("memcompress")]
assert any(f.endswith("licenses/LICENSE") for f in files), files
print("ok", redis.__version__)
"""


def test_the_base_install_resolves_with_redis_6_or_later_and_needs_no_arq(tmp_path: Path) -> None:
    source = tmp_path / "memcompress"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")

    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(source), "redis>=6"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run([python, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok ")
