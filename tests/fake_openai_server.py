"""A real HTTP server on 127.0.0.1 that speaks just enough of the OpenAI chat API to test collection faults.

Each request's fate is decided by the last user message and how many times that text has been asked, never by
timing or by the order in which concurrent requests arrive:
- it contains ``ALWAYS_<mode>``: that mode every time (``500``, ``400``, ``401``, ``MALFORMED``, ``EMPTY``, or
  ``HANG``: no answer until the server shuts down, so only a client timeout ends the request);
- it contains ``ONCE_429``: the first request for that text gets 429 with ``Retry-After: <retry_after>``;
- otherwise ``rates`` (mode -> probability) draw a fault from an RNG seeded by (seed, text, attempt), so
  :meth:`FakeOpenAI.planned` can say in advance what each attempt of each prompt will get; the rest answer normally.
Answers are deterministic: ``"answer to: <text>"`` (or ``responder(body)``), with usage token counts.
The server counts requests so tests can bound them.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

try:  # these fakes are imported both as tests.fake_* and, with tests/ on sys.path, as fake_*
    from tests.loopback_server import LoopbackServer
except ModuleNotFoundError:
    from loopback_server import LoopbackServer


class FakeOpenAI(LoopbackServer):
    def __init__(
        self,
        rates: dict[str, float] | None = None,
        *,
        seed: int = 0,
        retry_after: float = 0.2,
        latency_s: float = 0.0,
        max_requests: int = 5000,
        responder: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self.responder = responder  # scripted answers (body -> text) instead of "answer to: ..."
        self.rates = rates or {}
        self.seed = seed
        self.closing = threading.Event()  # set on exit: releases HANG handlers
        self.retry_after = retry_after
        self.latency_s = latency_s
        self.max_requests = max_requests
        self.requests = 0
        self.outcomes: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()
        self.request_times: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self._start_server()

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        super().__exit__(*exc)

    def decide(self, text: str) -> str:
        with self.lock:
            self.requests += 1
            if self.requests > self.max_requests:
                return "500"  # a runaway client gets errors, and the test's request bound fails
            self.seen[text] += 1
            self.request_times.setdefault(text, []).append(time.monotonic())
            return self.planned(text, self.seen[text])

    def planned(self, text: str, attempt: int) -> str:
        """The mode the ``attempt``-th request (from 1) with this last user message gets."""
        for mode in ("500", "400", "401", "HANG", "MALFORMED", "EMPTY"):
            if f"ALWAYS_{mode}" in text:
                return mode
        if "ONCE_429" in text and attempt == 1:
            return "429"
        draw = random.Random(f"{self.seed}:{attempt}:{text}").random()
        for mode, rate in self.rates.items():
            if draw < rate:
                return mode
            draw -= rate
        return "ok"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and hung up
                    pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                text = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
                mode = fake.decide(text)
                with fake.lock:
                    fake.outcomes[mode] += 1
                if fake.latency_s:
                    time.sleep(fake.latency_s)
                err = lambda msg: json.dumps({"error": {"message": msg, "type": "x"}}).encode()  # noqa: E731
                if mode == "429":
                    self._send(429, err("rate limited"), {"Retry-After": str(fake.retry_after)})
                elif mode in ("500", "400", "401"):
                    self._send(int(mode), err(f"fake {mode}"))
                elif mode == "HANG":
                    fake.closing.wait()
                elif mode == "MALFORMED":
                    self._send(200, b'{"id": "x", "choices": [{"message": ')
                elif mode == "EMPTY":
                    self._send(200, _completion(body, text, content=""))
                else:
                    self._send(200, _completion(body, text, fake.responder(body) if fake.responder else None))

        return Handler


def _completion(body: dict[str, Any], text: str, content: str | None = None) -> bytes:
    answer = f"answer to: {text}" if content is None else content
    return json.dumps(
        {
            "id": f"chatcmpl-fake-{uuid.uuid4().hex}",  # unique, as real servers make them
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
                "completion_tokens": len(answer.split()),
                "total_tokens": 0,
            },
        }
    ).encode()
