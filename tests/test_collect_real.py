"""Collection through a real llama.cpp server of a packaged model (small: few prompts, few tokens)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imitlab.cli import app
from imitlab.collect import CollectConfig, collect
from imitlab.prompts import PromptRecord, write_prompt_set

pytestmark = pytest.mark.real

QUESTIONS = ["What is the capital of France?", "Name a primary colour.", "What is 2 + 2?"]


def test_collect_from_real_llama_server_then_rerun_is_cached(smollm2_server: Any, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    write_prompt_set(prompts, [PromptRecord(id=f"q{i}", turns=[q]) for i, q in enumerate(QUESTIONS)])
    cfg = CollectConfig(
        teacher="openai:smollm2-135m-instruct", base_url=smollm2_server.base_url, prompts=prompts,
        out=tmp_path / "out", concurrency=2, temperature=0.0, max_tokens=12, cache_path=tmp_path / "cache.sqlite",
        progress=False,
    )  # fmt: skip
    first = collect(cfg)
    assert first.manifest["counts"]["collected"] == 3 and not first.manifest["failures"]
    records = [json.loads(line) for line in (tmp_path / "out/conversations.jsonl").read_text().splitlines()]
    for r in records:
        assert r["messages"][0]["content"] == QUESTIONS[int(r["prompt_id"][1:])]
        assert r["messages"][1]["role"] == "assistant" and r["messages"][1]["content"].strip()
        assert 0 < r["usage"]["completion_tokens"] <= 12 and r["usage"]["prompt_tokens"] > 0
        assert r["model"] and not r["cached"]
    assert first.run.completion_tokens > 0

    cfg.out = tmp_path / "again"
    again = collect(cfg)
    assert again.run.cached == 3 and again.run.completion_tokens == 0
    again_records = [json.loads(line) for line in (tmp_path / "again/conversations.jsonl").read_text().splitlines()]
    assert {r["messages"][1]["content"] for r in again_records} == {r["messages"][1]["content"] for r in records}


def test_cli_collect_starts_the_packaged_teacher_itself(tmp_path: Path) -> None:
    """`imitlab collect --teacher <packaged name>`: open_chat starts llama-server with parallel = concurrency."""
    src = tmp_path / "p.txt"
    src.write_text("Say hello.\nSay goodbye.\n")
    runner = CliRunner()
    res = runner.invoke(app, ["prompts", "import", str(src), "--out", str(tmp_path / "p.jsonl")])
    assert res.exit_code == 0, res.output
    args = [
        "collect", "--teacher", "smollm2-135m-instruct", "--prompts", str(tmp_path / "p.jsonl"),
        "--out", str(tmp_path / "out"), "--concurrency", "2", "--max-tokens", "8", "--temperature", "0",
        "--no-progress", "--cache-file", str(tmp_path / "c.sqlite"),
    ]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["counts"]["collected"] == 2 and manifest["teacher"] == "smollm2-135m-instruct"
    assert manifest["tokens"]["completion_tokens"] > 0
