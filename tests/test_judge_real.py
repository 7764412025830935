"""The real path: a packaged model (SmolLM2-135M) served by llama.cpp answers and judges a handful of prompts.

A 135M judge rarely follows the verdict format; what must hold is the bookkeeping: answers generated
through the spec, both orders judged, every raw reply recorded, and each item counted exactly once as
win, tie, loss or unparsed (never a win by default).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imitlab.judge.pairwise import JudgeConfig, run_judge
from imitlab.judge.sources import GenerationParams
from imitlab.judge.style import StyleConfig, run_style
from imitlab.models.server import LlamaServer

pytestmark = pytest.mark.real

PROMPTS = [
    {"id": "k1", "prompt": "What is the capital of France?"},
    {"id": "k2", "prompt": "Name two primary colours."},
    {"id": "k3", "prompt": "Is water wet? Answer briefly."},
]
TEACHER = ["The capital of France is Paris.", "Red and blue.", "Yes: water makes things wet."]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    rows = [{"id": p["id"], "answer": t} for p, t in zip(PROMPTS, TEACHER, strict=True)]
    (tmp_path / "teacher.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"prompts": str(tmp_path / "prompts.jsonl"), "teacher": str(tmp_path / "teacher.jsonl")}


def test_real_judge_run_through_llama_server(
    smollm2_server: LlamaServer, files: dict[str, str], tmp_path: Path
) -> None:
    spec = "openai:smollm2-135m-instruct"
    config = JudgeConfig(
        a=spec, b=files["teacher"], prompts=files["prompts"], judge=spec, out=tmp_path / "out",
        judge_max_tokens=24, generation=GenerationParams(max_tokens=24, parallel=2), parallel=2,
        base_url=smollm2_server.base_url, n_resamples=200, cache=tmp_path / "cache",
    )  # fmt: skip
    summary = run_judge(config)
    answers = [json.loads(x) for x in (tmp_path / "out" / "answers_a.jsonl").read_text().splitlines()]
    assert sorted(a["id"] for a in answers) == ["k1", "k2", "k3"]
    assert all(a["answer"].strip() and a["completion_tokens"] <= 24 for a in answers)
    rows = [json.loads(x) for x in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["order"]) for r in rows) == sorted(
        (i, o) for i in ("k1", "k2", "k3") for o in ("ab", "ba")
    )
    assert all(isinstance(r["raw"], str) and not r.get("error") for r in rows)
    counts = summary["counts"]
    assert counts["win"] + counts["tie"] + counts["loss"] + counts["unparsed"] == 3
    # an item is a win only if both orders favour a; otherwise never
    for item in map(json.loads, (tmp_path / "out" / "items.jsonl").read_text().splitlines()):
        assert item["outcome"] != "win" or (item["ab"] == "a" and item["ba"] == "a")
    # a rerun resumes: nothing new is generated or judged
    before = (tmp_path / "out" / "judgments.jsonl").read_text()
    assert run_judge(config)["counts"] == counts
    assert (tmp_path / "out" / "judgments.jsonl").read_text() == before


def test_real_style_tone_probe(smollm2_server: LlamaServer, files: dict[str, str], tmp_path: Path) -> None:
    result = run_style(
        StyleConfig(
            teacher=files["teacher"], prompts=files["prompts"],
            # two columns: the judge's engine must serve the first column's requests and then the second's
            models={"smollm2": "openai:smollm2-135m-instruct", "copy": files["teacher"]},
            out=tmp_path / "style", judge="openai:smollm2-135m-instruct", judge_max_tokens=8,
            generation=GenerationParams(max_tokens=24, parallel=2), parallel=2, base_url=smollm2_server.base_url,
            n_resamples=200, cache=tmp_path / "cache",
        )
    )  # fmt: skip
    col = result["columns"]["smollm2"]
    assert col["n"] == 3
    assert col["authoritative_tone"]["n"] + col["tone_unparsed"] == 3
    rows = [json.loads(x) for x in (tmp_path / "style" / "style_items.jsonl").read_text().splitlines()]
    assert sorted({r["column"] for r in rows}) == ["copy", "smollm2"]
    assert all(isinstance(r["tone_raw"], str) and not r["tone_raw"].startswith("error") for r in rows), rows


def test_judge_cli_against_a_served_judge(smollm2_server: LlamaServer, files: dict[str, str], tmp_path: Path) -> None:
    import subprocess
    import sys

    imitlab = str(Path(sys.executable).parent / "imitlab")
    done = subprocess.run(
        [imitlab, "judge", "--a", files["teacher"], "--b", files["teacher"], "--prompts", files["prompts"],
         "--judge", "openai:smollm2-135m-instruct", "--base-url", smollm2_server.base_url, "--limit", "2",
         "--judge-max-tokens", "16", "--parallel", "2", "--out", str(tmp_path / "cli"), "--cache", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "as good or better" in done.stdout
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["n_pairs"] == 2 and sum(summary["counts"].values()) == 2
