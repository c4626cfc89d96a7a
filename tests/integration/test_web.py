"""``memcompress web`` as a real process, its pages rendered by a real headless Chromium (Debian's
``chromium``; skipped where it is missing), its actions posted as a browser's form would be.

``MEMCOMPRESS_TEST_SCREENSHOTS=docs`` also writes the pages' screenshots there (docs/web-*.png)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from memcompress.embedded import free_port
from memcompress.jobs import run_queued_compression
from memcompress.keys import job_id
from memcompress.repositories.database import USER_MEMORY, MongoDatabase
from memcompress.testing.app_documents import app_event, app_profile, app_save
from memcompress.testing.llm_server import HTTP_400, FakeLLM
from memcompress.testing.workers import eventually, requests_key, worker_env

from .conftest import ServicesFactory

pytestmark = pytest.mark.redis
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "t-" + uuid.uuid4().hex
SECRET = "my locker code is 7319"
SUMMARY = "The user's locker code is 7319."
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def browse(url: str, *, screenshot: Path | None = None) -> str:
    """The page's DOM after a real Chromium loaded it (and its screenshot, when asked)."""
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (apt-get install -y chromium): web pages not rendered")
    with tempfile.TemporaryDirectory() as profile:
        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"]
        if screenshot is not None:
            subprocess.run(
                [*flags, f"--screenshot={screenshot}", "--window-size=1100,650", "--hide-scrollbars", url],
                check=True,
                capture_output=True,
                timeout=60,
            )
        return subprocess.run(
            [*flags, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=60
        ).stdout


def post(url: str, fields: dict[str, str]) -> int:
    """A form's POST; the status code (a redirect is not followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST")
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def queue() -> str:
    return f"test:{uuid.uuid4().hex[:10]}"


@pytest.fixture
def web(mongo_uri: str, db_name: str, redis_url: str, queue: str) -> Iterator[str]:
    """``memcompress web --allow-actions`` on a free port, configured by environment as in production."""
    port = free_port()
    env = worker_env(mongo_uri, db_name, redis_url, queue, summarizer="extractive", web_token=TOKEN)
    env |= {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    argv = [sys.executable, "-m", "memcompress", "web", "--port", str(port), "--allow-actions"]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/dead", timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_the_pages_show_a_dead_letter_and_a_retry_with_the_token_queues_it(
    make_services: ServicesFactory,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    queue: str,
    web: str,
    tmp_path: Path,
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    await app_save(database, app_profile(user, memory_summary=SUMMARY, language="en"))
    await database.collection(USER_MEMORY).insert_many(
        [app_event(user, "user", f"{SECRET} ({i})", T0 + timedelta(minutes=i)) for i in range(60)]
    )
    services = make_services(queue_name=queue, requests_key=requests_key(queue))
    llm.fail_next(HTTP_400)  # the LLM rejects the request: the user is dead-lettered
    assert (await run_queued_compression(services, user, 1)).result["outcome"] == "dead_letter"
    shots = Path(os.environ.get("MEMCOMPRESS_TEST_SCREENSHOTS") or tmp_path)

    overview = browse(web + "/", screenshot=shots / "web-overview.png")
    dead = browse(web + "/dead", screenshot=shots / "web-dead-letters.png")
    page = browse(f"{web}/users/{user}", screenshot=shots / "web-user.png")
    unknown = browse(f"{web}/users/nobody-{uuid.uuid4().hex}")

    assert "Dead letters" in overview and "LLM, last 24 hours" in overview and user in overview
    assert user in dead and "PermanentSummarizerError" in dead and "Retry" in dead
    assert "DEAD LETTER:" in page and "60 stored" in page and "PermanentSummarizerError" in page
    assert "nothing stored for this id — check the id" in unknown
    for html in (overview, dead, page, unknown):
        assert "locker" not in html and "7319" not in html  # no content, no summary text
        assert TOKEN not in html
    assert (shots / "web-user.png").stat().st_size > 0

    job = f"arq:job:{job_id(user, queue)}"
    try:
        assert post(web + "/actions/retry", {"user_id": user}) == 403
        assert post(web + "/actions/retry", {"user_id": user, "token": "wrong"}) == 403
        assert await redis.zscore(queue, job_id(user, queue)) is None  # refused: nothing queued
        assert post(web + "/actions/retry", {"user_id": user, "token": TOKEN}) == 303

        async def queued() -> bool:
            return await redis.zscore(queue, job_id(user, queue)) is not None

        await eventually(queued, within_s=5)
        assert "queue paused" not in browse(web + "/")
        assert post(web + "/actions/pause", {"token": TOKEN}) == 303
        assert "PAUSED" in browse(web + "/")
    finally:
        await redis.delete(job)


def test_without_allow_actions_a_post_does_nothing(
    mongo_uri: str, db_name: str, redis_url: str, queue: str
) -> None:
    from starlette.testclient import TestClient

    from memcompress.settings import load_settings
    from memcompress.web.app import create_app

    settings = load_settings(
        mongodb_uri=mongo_uri,
        mongodb_db=db_name,
        redis_url=redis_url,
        queue_name=queue,
        summarizer="extractive",
    )
    with TestClient(create_app(settings)) as client:
        assert client.post("/actions/pause", data={"token": TOKEN}).status_code == 404
        assert "Pause the queue" not in client.get("/").text


def test_allow_actions_without_a_token_is_refused(mongo_uri: str, redis_url: str) -> None:
    env = worker_env(mongo_uri, "unused", redis_url, "unused")
    env |= {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    result = subprocess.run(
        [sys.executable, "-m", "memcompress", "web", "--allow-actions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "needs a token" in result.stderr
