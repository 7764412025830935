"""Answers generated through a model spec (``openai:`` against a local stand-in server): resume after a failure."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from imitlab.errors import ImitlabError
from imitlab.judge.sources import GenerationParams, PromptItem, generate_answers
from imitlab.models.server import free_port

FAIL_ON = {"fail"}
SEEN: list[str] = []


async def completions(request: Request) -> JSONResponse:
    body = await request.json()
    prompt = body["messages"][-1]["content"]
    SEEN.append(prompt)
    if any(word in prompt for word in FAIL_ON):
        return JSONResponse({"error": {"message": "boom"}}, status_code=400)
    message = {"role": "assistant", "content": f"re: {prompt}"}
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    })  # fmt: skip


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    config = uvicorn.Config(Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])]),
                            host="127.0.0.1", port=free_port(), log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{config.port}"
    for _ in range(100):
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield f"{url}/v1"
    server.should_exit = True
    thread.join(timeout=10)


def test_generation_failure_keeps_answers_and_resumes(base_url: str, tmp_path: Path) -> None:
    prompts = [PromptItem("1", "hello"), PromptItem("2", "please fail"), PromptItem("3", "bye")]
    out = tmp_path / "answers.jsonl"
    params = GenerationParams(max_tokens=8, parallel=1)
    cache = tmp_path / "cache"  # the response cache: never the user's
    saved_and_resumable = r"failed for 1 prompt.*HTTP 400.* 2 of 3 answers are saved in .*rerun continues"
    with pytest.raises(ImitlabError, match=saved_and_resumable):
        generate_answers("openai:stub", prompts, out, params, base_url=base_url, cache=cache)
    saved = {json.loads(x)["id"] for x in out.read_text().splitlines()}
    assert saved == {"1", "3"}  # the engine goes on past a failed request
    FAIL_ON.clear()
    SEEN.clear()
    generate_answers("openai:stub", prompts, out, params, base_url=base_url, cache=cache)
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"1", "2", "3"} and rows["2"]["answer"] == "re: please fail"
    assert sorted(SEEN) == sorted(p.prompt for p in prompts if p.id not in saved)  # only the missing ones
    assert rows["1"]["model"] == "stub" and rows["1"]["completion_tokens"] == 2
