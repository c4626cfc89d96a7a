"""Nothing a user wrote, no summary and no credential leaves the process: every output of the
``memcompress`` command (stdout, stderr with ``--verbose``, text and JSON logs, ``status --json``) and
what it stores about runs (``compaction_log``, dead letters), through succeeding and failing runs."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
from pymongo.database import Database

from memcompress.keys import job_id
from memcompress.repositories.database import COMPACTION_LOG, DEAD_LETTERS, USER_MEMORY, USER_MEMORY_ARCHIVE
from memcompress.testing import llm_server
from memcompress.testing.app_documents import app_event
from memcompress.testing.llm_server import FakeLLM
from memcompress.testing.workers import PASSED_THROUGH

pytestmark = pytest.mark.redis
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Gateway(BaseHTTPRequestHandler):
    """A Pushgateway that remembers the Authorization header of each push."""

    auth: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        Gateway.auth.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def gateway() -> Iterator[str]:
    Gateway.auth = []
    server = HTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    inherited = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    return subprocess.run(
        [sys.executable, "-m", "memcompress", *args],
        env=inherited | env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_content_summary_or_credential_in_any_output_even_verbose(
    mongo: Database[dict[str, Any]],
    mongo_uri: str,
    db_name: str,
    redis_url: str,
    llm: FakeLLM,
    gateway: str,
    log_format: str,
) -> None:
    secret = f"Kontent{uuid.uuid4().hex[:10]}"  # in every event the users wrote
    summary_mark = f"Summ{uuid.uuid4().hex[:10]}"  # in every summary the LLM answers
    llm_password, api_key, push_password = (
        f"{kind}{uuid.uuid4().hex[:10]}" for kind in ("llmpw", "sk", "pushpw")
    )
    llm.answer = lambda number, previous, texts: f"{summary_mark} {number}: the user likes topics."
    host = llm.base_url.removeprefix("http://")
    env = {
        "MEMCOMPRESS_MONGODB_URI": mongo_uri,
        "MEMCOMPRESS_MONGODB_DB": db_name,
        "MEMCOMPRESS_REDIS_URL": redis_url,
        "MEMCOMPRESS_QUEUE_NAME": f"test:{uuid.uuid4().hex[:10]}",
        "MEMCOMPRESS_LLM_BASE_URL": f"http://llmuser:{llm_password}@{host}",
        "MEMCOMPRESS_LLM_API_KEY": api_key,
        "MEMCOMPRESS_LLM_MAX_RETRIES": "0",
        "MEMCOMPRESS_RETENTION": "archive",
        "MEMCOMPRESS_MAX_TRIES": "1",
        "MEMCOMPRESS_METRICS_PORT": "0",
        "MEMCOMPRESS_SCAN_CRON": "0 0 1 1 *",
        "MEMCOMPRESS_PUSHGATEWAY_URL": f"http://ops:{push_password}@{gateway}",
    }
    users = {name: f"{name}-{uuid.uuid4().hex[:6]}" for name in ("ok", "store", "llm", "batch")}
    mongo[USER_MEMORY].insert_many(
        [
            app_event(
                user,
                "user",
                f"{secret} {i}: call me at 555-01{i:02d}",
                T0 + timedelta(seconds=i),
                _id=f"{user}:{i}",
            )
            for user in users.values()
            for i in range(60)
        ]
    )
    # Another user's archived event holds the _id of one of "store"'s events: archiving that one fails
    # with a duplicate key, and PyMongo's error text embeds the whole failed document.
    mongo[USER_MEMORY_ARCHIVE].insert_one({"_id": f"{users['store']}:3", "user_id": "someone-else"})

    verbose = ("--verbose", "--log-format", log_format)
    outputs = [
        _run(env, *verbose, "compress", users["ok"]),
        _run(env, *verbose, "compress", users["store"]),
        _run(env, *verbose, "enqueue", users["llm"]),
    ]
    llm.fail_next(llm_server.HTTP_400)  # the worker's one request: a permanent failure, a dead letter
    outputs.append(_run(env, *verbose, "worker", "--burst"))
    outputs += [
        _run(env, *verbose, "run-once"),  # "batch" compresses, "store" fails again; metrics pushed
        _run(env, *verbose, "status", "--json"),
        _run(env, *verbose, "status"),
        _run(env, *verbose, "config"),
    ]
    stored = json.dumps(
        [*mongo[COMPACTION_LOG].find({}, {"_id": 0}), *mongo[DEAD_LETTERS].find({}, {"_id": 0})], default=str
    )

    everything = stored + "".join(done.stdout + done.stderr for done in outputs)
    for leaked in (secret, summary_mark, llm_password, api_key, push_password, "555-01"):
        assert leaked not in everything, leaked
    # ... and the runs did what this test is about: succeeded, failed on the store, dead-lettered.
    assert [done.returncode for done in outputs] == [0, 1, 0, 0, 1, 0, 0, 0], [
        d.stderr[-2000:] for d in outputs
    ]
    assert llm.exchanges, "no summary was written"
    assert "BulkWriteError (code 65); write error codes 11000" in outputs[1].stdout
    assert "Traceback" in outputs[1].stderr and "compression of user" in outputs[1].stderr
    letter = mongo[DEAD_LETTERS].find_one({"_id": users["llm"]})
    assert letter is not None and "HTTP 400" in letter["reason"]
    assert f"llmuser:***@{host}" in outputs[3].stderr  # the worker's settings line, redacted
    job_id_ = job_id(users["llm"], env["MEMCOMPRESS_QUEUE_NAME"])
    job_lines = [  # but the poll loop's lines about the job, which are not the job's own
        line for line in outputs[3].stderr.splitlines() if job_id_ in line and "already running" not in line
    ]
    assert len(job_lines) >= 3  # arq's start and end, and the job's own lines between them
    if log_format == "json":
        entries = [json.loads(line) for line in outputs[3].stderr.splitlines()]
        assert all(datetime.fromisoformat(entry["time"]).utcoffset() is not None for entry in entries)
        assert all(
            (entry["user_id"], entry["job_id"]) == (users["llm"], job_id_)
            for entry in map(json.loads, job_lines)
        )
    else:
        assert all(line.endswith(f"user_id={users['llm']} job_id={job_id_}") for line in job_lines)
    assert "compressed       1" in outputs[4].stdout
    expected_auth = "Basic " + base64.b64encode(f"ops:{push_password}".encode()).decode()
    assert Gateway.auth == [expected_auth]
