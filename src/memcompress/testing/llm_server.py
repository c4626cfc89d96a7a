"""A local OpenAI-compatible server (``POST /v1/chat/completions``) over real HTTP, for tests and
benchmarks. Scriptable failures (429 with Retry-After, 500, 400, hang, empty text, error text, garbage,
cut-off answers), configurable latency, and a record of every request and the answer it got.

Besides the script, random failures: ``FakeLLM(failure_rate=0.3, failure_kinds=(HTTP_429, HANG), seed=7)``
answers each unscripted request with a failure of a kind picked at random (reproducible with ``seed``);
``failure_rate`` may be changed while the server runs. ``failures`` counts every failure by kind.
``per_second`` counts the requests that arrived in each second of the server's clock (Unix time).

A gate holds answers for as long as a test needs, however loaded the machine: after ``hold()`` every
request waits (counted in ``held``) before it is answered, until ``release()``; ``hold(passes=n)`` lets
the next ``n`` requests through first. A test that needs a call in flight (to kill its client, to let a
time limit expire) holds it there instead of betting on a latency.
``received`` holds the transcript texts of every request, answered or not (a test attributes requests to
users by them).
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from memcompress.summarizers.carry import estimate_prompt_tokens
from memcompress.testing.answers import honest

# Behaviours a scripted request can have.
OK = "ok"
HTTP_429 = "429"
HTTP_500 = "500"
HTTP_400 = "400"
HANG = "hang"
EMPTY = "empty"
ERROR_TEXT = "error_text"
GARBAGE = "garbage"
CUT_OFF = "cut_off"

# What random failures are drawn from unless told otherwise.
RANDOM_FAILURE_KINDS = (HTTP_429, HTTP_500, HANG, EMPTY)

_SUMMARY = re.compile(r"<summary>\n(.*?)\n</summary>", re.DOTALL)
_TRANSCRIPT = re.compile(r"<transcript>\n(.*?)\n</transcript>", re.DOTALL)


@dataclass
class Exchange:
    """One request the server answered with a summary, parsed back into its parts."""

    previous_summary: str
    texts: list[str]
    answer: str
    body: dict[str, Any]


NO_SUMMARY = "(none yet)"  # Exchange.previous_summary of a first request (the prompt sends null)
# The default answer keeps within this share of the request's budget: the "at most N characters" of
# the system prompt, as a model reads it (else max_tokens x 2 characters).
ANSWER_BUDGET_SHARE = 0.95
_BUDGET = re.compile(r"at most (\d+) characters")


def default_answer(number: int, previous: str, texts: list[str]) -> str:
    """A summary that carries the previous one (its lines) and adds one line holding the new messages'
    values, as a good LLM would."""
    line = honest(f"summary #{number} of {len(texts)} messages", texts)
    return line if previous == NO_SUMMARY else f"{previous}\n{line}"


def fit(answer: str, max_chars: int) -> str:
    """``answer`` without its oldest lines until it fits ``max_chars``: a summary at its budget."""
    lines = answer.split("\n")
    while len("\n".join(lines)) > max_chars and len(lines) > 1:
        lines.pop(0)
    return "\n".join(lines)


@dataclass
class FakeLLM:
    latency_s: float = 0.0
    hang_s: float = 30.0
    answer: Callable[[int, str, list[str]], str] = default_answer
    script: deque[str] = field(default_factory=deque)
    exchanges: list[Exchange] = field(default_factory=list)
    requests: int = 0
    held: int = 0  # requests waiting at the closed gate now
    received: list[list[str]] = field(default_factory=list)  # each request's transcript texts, in order
    per_second: Counter[int] = field(default_factory=Counter)
    failures: dict[str, int] = field(default_factory=dict)
    failure_rate: float = 0.0
    failure_kinds: tuple[str, ...] = RANDOM_FAILURE_KINDS
    seed: int | None = None
    # A server with a small context window that silently drops the start of a longer prompt (as
    # Ollama's OpenAI-compatible endpoint does): it then sees only the tail and reports that much.
    context_tokens: int | None = None
    # A server that refuses a longer prompt as OpenAI does: HTTP 400 ``context_length_exceeded`` naming
    # its context and the tokens the request asked for.
    max_context_tokens: int | None = None
    # A model that writes on past its budget: every answer stops at max_tokens (finish_reason "length").
    cut_at_max_tokens: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # The gate: None while open, else how many more requests may pass before the rest wait.
    _passes: int | None = field(default=None, init=False, repr=False)
    _gate: threading.Condition = field(init=False, repr=False)
    _server: ThreadingHTTPServer | None = None
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be within 0..1, got {self.failure_rate}")
        if self.failure_rate and not self.failure_kinds:
            raise ValueError("failure_rate needs at least one failure kind")
        self._random = random.Random(self.seed)
        self._gate = threading.Condition(self._lock)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def fail_next(self, *behaviours: str) -> None:
        self.script.extend(behaviours)

    def hold(self, passes: int = 0) -> None:
        """Close the gate: after the next ``passes`` requests, each waits until :meth:`release`."""
        with self._gate:
            self._passes = passes
            self._gate.notify_all()

    def release(self) -> None:
        """Open the gate: the held requests are answered (a gone client's answer goes nowhere)."""
        with self._gate:
            self._passes = None
            self._gate.notify_all()

    def _through_the_gate(self) -> None:
        """Wait while the gate is closed; a pass, while any is left, goes to this request."""
        with self._gate:
            self.held += 1
            self._gate.wait_for(lambda: self._passes is None or self._passes > 0)
            self.held -= 1
            if self._passes is not None:
                self._passes -= 1

    def start(self) -> FakeLLM:
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                llm._handle(self)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that went away before its answer (killed, or timed out on a busy machine)
                # is the client's business: no traceback on stderr.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers["Content-Length"])
        raw = handler.rfile.read(length)
        if len(raw) < length:
            return  # the client went away while sending its request: nothing to answer
        body = json.loads(raw)
        with self._lock:
            self.requests += 1
            self.received.append(_texts(body["messages"][-1]["content"]))
            self.per_second[int(time.time())] += 1
            number = self.requests
            behaviour = self.script.popleft() if self.script else self._random_behaviour()
            if behaviour != OK:
                self.failures[behaviour] = self.failures.get(behaviour, 0) + 1
        self._through_the_gate()
        if self.latency_s:
            time.sleep(self.latency_s)
        if behaviour == HANG:
            time.sleep(self.hang_s)
            return
        if behaviour in (HTTP_429, HTTP_500, HTTP_400):
            status = int(behaviour)
            _send(
                handler,
                status,
                {"error": {"message": f"simulated {status}", "type": "test"}},
                {"Retry-After": "0"} if status == 429 else {},
            )
            return
        if behaviour == GARBAGE:
            _send_raw(handler, 200, b"<html>bad gateway</html>", "text/html")
            return
        user = body["messages"][-1]["content"]
        prompt_tokens = estimate_prompt_tokens("".join(m["content"] for m in body["messages"]))
        if self.max_context_tokens is not None and prompt_tokens > self.max_context_tokens:
            with self._lock:
                self.failures["context_length_exceeded"] = self.failures.get("context_length_exceeded", 0) + 1
            message = (
                f"This model's maximum context length is {self.max_context_tokens} tokens. However, you "
                f"requested {prompt_tokens + body.get('max_tokens', 0)} tokens. Please reduce the length."
            )
            error = {"message": message, "type": "invalid_request_error", "code": "context_length_exceeded"}
            _send(handler, 400, {"error": error})
            return
        if self.context_tokens is not None and prompt_tokens > self.context_tokens:
            # Keep only the tail: the instructions and the summary are gone, and the answer with them.
            user = user[-self.context_tokens * 2 :]
            prompt_tokens = self.context_tokens
        previous = json.loads(_between(_SUMMARY, user) or "null") or NO_SUMMARY
        texts = _texts(user)
        text, finish = {
            EMPTY: ("   ", "stop"),
            ERROR_TEXT: ("Error: upstream model overloaded, please retry", "stop"),
            CUT_OFF: ("summary that was cut", "length"),
        }.get(behaviour, (None, "stop"))
        if text is None:
            budget = _BUDGET.search(body["messages"][0]["content"])
            max_chars = int(budget.group(1)) if budget else int(body.get("max_tokens", 2000)) * 2
            text = fit(self.answer(number, previous, texts), int(max_chars * ANSWER_BUDGET_SHARE))
            finish = "length" if self.cut_at_max_tokens else finish
            with self._lock:
                self.exchanges.append(Exchange(previous, texts, text, body))
        # A server that stops at max_tokens has written max_tokens tokens (stopping earlier means its
        # context filled up: see OpenAISummarizer).
        completion_tokens = int(body.get("max_tokens") or 10) if finish == "length" else 10
        _send(handler, 200, _completion(body, text, finish, prompt_tokens, completion_tokens))

    def _random_behaviour(self) -> str:
        """OK, or (with probability ``failure_rate``) one of ``failure_kinds``; called under the lock."""
        if self.failure_rate and self._random.random() < self.failure_rate:
            return self._random.choice(self.failure_kinds)
        return OK

    def most_in_any_window(self, window_s: int) -> int:
        """The most requests that arrived within any ``window_s`` consecutive seconds."""
        with self._lock:
            counts = dict(self.per_second)
        return max(
            (sum(counts.get(second, 0) for second in range(start, start + window_s)) for start in counts),
            default=0,
        )

    @property
    def failed(self) -> int:
        """Requests answered with a failure of any kind (scripted or random)."""
        with self._lock:
            return sum(self.failures.values())

    def chain(self, final_summary: str | None) -> list[Exchange]:
        """The exchanges whose answers built ``final_summary``, newest first, following previous summaries."""
        by_answer = {e.answer: e for e in self.exchanges}
        chain: list[Exchange] = []
        current = final_summary
        while current is not None and current in by_answer:
            exchange = by_answer[current]
            chain.append(exchange)
            current = exchange.previous_summary if exchange.previous_summary != NO_SUMMARY else None
        return chain


def _texts(prompt: str) -> list[str]:
    """The texts of a request's transcript lines."""
    lines = _between(_TRANSCRIPT, prompt)
    return [json.loads(line)["text"] for line in lines.splitlines() if line.startswith("{")]


def _between(pattern: re.Pattern[str], text: str) -> str:
    found = pattern.search(text)
    return found.group(1) if found else ""


def _completion(
    body: dict[str, Any], text: str, finish: str, prompt_tokens: int, completion_tokens: int = 10
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "test"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    _send_raw(handler, status, json.dumps(payload).encode(), "application/json", headers or {})


def _send_raw(
    handler: BaseHTTPRequestHandler,
    status: int,
    data: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)
