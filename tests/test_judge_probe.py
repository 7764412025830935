"""The style-versus-substance probe: the pairs differ in exactly one thing, and judges of known taste score as known."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest

from imitlab.errors import ImitlabError
from imitlab.judge.probe import (
    ProbeConfig,
    Solution,
    build_pairs,
    plain,
    run_probe,
    styled,
    unformat,
    with_answer,
    wrong_answer,
)
from imitlab.judge.style import has_list, has_summary, words
from imitlab.models.api_model import open_model
from imitlab.models.engine import EngineSettings
from tests.fake_logprob_server import FakeLogprobJudge

N = 8


def _slots(messages: list[dict[str, str]]) -> tuple[str, str]:
    text = messages[-1]["content"]
    a = re.search(r"\[Answer A\]\n(.*?)\n\[End of Answer A\]", text, re.S).group(1)
    b = re.search(r"\[Answer B\]\n(.*?)\n\[End of Answer B\]", text, re.S).group(1)
    return a, b


def _stated(answer: str) -> int:
    return int(re.findall(r"answer is (-?\d+)", answer)[-1])


@pytest.fixture(scope="module")
def pairs() -> list:
    return build_pairs(("style", "substance", "crossed", "teacher_style"), N, seed=1)


def test_each_kind_differs_in_one_thing(pairs: list) -> None:
    by_kind = {k: [p for p in pairs if p.kind == k] for k in ("style", "substance", "crossed", "teacher_style")}
    assert {k: len(v) for k, v in by_kind.items()} == dict.fromkeys(by_kind, N)
    assert [p.kind for p in pairs[:4]] == ["style", "substance", "crossed", "teacher_style"]  # interleaved
    for p in by_kind["style"] + by_kind["teacher_style"]:
        # the a side has the teacher's formatting, the b side none of it; b's words all appear in a
        assert has_list(p.a) and not has_list(p.b) and not has_summary(p.b) and "**" not in p.b
        assert set(words(p.b)) <= set(words(p.a))
    for p in by_kind["style"]:
        assert has_summary(p.a)
    for p in by_kind["substance"]:
        # same style, and the words differ only in the final result (stated twice: last step and answer)
        extra_a, extra_b = set(words(p.a)) - set(words(p.b)), set(words(p.b)) - set(words(p.a))
        assert len(extra_a) == len(extra_b) == 1 and _stated(p.a) != _stated(p.b)
        assert not has_list(p.a) and not has_list(p.b)
    for style, substance, crossed in zip(by_kind["style"], by_kind["substance"], by_kind["crossed"], strict=True):
        assert crossed.b == style.b == substance.a  # plain and correct
        assert crossed.a != style.a and has_list(crossed.a)  # styled, with the wrong answer
        assert _stated(crossed.a) == _stated(substance.b)


def test_renderings_and_the_subtle_error() -> None:
    s = Solution("q", ("It takes 2/2=1 bolt of white fiber", "So the total is 2+1=3 bolts of fabric"), 3)
    assert (
        plain(s.steps, 3)
        == "It takes 2/2=1 bolt of white fiber. So the total is 2+1=3 bolts of fabric. The answer is 3."
    )
    assert with_answer(s, 4)[-1] == "So the total is 2+1=4 bolts of fabric"  # the '1' and '2' are left alone
    big = Solution("q", ("So he made a profit of 200,000-130,000=$70,000",), 70000)
    assert with_answer(big, 63000)[-1] == "So he made a profit of 200,000-130,000=$63,000"
    text = styled(s.steps, 3)
    assert text.startswith("**Step-by-step solution:**\n\n1. It takes") and has_list(text) and has_summary(text)
    rng = random.Random(0)
    for value in (0, 1, 7, 19, 20, 350, 70000):
        draws = {wrong_answer(value, rng) for _ in range(50)}
        assert value not in draws and min(draws) >= 0 and max(abs(d - value) for d in draws) <= max(2, 0.21 * value)
    formatted = "# Tips\n\n1. **Sleep** well\n2. Eat *greens*.\n\nIn summary, rest and food matter."
    assert unformat(formatted) == "Tips. Sleep well. Eat greens."


def _run(tmp_path: Path, judge, **kw) -> dict:
    config = ProbeConfig(judge="fake", out=tmp_path / "probe", n=N, n_resamples=200, seed=1, parallel=4, **kw)
    return run_probe(config, judge=judge)


def test_a_judge_that_loves_formatting_prefers_style_over_correctness(tmp_path: Path) -> None:
    async def formatting_lover(messages: list[dict[str, str]]) -> str:
        a, b = _slots(messages)
        return "[[A]]" if a.count("**") > b.count("**") else "[[B]]" if b.count("**") > a.count("**") else "[[A]]"

    kinds = _run(tmp_path, formatting_lover)["kinds"]
    half = {k: v["text"]["rates"]["win_rate_ties_half"]["value"] for k, v in kinds.items()}
    assert half == {"style": 1.0, "substance": 0.5, "crossed": 1.0}  # substance: slot A both times -> ties
    assert kinds["substance"]["text"]["counts"]["tie"] == N


def test_a_judge_that_checks_the_answer_prefers_correctness(tmp_path: Path) -> None:
    truth = {}
    for p in build_pairs(("substance",), N, seed=1):
        truth[p.question] = _stated(p.a)

    async def checker(messages: list[dict[str, str]]) -> str:
        question = re.search(r"\[Question\]\n(.*?)\n\n\[Answer A\]", messages[-1]["content"], re.S).group(1)
        a, b = _slots(messages)
        right_a, right_b = _stated(a) == truth[question], _stated(b) == truth[question]
        return "[[C]]" if right_a == right_b else "[[A]]" if right_a else "[[B]]"

    kinds = _run(tmp_path, checker)["kinds"]
    half = {k: v["text"]["rates"]["win_rate_ties_half"]["value"] for k, v in kinds.items()}
    assert half == {"style": 0.5, "substance": 1.0, "crossed": 0.0}
    assert kinds["style"]["text"]["counts"]["tie"] == N


def test_probability_verdict_sees_a_style_lean_behind_a_slot_bias(tmp_path: Path) -> None:
    def scorer(messages: list[dict[str, str]]) -> dict[str, float]:
        a, b = _slots(messages)
        lean = 0.5 * ((a.count("**") > b.count("**")) - (b.count("**") > a.count("**")))
        pa = 1 / (1 + math.exp(-(2.0 + lean)))
        return {"A": pa, "B": 1 - pa}

    with FakeLogprobJudge(scorer) as server:
        settings = EngineSettings(concurrency=2, cache_root=tmp_path / "cache", progress=False)
        with open_model("openai:fake", base_url=server.base_url, settings=settings) as judge:
            kinds = _run(tmp_path, judge, logprobs=True)["kinds"]
    for kind in ("style", "substance", "crossed"):
        assert kinds[kind]["text"]["counts"]["tie"] == N  # "[[A]]" every time: nothing to read
    prob = {k: v["logprob"]["rates"]["win_rate_ties_half"]["value"] for k, v in kinds.items()}
    assert prob == {"style": 1.0, "substance": 0.5, "crossed": 1.0}
    assert kinds["style"]["logprob"]["p_a"]["value"] == pytest.approx(
        (1 / (1 + math.exp(-2.5)) + 1 - 1 / (1 + math.exp(-1.5))) / 2
    )


def test_bad_input_is_named(tmp_path: Path) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "1+1=2\\n#### 2"}\n{"question": 3}\n')
    with pytest.raises(ImitlabError, match=r"test.jsonl:2: needs string fields 'question' and 'answer'"):
        build_pairs(("style",), 2, data=tmp_path)
    with pytest.raises(ImitlabError, match="unknown probe kind"):
        build_pairs(("vibes",), 2, data=tmp_path)
