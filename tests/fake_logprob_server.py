"""A real HTTP server on 127.0.0.1 that answers OpenAI chat requests as a judge with token log-probabilities.

``scorer(messages) -> {"A": p, "B": q, ...}`` gives the judge's label distribution for one request. The reply is
``[[X]]`` for the most probable label X, tokenised as ``"[["``, ``X``, ``"]]"`` (as Qwen's tokenizer does), and
when the request asks for ``logprobs`` each token carries ``top_logprobs``: the label token's alternatives are the
scorer's distribution (padded with a filler token, as a real top-k list is), the bracket tokens are certain.
A request without ``logprobs`` gets no ``logprobs`` field, like a server that does not give them.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

try:  # these fakes are imported both as tests.fake_* and, with tests/ on sys.path, as fake_*
    from tests.loopback_server import LoopbackServer
except ModuleNotFoundError:
    from loopback_server import LoopbackServer

Scorer = Callable[[list[dict[str, str]]], dict[str, float]]


class FakeLogprobJudge(LoopbackServer):
    def __init__(self, scorer: Scorer, *, give_logprobs: bool = True) -> None:
        self.scorer = scorer
        self.give_logprobs = give_logprobs  # False: a server that ignores the logprobs request
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._start_server()

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        dist = self.scorer(body["messages"])
        label = max(dist, key=lambda k: dist[k])
        tokens = ["[[", label, "]]"]
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": "".join(tokens)},
            "finish_reason": "stop",
        }
        if body.get("logprobs") and self.give_logprobs:
            k = int(body.get("top_logprobs") or 1)
            ranked = sorted(dist.items(), key=lambda kv: -kv[1])
            label_top = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in ranked if p > 0]
            label_top += [{"token": " The", "logprob": -30.0, "bytes": None}]
            content = []
            for token in tokens:
                top = label_top if token == label else [{"token": token, "logprob": 0.0, "bytes": None}]
                content.append({"token": token, "logprob": top[0]["logprob"], "bytes": None, "top_logprobs": top[:k]})
            choice["logprobs"] = {"content": content}
        return {
            "id": f"chatcmpl-fake-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": [choice],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(tokens), "total_tokens": 10 + len(tokens)},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with fake.lock:
                    fake.requests += 1
                    fake.bodies.append(body)
                data = json.dumps(fake.completion(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
