"""The foundation through the real path: packaged weights, a real llama.cpp server, imitlab's client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from imitlab.models.client import ChatClient
from imitlab.models.packaged import PulledModel
from imitlab.models.server import LlamaServer
from imitlab.models.spec import open_chat, parse_spec

pytestmark = pytest.mark.real

# Plain-text prompts (no template) and chat prompts (the model's own template), fixed for reproducibility.
TEXT_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n <= 1:\n        return",
    "Water boils at a temperature of",
    "The quick brown fox jumps over the",
    "In 1492, Christopher Columbus",
    "import numpy as np\nx = np.",
    "The largest planet in our solar system is",
    "Once upon a time, there was a little",
    "To make a cup of tea, first",
    "The opposite of hot is",
    "for i in range(10):\n    print(",
    "Photosynthesis is the process by which plants",
    "My favourite colour is",
    "SELECT name FROM users WHERE",
    "The square root of 16 is",
    "Shakespeare wrote the play",
]
CHAT_PROMPTS = [
    "What is the capital of Japan?",
    "Write a haiku about autumn.",
    "How do I reverse a list in Python?",
    "Name three primary colours.",
    "Explain what a neural network is in one sentence.",
    "What is 12 times 12?",
    "Give me a synonym for happy.",
    "Who wrote Pride and Prejudice?",
    "What is the capital of France?",  # a near-tie: HF and llama.cpp rank 'The' and 'L' 0.08 nats apart
]


def test_round_trip_through_llama_server(smollm2_server: LlamaServer) -> None:
    client = ChatClient(smollm2_server.base_url, "smollm2-135m-instruct")
    result = client.chat(
        [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        max_tokens=16,
        temperature=0,
    )
    assert "paris" in result.text.lower()
    assert result.finish_reason in ("stop", "length")
    assert result.prompt_tokens is not None and result.prompt_tokens > 5
    assert result.completion_tokens is not None and 0 < result.completion_tokens <= 16
    assert result.total_tokens == result.prompt_tokens + result.completion_tokens


def test_length_cap_is_reported(smollm2_server: LlamaServer) -> None:
    client = ChatClient(smollm2_server.base_url, "smollm2-135m-instruct")
    result = client.chat([{"role": "user", "content": "Write a long story about a dragon."}], max_tokens=8)
    assert result.finish_reason == "length" and result.completion_tokens == 8


def test_open_chat_starts_and_stops_a_server_for_a_packaged_model(smollm2: PulledModel) -> None:
    with open_chat(parse_spec("smollm2-135m-instruct"), parallel=1, ctx_per_slot=1024) as client:
        base_url = client.base_url
        result = client.chat([{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0)
        assert result.text.strip()
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url.removesuffix("/v1") + "/health", timeout=2)


def _llama_next_token(http: httpx.Client, server: LlamaServer, ids: list[int]) -> tuple[int, float]:
    """llama.cpp's greedy next token for a token-id prompt, and its log-prob margin over the runner-up."""
    r = http.post(
        server.base_url.removesuffix("/v1") + "/completion",
        json={"prompt": ids, "n_predict": 1, "n_probs": 2, "temperature": 0, "cache_prompt": False},
        timeout=60,
    )
    r.raise_for_status()
    probs = r.json()["completion_probabilities"][0]
    top = probs["top_logprobs"]
    return int(probs["id"]), float(top[0]["logprob"] - top[1]["logprob"])


def test_converted_checkpoint_agrees_with_gguf_served_by_llama_cpp(
    smollm2: PulledModel, smollm2_server: LlamaServer
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert smollm2.hf is not None
    tokenizer = AutoTokenizer.from_pretrained(smollm2.hf)
    model = AutoModelForCausalLM.from_pretrained(smollm2.hf, dtype=torch.float32).eval()
    prompts = [tokenizer(p)["input_ids"] for p in TEXT_PROMPTS] + [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True,
                                      return_dict=True)["input_ids"]
        for p in CHAT_PROMPTS
    ]  # fmt: skip
    agree, disagreements = 0, []
    http = httpx.Client()
    for ids in prompts:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        top2 = torch.topk(logits.log_softmax(-1), 2)
        hf_token, hf_margin = int(top2.indices[0]), float(top2.values[0] - top2.values[1])
        llama_token, _ = _llama_next_token(http, smollm2_server, ids)
        if hf_token == llama_token:
            agree += 1
        else:
            disagreements.append((tokenizer.decode(ids[-8:]), hf_margin))
    rate = agree / len(prompts)
    print(f"\nnext-token agreement HF fp32 vs llama.cpp GGUF: {agree}/{len(prompts)} = {rate:.1%}; "
          f"disagreements (context tail, HF margin in nats): {disagreements}")  # fmt: skip
    assert rate >= 0.9
    # Quantised activations in llama.cpp may flip near-ties, never a clear choice.
    assert all(margin < 0.5 for _, margin in disagreements), disagreements


def _cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imitlab", *args],
        capture_output=True,
        text=True,
        timeout=300,
        **kw,  # type: ignore[call-overload]
    )


def test_cli_models_list_and_unknown_model(smollm2: PulledModel) -> None:
    listed = _cli("models", "list", env={**os.environ, "COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    assert "smollm2-135m-instruct" in listed.stdout and "qwen2.5-coder-1.5b-instruct" in listed.stdout
    unknown = _cli("chat", "smollm3", "hi")
    assert unknown.returncode == 2
    assert "known models" in unknown.stderr and "Traceback" not in unknown.stderr


def test_cli_chat_round_trip(smollm2: PulledModel) -> None:
    done = _cli(
        "chat", "smollm2-135m-instruct", "What is the capital of France? Answer in one word.", "--max-tokens", "12"
    )
    assert done.returncode == 0, done.stderr
    assert "paris" in done.stdout.lower()
    assert "completion tokens" in done.stderr


def test_cli_serve_prints_url_and_stops_on_ctrl_c(smollm2: PulledModel, tmp_path: Path) -> None:
    command = ["serve", "smollm2-135m-instruct", "--parallel", "1", "--ctx-per-slot", "1024"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "imitlab", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "serving" in line and "http://" in line:
                url = line.split(" at ")[1].split()[0]
        assert url, "serve did not print its URL"
        models = httpx.get(url + "/models", timeout=10).json()
        assert any(m["id"] == "smollm2-135m-instruct" for m in models["data"])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/models", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
