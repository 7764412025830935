"""``imitlab judge calibrate`` on GPT-4's recorded verdicts, with judges whose agreement is known in advance.

The expected figures come from the published counts in the data (docs/judge.md, tests/test_judge_validation.py):
GPT-4 prefers the model over text-davinci-003 in 205 (Alpaca-7B), 566 (Vicuna-13B) and 716 (ChatGPT) of 805
AlpacaEval instructions, with 16 + 2 + 5 ties and one unparsed reply; on Vicuna-80 it gives assistant 1 (ChatGPT,
Bard, Alpaca-13B, LLaMA-13B) 44 + 30 + 3 + 3 wins and 22 + 10 + 1 + 0 ties in 320 reviews.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import pytest

from imitlab.config import data_dir
from imitlab.errors import ImitlabError
from imitlab.judge.calibrate import CalibrateConfig, load_recorded, run_calibration, sample_pairs
from imitlab.models.api_model import open_model
from imitlab.models.engine import EngineSettings
from tests.fake_logprob_server import FakeLogprobJudge


def _slots(messages: list[dict[str, str]]) -> tuple[str, str]:
    text = messages[-1]["content"]
    a = re.search(r"\[Answer A\]\n(.*?)\n\[End of Answer A\]", text, re.S).group(1)
    b = re.search(r"\[Answer B\]\n(.*?)\n\[End of Answer B\]", text, re.S).group(1)
    return a, b


@pytest.fixture(scope="module")
def davinci_outputs() -> set[str]:
    """text-davinci-003's answers as the annotations hold them (output_1, the baseline of every annotation)."""
    root = data_dir(None) / "alpaca_eval" / "annotations_alpaca_eval_gpt4"
    return {row["output_1"] for f in root.glob("*.json.gz") for row in json.loads(gzip.decompress(f.read_bytes()))}


def _config(tmp_path: Path, **kw: object) -> CalibrateConfig:
    defaults: dict[str, object] = {"judge": "fake", "out": tmp_path / "cal", "n_resamples": 200, "parallel": 4}
    return CalibrateConfig(**{**defaults, **kw})  # type: ignore[arg-type]


def test_a_judge_that_always_prefers_the_model_over_davinci_agrees_with_gpt4_at_its_published_rate(
    tmp_path: Path, davinci_outputs: set[str]
) -> None:
    async def never_davinci(messages: list[dict[str, str]]) -> str:
        a, _ = _slots(messages)
        return "[[B]]" if a in davinci_outputs else "[[A]]"

    result = run_calibration(_config(tmp_path, n=10_000, max_words=None, sources=("alpaca_eval",)), judge=never_davinci)
    decided = 3 * 805 - (16 + 2 + 5) - 1
    assert result["sample"]["n"] == decided
    text = result["text"]
    assert text["agreement"]["value"] == pytest.approx((205 + 566 + 716) / decided)
    assert text["order_agreement"]["value"] == 1.0  # it names the same answer in both orders
    assert text["position_a"]["value"] == 0.5  # ... so it picks slot A exactly half the time
    assert text["decided"]["value"] == 1.0
    assert text["agreement"]["low"] < text["agreement"]["value"] < text["agreement"]["high"]


def test_a_judge_that_always_prefers_assistant_1_reproduces_the_vicuna_counts(tmp_path: Path) -> None:
    vicuna = {json.loads(x)["text"] for x in (data_dir(None) / "vicuna_bench/answer/answer_vicuna-13b.jsonl").open()}

    async def never_vicuna(messages: list[dict[str, str]]) -> str:
        a, _ = _slots(messages)
        return "[[B]]" if a in vicuna else "[[A]]"

    result = run_calibration(_config(tmp_path, n=1000, max_words=None, sources=("vicuna80",)), judge=never_vicuna)
    assert result["sample"]["n"] == 320 - (22 + 10 + 1 + 0)
    assert result["text"]["agreement"]["value"] == pytest.approx((44 + 30 + 3 + 3) / 287)


def test_replaying_gpt4_agrees_fully_and_a_slot_judge_not_at_all(tmp_path: Path) -> None:
    truth = {(p.answer_1, p.answer_2): p.gpt4 for p in load_recorded()}

    async def replay(messages: list[dict[str, str]]) -> str:
        a, b = _slots(messages)
        if (a, b) in truth:
            return "[[A]]" if truth[(a, b)] == "1" else "[[B]]"
        return "[[B]]" if truth[(b, a)] == "1" else "[[A]]"

    async def always_a(messages: list[dict[str, str]]) -> str:
        return "[[A]]"

    good = run_calibration(_config(tmp_path / "replay", n=60), judge=replay)["text"]
    assert good["agreement"]["value"] == good["kappa"]["value"] == good["order_agreement"]["value"] == 1.0
    assert good["longer_wins"]["value"] == good["gpt4_longer_wins"]["value"]  # same verdicts, same length lean
    bad = run_calibration(_config(tmp_path / "slot", n=60), judge=always_a)["text"]
    assert bad["agreement"]["value"] == bad["decided"]["value"] == bad["order_agreement"]["value"] == 0.0
    assert bad["position_a"]["value"] == 1.0 and bad["counts"]["tie"] == 60
    assert bad["kappa"]["value"] == 0.0


