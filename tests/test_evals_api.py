"""An API model in the eval runner: letter answers by logprobs or by generation, through real HTTP."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from imitlab.config import data_dir
from imitlab.evals import EvalConfig, run_eval
from imitlab.models.api_model import open_model
from imitlab.models.engine import EngineSettings
from imitlab.models.server import LlamaServer


class _Handler(http.server.BaseHTTPRequestHandler):
    content: ClassVar[str] = ""
    top: ClassVar[list[tuple[str, float]] | None] = None  # None: the server reports no logprobs
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        logprobs = None
        if self.top is not None and body.get("logprobs"):
            tops = [{"token": t, "logprob": lp, "bytes": None} for t, lp in self.top]
            logprobs = {"content": [{**tops[0], "top_logprobs": tops}]}
        reply = {
            "id": f"x{len(self.seen)}", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                         "message": {"role": "assistant", "content": self.content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
        }  # fmt: skip
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def fake_server() -> Iterator[type[_Handler]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    _Handler.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"  # type: ignore[attr-defined]
    yield _Handler
    server.shutdown()
    server.server_close()


def _run(tmp_path: Path, base_url: str, benches: list[str], limit: int, **kw: Any) -> dict[str, Any]:
    config = EvalConfig(model="openai:fake", benches=benches, out=tmp_path, data_dir=data_dir(), limit=limit, **kw)
    settings = EngineSettings(concurrency=2, use_cache=False, progress=False)
    with open_model("openai:fake", base_url=base_url, settings=settings) as model:
        return run_eval(config, model=model)


def _records(out: Path, bench: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / f"{bench}.items.jsonl").read_text().splitlines()]


def test_letters_by_logprobs_when_the_endpoint_gives_them(tmp_path: Path, fake_server: type[_Handler]) -> None:
    fake_server.top = [("B", -0.2), (" C", -1.5), ("Hello", -3.0)]
    fake_server.content = "B"
    summary = _run(tmp_path, fake_server.base_url, ["mmlu"], 4)["mmlu"]  # type: ignore[attr-defined]
    assert summary["methods"] == {"logprobs": 4}
    records = _records(tmp_path, "mmlu")
    assert {r["pred"] for r in records} == {1}
    assert records[0]["letter_logprobs"] == {"B": -0.2, "C": -1.5}
    assert all(body["max_tokens"] == 1 and body["top_logprobs"] == 20 for body in fake_server.seen)


def test_letters_by_generation_when_there_are_no_logprobs(tmp_path: Path, fake_server: type[_Handler]) -> None:
    fake_server.top = None
    fake_server.content = "The answer is (C)."
    summary = _run(tmp_path, fake_server.base_url, ["arc_challenge"], 3)["arc_challenge"]  # type: ignore[attr-defined]
    assert summary["methods"] == {"generate": 3}
    records = _records(tmp_path, "arc_challenge")
    assert {r["pred"] for r in records} == {2}
    assert "\nA. " in records[0]["prompt"] and records[0]["prompt"].endswith("\nAnswer:")  # options lettered


def test_empty_answers_score_zero_and_stops_apply(tmp_path: Path, fake_server: type[_Handler]) -> None:
    fake_server.top = None
    fake_server.content = ""
    summary = _run(tmp_path, fake_server.base_url, ["mmlu"], 2)["mmlu"]  # type: ignore[attr-defined]
    assert summary["metrics"]["acc"]["value"] == 0.0
    fake_server.content = " Paris, the capital.\nMore text"  # the server ignores stop strings; we cut at them
    _run(tmp_path / "nq", fake_server.base_url, ["nq_open"], 2)  # type: ignore[attr-defined]
    assert [r["output"] for r in _records(tmp_path / "nq", "nq_open")] == ["Paris", "Paris"]
    assert fake_server.seen[-1]["stop"] == ["\n", ".", ","]


@pytest.mark.real
def test_real_llama_server(tmp_path: Path, smollm2_server: LlamaServer) -> None:
    """SmolLM2 through llama.cpp's OpenAI API: MMLU by logprobs, NQ and HumanEval by chat generation."""
    summaries = _run(tmp_path, smollm2_server.base_url, ["mmlu", "nq_open", "humaneval"], 2, max_tokens=32)
    assert summaries["mmlu"]["methods"] == {"logprobs": 2}
    for record in _records(tmp_path, "mmlu"):
        assert record["pred"] in (0, 1, 2, 3) and len(record["letter_logprobs"]) >= 1
    nq = _records(tmp_path, "nq_open")
    assert len(nq) == 2 and all(isinstance(r["output"], str) for r in nq)
    assert any(r["output"] for r in nq)  # the model did answer
    code = _records(tmp_path, "humaneval")
    assert len(code) == 2 and all(s in ("passed", "failed", "timeout", "killed") for r in code for s in r["statuses"])
    assert 0.0 <= summaries["humaneval"]["metrics"]["pass@1"]["value"] <= 1.0
