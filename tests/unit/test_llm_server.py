"""The local LLM server's gate: held requests wait, however long, until the test releases them."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable

from memcompress.testing.llm_server import FakeLLM


def _ask(llm: FakeLLM, answers: list[str]) -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(
        f"{llm.base_url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answers.append(json.loads(response.read())["choices"][0]["message"]["content"])


def _until(check: Callable[[], bool]) -> None:
    for _ in range(600):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met within 30 s")


def test_passes_go_through_and_the_rest_wait_until_released(llm: FakeLLM) -> None:
    llm.hold(passes=1)
    answers: list[str] = []
    _ask(llm, answers)  # the pass: answered at once
    assert len(answers) == 1

    waiting = [threading.Thread(target=_ask, args=(llm, answers)) for _ in range(2)]
    for thread in waiting:
        thread.start()
    _until(lambda: llm.held == 2)
    assert len(answers) == 1 and llm.requests == 3  # received, not answered

    llm.release()
    for thread in waiting:
        thread.join(timeout=30)
    assert (len(answers), llm.held) == (3, 0)