def test_probability_verdict_turns_a_slot_biased_judge_with_some_signal_into_an_agreeing_one(tmp_path: Path) -> None:
    truth = {(p.answer_1, p.answer_2): p.gpt4 for p in load_recorded()}

    def scorer(messages: list[dict[str, str]]) -> dict[str, float]:
        a, b = _slots(messages)
        a_is_gpt4s = truth[(a, b)] == "1" if (a, b) in truth else truth[(b, a)] == "2"
        pa = 1 / (1 + math.exp(-(2.0 + (0.5 if a_is_gpt4s else -0.5))))  # slot A always wins the argmax
        return {"A": pa, "B": 1 - pa}

    config = _config(tmp_path, n=30, logprobs=True, judge="openai:fake")
    with FakeLogprobJudge(scorer) as server:
        settings = EngineSettings(concurrency=2, cache_root=tmp_path / "cache", progress=False)
        with open_model("openai:fake", base_url=server.base_url, settings=settings) as judge:
            result = run_calibration(config, judge=judge)
    assert result["text"]["agreement"]["value"] == 0.0 and result["text"]["position_a"]["value"] == 1.0
    prob = result["logprob"]
    assert prob["agreement"]["value"] == 1.0 and prob["kappa"]["value"] == 1.0
    assert prob["position_a"]["value"] > 0.85  # the lean is still there before averaging, and reported
    assert 0.5 < prob["soft_agreement"]["value"] < 0.65  # a weak signal: sigmoid(2.5)/2 + sigmoid(-1.5)/2 ~ 0.55


def test_a_rerun_resumes_without_asking_again(tmp_path: Path) -> None:
    calls = []

    async def judge(messages: list[dict[str, str]]) -> str:
        calls.append(1)
        return "[[A]]"

    run_calibration(_config(tmp_path, n=5), judge=judge)
    assert len(calls) == 10
    run_calibration(_config(tmp_path, n=8), judge=judge)  # a larger n extends the same sample
    assert len(calls) == 16
    rows = [json.loads(x) for x in (tmp_path / "cal" / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and len({(r["id"], r["order"]) for r in rows}) == 16


def test_a_time_budget_scores_the_pairs_judged_so_far(tmp_path: Path) -> None:
    async def judge(messages: list[dict[str, str]]) -> str:
        return "[[A]]"

    result = run_calibration(_config(tmp_path, n=10, parallel=1, max_seconds=0), judge=judge)
    assert result["sample"]["n"] == 2 and result["sample"]["n_sampled"] == 10 and result["sample"]["stopped_by_time"]
    assert result["text"]["n"] == 2


def test_sample_is_seeded_nested_decided_and_short() -> None:
    pool = load_recorded()
    small, large = sample_pairs(pool, 10, seed=3, max_words=40), sample_pairs(pool, 30, seed=3, max_words=40)
    assert large[:10] == small
    assert all(p.gpt4 in ("1", "2") and p.max_words <= 40 for p in large)
    assert sample_pairs(pool, 10, seed=4, max_words=40) != small
    with pytest.raises(ImitlabError, match="at most 1 words"):
        sample_pairs(pool, 5, max_words=1)


def test_bad_recorded_file_names_file_and_item(tmp_path: Path) -> None:
    root = tmp_path / "data"
    path = root / "alpaca_eval" / "annotations_alpaca_eval_gpt4"
    path.mkdir(parents=True)
    good = {"instruction": "q", "output_1": "x", "output_2": "y", "preference": 2}
    for model in ("alpaca-7b", "vicuna-13b"):
        (path / f"{model}.json.gz").write_bytes(gzip.compress(json.dumps([good]).encode()))
    bad = [good, {**good, "preference": 7}]
    (path / "gpt-3.5-turbo-0301.json.gz").write_bytes(gzip.compress(json.dumps(bad).encode()))
    with pytest.raises(ImitlabError, match=r"gpt-3.5-turbo-0301.json.gz: item 2: field 'preference'"):
        load_recorded(root, ("alpaca_eval",))


def test_calibrate_cli_reads_llama_cpp_logprobs(smollm2_server, tmp_path: Path) -> None:
    """The real path: llama.cpp's server returns top log-probabilities in a form the engine reads, and the CLI
    writes calibration.json with both verdicts. (SmolLM2-135M rarely opens its reply with a verdict, so what is
    checked is the plumbing, not the judge.)"""
    import subprocess
    import sys

    imitlab = str(Path(sys.executable).parent / "imitlab")
    out = tmp_path / "cal"
    done = subprocess.run(
        [imitlab, "judge", "calibrate", "--judge", "openai:smollm2-135m-instruct", "--base-url",
         smollm2_server.base_url, "--n", "2", "--max-words", "30", "--logprobs", "--out", str(out),
         "--cache", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "probability verdict" in done.stdout and "agreement with GPT-4" in done.stdout
    result = json.loads((out / "calibration.json").read_text())
    assert result["sample"]["n"] == 2 and result["logprob"]["n"] == 2
    rows = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["verdict"] == "logprob" and "p_first" in r and not r.get("error") for r in rows)
