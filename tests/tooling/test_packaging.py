"""The package as an app installs it: ``pip install memcompress 'redis>=6'`` in a fresh venv resolves,
and ``request_compression`` is there without arq; the sdist holds the operator's files too. Builds the wheel from the repository's files with
pip and the machine's package index (about 10 s), so it runs in the default suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tomllib
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


SDIST = """
import sys
from setuptools import build_meta
print(build_meta.build_sdist(sys.argv[1]))
"""


def test_the_sdist_holds_the_runbook_the_docs_and_the_deploy_files(tmp_path: Path) -> None:
    """Built from a copy of the whole working tree (caches left out) with the setuptools the project
    builds with, so the sdist holds what MANIFEST.in and pyproject.toml select, nothing more."""
    source = tmp_path / "memcompress"
    skip = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", ".*_cache", "build", "dist", "*.env", ".env"
    )
    shutil.copytree(ROOT, source, ignore=skip)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", *requires], capture_output=True, text=True, timeout=300
    )
    assert install.returncode == 0, install.stderr[-3000:]
    dist = tmp_path / "dist"
    built = subprocess.run(
        [python, "-c", SDIST, str(dist)], cwd=source, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr[-3000:]
    with tarfile.open(dist / built.stdout.strip().splitlines()[-1]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    expected = {"runbook.md", "README.md", "LICENSE", "MANIFEST.in", "src/memcompress/py.typed"}
    expected |= {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").rglob("*") if path.is_file()}
    expected |= {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "deploy").rglob("*")
        if path.is_file() and path.name != "memcompress.env"  # a local secrets file, never shipped
    }
    assert expected - names == set()
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
