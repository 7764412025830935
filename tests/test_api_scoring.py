"""APIModel's token counts and log-likelihoods against a scripted endpoint (no weights): what it can say exactly,
and the clear refusals for what it cannot (the real llama.cpp path is in test_model_conformance.py)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from imitlab.models.api_model import APIModel, open_model
from imitlab.models.base import LLRequest, UnsupportedRequest
from imitlab.models.engine import EngineSettings

# A word-level "tokenizer": each space-led word is a token (llama.cpp's /tokenize gives pieces like these).
VOCAB_TOP = [(" Paris", -0.25), (" the", -2.5), (" a", -3.0)]


def _pieces(text: str) -> list[str]:
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        out.append(word if i == 0 else " " + word)
    return [p for p in out if p]


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    tokenize: ClassVar[bool] = True

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, body))
        if self.path == "/tokenize":
            if not self.tokenize:
                return self._send(404, {"error": "not found"})
            return self._send(200, {"tokens": [{"id": i, "piece": p} for i, p in enumerate(_pieces(body["content"]))]})
        tops = [{"token": t, "logprob": lp, "bytes": None} for t, lp in VOCAB_TOP]
        return self._send(200, {
            "id": f"c{len(self.seen)}", "object": "text_completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "text": VOCAB_TOP[0][0], "finish_reason": "length",
                         "logprobs": {"content": [{**tops[0], "top_logprobs": tops}]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        })  # fmt: skip

    def _send(self, status: int, reply: dict[str, Any]) -> None:
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def model() -> Iterator[APIModel]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Handler.seen, _Handler.tokenize = [], True
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    settings = EngineSettings(concurrency=2, use_cache=False, progress=False)
    with open_model("openai:fake", base_url=url, settings=settings) as api:
        yield api
    server.shutdown()
    server.server_close()


def test_one_token_continuations_are_read_from_the_top_logprobs(model: APIModel) -> None:
    requests = [LLRequest("The capital of France is", c) for c in (" Paris", " the")]
    requests.append(LLRequest("The capital of France is ", "a"))  # the context's trailing space moves over
    results = model.loglikelihood(requests)
    assert [(r.logprob, r.is_greedy, r.n_tokens) for r in results] == [(-0.25, True, 1), (-2.5, False, 1),
                                                                       (-3.0, False, 1)]  # fmt: skip
    completions = [body for path, body in _Handler.seen if path == "/v1/completions"]
    assert len(completions) == 1  # one request per distinct context
    assert completions[0]["prompt"] == "The capital of France is" and completions[0]["max_tokens"] == 1
    assert completions[0]["logprobs"] == 20 and completions[0]["temperature"] == 0.0


def test_what_it_cannot_score_exactly_is_refused_by_name(model: APIModel) -> None:
    with pytest.raises(UnsupportedRequest, match=r"' Paris is': it is 2 tokens"):
        model.loglikelihood([LLRequest("The capital of France is", " Paris is")])
    with pytest.raises(UnsupportedRequest, match=r"' Lyon' is not among the endpoint's top 3 .*bounded by -3.000"):
        model.loglikelihood([LLRequest("The capital of France is", " Lyon")])


def test_token_counts_come_from_the_server(model: APIModel) -> None:
    assert model.count_tokens(["one two three", "x"]) == [3, 1]
    assert ("/tokenize", {"content": "x", "add_special": False, "with_pieces": True}) in _Handler.seen
    _Handler.tokenize = False
    with pytest.raises(UnsupportedRequest, match="no tokenizer route"):
        model.count_tokens(["not asked before"])
