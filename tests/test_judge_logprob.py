"""Probability verdicts: a judge with a fixed preference for the first slot still ranks answers by content.

The fake judge (tests/fake_logprob_server.py) is a real HTTP server that returns token log-probabilities the way
llama.cpp does. Its label distribution is P(A) = sigmoid(BIAS + SCALE * (quality(slot A) - quality(slot B))),
with BIAS large enough that "A" is its most probable label on every pair: its text verdict is "[[A]]" every time.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import pytest

from imitlab.errors import ImitlabError
from imitlab.judge.logprob import NoLogprobs, label_of, outcome_of, p_a_better, p_first, verdict_position
from imitlab.judge.pairwise import JudgeConfig, run_judge
from imitlab.models.api_model import open_model
from imitlab.models.engine import EngineSettings
from tests.fake_logprob_server import FakeLogprobJudge

BIAS, SCALE = 2.5, 0.4  # |SCALE * quality difference| <= 2.0 < BIAS: the first slot always has the larger P
QUALITIES = [0, 5, 1, 4, 2, 3, 5, 0, 3, 1, 4, 2]  # a's answer quality per prompt; b's is always 2.5 - no ties


def _quality(answer: str) -> float:
    return float(re.search(r"quality (\d+(?:\.\d+)?)", answer).group(1))


def biased_scorer(messages: list[dict[str, str]]) -> dict[str, float]:
    text = messages[-1]["content"]
    first = re.search(r"\[Answer A\]\n(.*?)\n\[End of Answer A\]", text, re.S).group(1)
    second = re.search(r"\[Answer B\]\n(.*?)\n\[End of Answer B\]", text, re.S).group(1)
    pa = 1 / (1 + math.exp(-(BIAS + SCALE * (_quality(first) - _quality(second)))))
    return {"A": 0.98 * pa, "B": 0.98 * (1 - pa), "C": 0.02}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    n = len(QUALITIES)
    return {
        "prompts": _write(tmp_path / "prompts.jsonl", [{"id": f"p{i}", "prompt": f"Question {i}?"} for i in range(n)]),
        "a": _write(
            tmp_path / "a.jsonl", [{"id": f"p{i}", "answer": f"a, quality {q}"} for i, q in enumerate(QUALITIES)]
        ),
        "b": _write(tmp_path / "b.jsonl", [{"id": f"p{i}", "answer": "b, quality 2.5"} for i in range(n)]),
    }


def _run(files: dict[str, Path], out: Path, server: FakeLogprobJudge, verdict: str) -> dict:
    config = JudgeConfig(a=str(files["a"]), b=str(files["b"]), prompts=str(files["prompts"]), judge="fake-biased",
                         out=out, template="label", verdict=verdict, judge_max_tokens=8, n_resamples=200,
                         cache=out / "cache")  # fmt: skip
    settings = EngineSettings(concurrency=2, cache_root=out / "cache", progress=False)
    with open_model("openai:fake-biased", base_url=server.base_url, settings=settings) as judge:
        return run_judge(config, judge=judge)


def test_logprob_verdict_recovers_content_ranking_despite_position_bias(files, tmp_path: Path) -> None:
    with FakeLogprobJudge(biased_scorer) as server:
        text = _run(files, tmp_path / "text", server, "text")
        prob = _run(files, tmp_path / "prob", server, "logprob")
    # the text verdict only sees the slot: [[A]] in every call, so every item is a flip, i.e. a tie
    assert text["position_bias"]["A"] == 1.0
    assert text["counts"]["tie"] == len(QUALITIES) and text["counts"]["win"] == text["counts"]["loss"] == 0
    # the probability verdict ranks by content: a wins exactly where its quality is above b's 2.5
    items = [json.loads(x) for x in (tmp_path / "prob" / "items.jsonl").read_text().splitlines()]
    assert [i["outcome"] for i in items] == ["win" if q > 2.5 else "loss" for q in QUALITIES]
    assert prob["counts"] == {"win": 6, "tie": 0, "loss": 6, "unparsed": 0, "inconsistent": 0}
    # and orders the items by how much better a is: P(a better) increases with a's quality
    by_quality = sorted(zip(QUALITIES, (i["p_a"] for i in items), strict=True))
    for (q1, p1), (q2, p2) in itertools.pairwise(by_quality):
        assert p2 > p1 if q2 > q1 else p2 == pytest.approx(p1)
    # the raw per-call lean towards slot A is large and reported; the averaged number is centred
    assert prob["mean_p_first"] > 0.85
    assert prob["p_a_better"]["value"] == pytest.approx(0.5, abs=1e-9)  # the qualities are symmetric about 2.5
    # every single call preferred slot A, whatever was in it
    rows = [json.loads(x) for x in (tmp_path / "prob" / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * len(QUALITIES)
    assert all(r["verdict"] == "logprob" and r["raw"] == "[[A]]" and 0.5 < r["p_first"] < 1 for r in rows)


def test_logprob_verdict_without_logprobs_is_a_clear_error(files, tmp_path: Path) -> None:
    with FakeLogprobJudge(biased_scorer, give_logprobs=False) as server:
        with pytest.raises(ImitlabError, match=r"returned no token log-probabilities.*--verdict text"):
            _run(files, tmp_path / "x", server, "logprob")


def test_label_probability_from_top_logprobs() -> None:
    # "A" and " A" are different tokens of the same label; C (tie) and other tokens are left out
    top = [[("A", math.log(0.5)), (" A", math.log(0.1)), ("B", math.log(0.2)), ("C", math.log(0.1)), ("a", -1.0)]]
    assert p_first(top) == pytest.approx(0.6 / 0.8)
    # the verdict token follows "[[", not an earlier mention of an answer's letter in the reasons
    reasons = [[("Answer", 0.0)], [(" A", 0.0)], [(" is", 0.0)], [(" wrong", 0.0)], [(" [[", 0.0)],
               [("B", math.log(0.7)), ("A", math.log(0.3))], [("]]", 0.0)]]  # fmt: skip
    assert verdict_position(reasons) == 5
    assert p_first(reasons) == pytest.approx(0.3)
    assert p_first([[("The", 0.0)], [(" end", 0.0)]]) is None  # no verdict token: unparsed, never 0.5
    with pytest.raises(NoLogprobs):
        p_first(None)
    assert [label_of(t) for t in ("A", " B", "\u2581C", "[[A", "a", "AB")] == ["A", "B", "C", "A", None, None]


def test_averaging_both_orders_cancels_a_constant_slot_preference() -> None:
    for lean in (0.5, 0.7, 0.93, 0.1):
        assert outcome_of(p_a_better(lean, lean)) == "tie"
    assert p_a_better(0.9, 0.8) == pytest.approx(0.55)  # a wins: it keeps more of slot A's share than b does
    assert outcome_of(p_a_better(0.9, 0.8)) == "win" and outcome_of(p_a_better(0.8, 0.9)) == "loss"
    assert p_a_better(None, 0.5) is None and outcome_of(None) == "unparsed"
