"""Validation on real recorded verdicts ($IMITLAB_DATA): AlpacaEval GPT-4 annotations, Vicuna-80 GPT-4 reviews.

Also loads the real prompt sets and judge templates from the data dir, and replays GPT-4's AlpacaEval
verdicts through the whole ``run_judge`` pipeline (prompt set, answer matching by instruction text,
the AlpacaEval template and its ranking parser, both orders, aggregation).
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from imitlab.config import data_dir
from imitlab.judge.pairwise import JudgeConfig, run_judge
from imitlab.judge.recorded import alpaca_eval_tally, vicuna_reviews, vicuna_tally
from imitlab.judge.sources import load_prompts
from imitlab.judge.templates import load_template


@pytest.fixture(scope="module")
def data() -> Path:
    return data_dir()


# The AlpacaEval 1 leaderboard as published: alpaca_eval/leaderboards/data_AlpacaEval/alpaca_eval_gpt4_leaderboard.csv
# in the PyPI wheel alpaca-eval==0.6.6 (the same annotations, counted by AlpacaEval's own code). Columns: n_wins,
# n_wins_base, n_draws, n_total (parsed verdicts only), win_rate (%, a draw counts half), standard_error.
ALPACA_EVAL_LEADERBOARD = {
    "alpaca-7b": (205, 584, 16, 805, 26.459627329192543, 1.535711469748),
    "vicuna-13b": (566, 237, 2, 805, 70.43478260869566, 1.6069688407799696),
    "gpt-3.5-turbo-0301": (716, 83, 5, 804, 89.36567164179104, 1.0789487022114888),
}


@pytest.mark.parametrize("model", sorted(ALPACA_EVAL_LEADERBOARD))
def test_alpaca_eval_gpt4_counts_match_the_published_leaderboard(data: Path, model: str) -> None:
    wins, losses, draws, parsed, win_rate, standard_error = ALPACA_EVAL_LEADERBOARD[model]
    path = data / "alpaca_eval" / "annotations_alpaca_eval_gpt4" / f"{model}.json.gz"
    t = alpaca_eval_tally(path, n_resamples=2000)
    assert t.counts == {"win": wins, "tie": draws, "loss": losses, "unparsed": 805 - parsed, "inconsistent": 0}
    # The file's raw preferences, read without imitlab: 2 = the model wins, 1 = davinci-003 wins, 1.5 or 0 = tie.
    raw = Counter(row["preference"] for row in json.loads(gzip.decompress(path.read_bytes())))
    assert (raw[2], raw[1], raw[1.5] + raw[0], raw[None]) == (wins, losses, draws, 805 - parsed)
    rate = t.rates["win_rate_ties_half"]
    assert 100 * rate["value"] == pytest.approx(win_rate, abs=1e-4)
    # the bootstrap 95% CI is about +-1.96 standard errors
    assert 100 * (rate["high"] - rate["low"]) / 2 == pytest.approx(1.96 * standard_error, rel=0.1)
    win = t.rates["win"]
    assert win["low"] < win["value"] < win["high"]


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt35", (44, 22, 14)), ("bard", (30, 10, 40)), ("alpaca-13b", (3, 1, 76)), ("llama-13b", (3, 0, 77))],
)
def test_vicuna80_gpt4_reviews(data: Path, model: str, expected: tuple[int, int, int]) -> None:
    path = data / "vicuna_bench" / "review_gpt4" / f"review_{model}_vicuna-13b.jsonl"
    reviews = vicuna_reviews(path)
    assert len(reviews) == 80
    # imitlab's parser reads the file's recorded scores from the review text, except in two math reviews
    # whose text ends "Assistant 1: 10 / Assistant 2: 4" while the score field says [10, 2] (same winner)
    differ = {r.question_id: (r.parsed, r.recorded) for r in reviews if r.parsed != r.recorded}
    assert differ == ({"70": ((10.0, 4.0), (10, 2))} if model in ("bard", "llama-13b") else {})
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    independent = (
        sum(r["score"][0] > r["score"][1] for r in rows),
        sum(r["score"][0] == r["score"][1] for r in rows),
        sum(r["score"][0] < r["score"][1] for r in rows),
    )
    t, _ = vicuna_tally(path, n_resamples=200)
    assert (t.counts["win"], t.counts["tie"], t.counts["loss"]) == independent == expected


def test_vicuna80_blog_claims(data: Path) -> None:
    reviews = data / "vicuna_bench" / "review_gpt4"
    # "Vicuna-13B ... outperforming other models like LLaMA and Stanford Alpaca in more than 90% of cases"
    for other in ("llama-13b", "alpaca-13b"):
        t, _ = vicuna_tally(reviews / f"review_{other}_vicuna-13b.jsonl", n_resamples=200)
        assert t.rates["loss"]["value"] > 0.9
    # Figure 1: Vicuna-13B's total GPT-4 score is 92% of ChatGPT's
    _, ratio = vicuna_tally(reviews / "review_gpt35_vicuna-13b.jsonl", n_resamples=200)
    assert round(100 / ratio) == 92


def test_prompt_sets_and_templates_from_data_dir(data: Path) -> None:
    assert len(load_prompts("koala")) == 180
    vicuna = load_prompts("vicuna80")
    assert len(vicuna) == 80 and sum(p.reference is not None for p in vicuna) == 10
    mt = load_prompts("mt-bench")
    assert len(mt) == 80 and mt[0].id == "81" and sum(p.reference is not None for p in mt) == 30
    assert len(load_prompts("alpaca-eval")) == 805
    assert len(load_prompts("koala", limit=5)) == 5
    mtt = load_template("mt-bench")
    assert mtt.has_reference_mode and mtt.parser == "tag"
    ref = mtt.messages(question="Q?", answer_a="x", answer_b="y", reference="R!")
    assert "[The Start of Reference Answer]\nR!" in ref[1]["content"]
    ae = load_template("alpaca-eval")
    msgs = ae.messages(question="Say {hi}", answer_a="one", answer_b="two")
    assert msgs[0]["role"] == "system" and '"""Say {hi}"""' in msgs[1]["content"]
    assert ae.parser == "rank" and load_template("vicuna").parser == "scores"


def test_replay_gpt4_alpaca_eval_verdicts_through_run_judge(data: Path, tmp_path: Path) -> None:
    ann_rows = json.loads(gzip.open(data / "alpaca_eval/annotations_alpaca_eval_gpt4/alpaca-7b.json.gz").read())
    by_instruction = {row["instruction"]: row for row in ann_rows}
    # The answers GPT-4 saw (a few davinci-003 outputs differ from model_outputs/), as AlpacaEval-format files
    # in reverse order and without ids, so they must be matched to the prompts by instruction text.
    files = {}
    for side, key, gen in (("a", "output_2", "generator_2"), ("b", "output_1", "generator_1")):
        rows = [{"instruction": r["instruction"], "output": r[key], "generator": r[gen]} for r in reversed(ann_rows)]
        files[side] = tmp_path / f"{side}.json"
        files[side].write_text(json.dumps(rows))
    answer = re.compile(r'"answer": """(.*?)"""\n    \}', re.S)

    async def replay(messages: list[dict[str, str]]) -> str:
        text = messages[-1]["content"]
        instruction = text.split('"instruction": """', 1)[1].split('""",\n}', 1)[0]
        row = by_instruction[instruction]
        first, _ = answer.findall(text)
        if row["preference"] not in (1, 2):
            return "I cannot decide."
        winner_text = row["output_1"] if row["preference"] == 1 else row["output_2"]
        winner = "model_1" if first == winner_text else "model_2"
        loser = "model_2" if winner == "model_1" else "model_1"
        return f"[{{'model': '{winner}', 'rank': 1}}, {{'model': '{loser}', 'rank': 2}}]"

    summary = run_judge(
        JudgeConfig(
            a=str(files["a"]),
            b=str(files["b"]),
            prompts="alpaca-eval",
            judge="replay:gpt-4",
            template="alpaca-eval",
            out=tmp_path / "replay",
            n_resamples=200,
            parallel=64,
        ),
        judge=replay,
    )
    assert summary["n_pairs"] == 805 and not summary["excluded"]
    wins, losses, draws, *_ = ALPACA_EVAL_LEADERBOARD["alpaca-7b"]  # GPT-4's ties are replayed as no verdict
    assert summary["counts"] == {"win": wins, "tie": 0, "loss": losses, "unparsed": draws, "inconsistent": 0}
    assert summary["order_consistency"] == 1.0
    assert summary["a"]["model"] == "alpaca-7b" and summary["b"]["model"] == "text_davinci_003"


def test_reference_guided_mode_on_mt_bench_first_turns(tmp_path: Path) -> None:
    prompts = load_prompts("mt-bench")
    with_ref = {p.id for p in prompts if p.reference}
    for side in ("a", "b"):
        rows = [{"id": p.id, "answer": f"{side} answers {p.id}"} for p in prompts]
        (tmp_path / f"{side}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen: dict[str, bool] = {}

    async def judge(messages: list[dict[str, str]]) -> str:
        text = messages[-1]["content"]
        pid = re.search(r"answers (\d+)", text).group(1)
        seen[pid] = "[The Start of Reference Answer]" in text
        return "[[C]]"

    def config(**kw: object) -> JudgeConfig:
        return JudgeConfig(a=str(tmp_path / "a.jsonl"), b=str(tmp_path / "b.jsonl"), prompts="mt-bench",
                           judge="fake", template="mt-bench", n_resamples=100, **kw)  # fmt: skip

    summary = run_judge(config(out=tmp_path / "ref"), judge=judge)
    assert summary["n_reference_guided"] == len(with_ref) == 30
    assert {pid for pid, used in seen.items() if used} == with_ref
    seen.clear()
    off = run_judge(config(out=tmp_path / "noref", reference="off"), judge=judge)
    assert off["n_reference_guided"] == 0 and not any(seen.values())
