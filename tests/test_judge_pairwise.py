"""Pairwise judging logic with fake judges: order flips, unparseable replies, missing answers, resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from imitlab.errors import ImitlabError
from imitlab.judge.aggregate import combine
from imitlab.judge.pairwise import JudgeConfig, run_judge
from imitlab.judge.parse import parse_rank, parse_scores, parse_tag, parse_yesno
from imitlab.judge.templates import load_template, render

N = 12


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    prompts = [{"id": f"p{i}", "prompt": f"Question number {i}?"} for i in range(N)]
    # a answers long on even ids, short on odd ones; b always medium. Files are in different orders.
    a = [{"id": f"p{i}", "answer": f"[p{i}] " + ("long answer " * 10 if i % 2 == 0 else "short")} for i in range(N)]
    b = [{"id": f"p{i}", "answer": f"[p{i}] " + "medium answer " * 3} for i in reversed(range(N))]
    return {
        "prompts": _write_jsonl(tmp_path / "prompts.jsonl", prompts),
        "a": _write_jsonl(tmp_path / "a.jsonl", a),
        "b": _write_jsonl(tmp_path / "b.jsonl", b),
    }


def _answers(messages: list[dict[str, str]]) -> tuple[str, str, str]:
    text = messages[-1]["content"]
    question = re.search(r"\[Question\]\n(.*?)\n", text).group(1)
    a = re.search(r"\[Answer A\]\n(.*?)\n\[End of Answer A\]", text, re.S).group(1)
    b = re.search(r"\[Answer B\]\n(.*?)\n\[End of Answer B\]", text, re.S).group(1)
    return question, a, b


def _config(files: dict[str, Path], out: Path, **kw: object) -> JudgeConfig:
    return JudgeConfig(a=str(files["a"]), b=str(files["b"]), prompts=str(files["prompts"]), judge="fake", out=out,
                       n_resamples=200, **kw)  # fmt: skip


def test_always_position_a_judge_nets_out_to_ties(files: dict[str, Path], tmp_path: Path) -> None:
    calls = []

    async def always_a(messages: list[dict[str, str]]) -> str:
        calls.append(messages)
        return "Both are fine but A is better. [[A]]"

    summary = run_judge(_config(files, tmp_path / "out"), judge=always_a)
    assert len(calls) == 2 * N
    assert summary["counts"] == {"win": 0, "tie": N, "loss": 0, "unparsed": 0, "inconsistent": 0}
    assert summary["rates"]["as_good_or_better"]["value"] == 1.0
    assert summary["rates"]["win"]["value"] == 0.0
    assert summary["position_bias"]["A"] == 1.0
    assert summary["n_flipped"] == N and summary["order_consistency"] == 0.0
    # the same biased judge with flip="exclude" decides nothing, and "first" hands every item to side a
    excl = run_judge(_config(files, tmp_path / "excl", flip="exclude"), judge=always_a)
    assert excl["counts"]["inconsistent"] == N and excl["counts"]["tie"] == 0
    first = run_judge(_config(files, tmp_path / "first", flip="first"), judge=always_a)
    assert first["counts"]["win"] == N


def test_consistent_judge_is_counted_by_side_in_both_orders(files: dict[str, Path], tmp_path: Path) -> None:
    async def prefers_longer(messages: list[dict[str, str]]) -> str:
        question, a, b = _answers(messages)
        pid = re.search(r"number (\d+)", question).group(1)
        # never mis-paired: both answers shown belong to this prompt
        assert a.startswith(f"[p{pid}]") and b.startswith(f"[p{pid}]")
        return "[[A]]" if len(a) > len(b) else "[[B]]"

    summary = run_judge(_config(files, tmp_path / "out"), judge=prefers_longer)
    assert summary["counts"]["win"] == N // 2 and summary["counts"]["loss"] == N // 2
    assert summary["order_consistency"] == 1.0
    rate = summary["rates"]["win"]
    assert rate["value"] == 0.5 and rate["low"] < 0.5 < rate["high"]
    items = [json.loads(line) for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert {i["id"]: i["outcome"] for i in items}["p0"] == "win"
    assert {i["id"]: i["outcome"] for i in items}["p1"] == "loss"


def test_garbage_judge_is_unparsed_never_a_win(files: dict[str, Path], tmp_path: Path) -> None:
    replies = iter(["I like turtles", "", "[[A]] or [[B]], hard to say", "{'rank': banana}"] * N)

    async def garbage(messages: list[dict[str, str]]) -> str:
        return next(replies)

    summary = run_judge(_config(files, tmp_path / "out"), judge=garbage)
    assert summary["counts"]["unparsed"] == N
    assert summary["counts"]["win"] == summary["counts"]["loss"] == summary["counts"]["tie"] == 0
    assert summary["position_bias"]["n"] == 0
    # no decided item: the rates are undefined, written as null (strict JSON, no NaN)
    text = (tmp_path / "out" / "summary.json").read_text()
    assert (
        json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))["rates"]["win"]["value"]
        is None
    )
    rows = [json.loads(x) for x in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert all(r["position"] is None and r["raw"] is not None for r in rows)  # recorded, with the raw reply


def test_missing_answer_is_reported_and_excluded(files: dict[str, Path], tmp_path: Path) -> None:
    b_rows = [json.loads(x) for x in files["b"].read_text().splitlines()]
    b_rows = [r for r in b_rows if r["id"] != "p3"]
    b_rows[0]["answer"] = None  # a null answer is missing; an empty string is an answer (it can lose)
    b_rows[1]["answer"] = ""
    _write_jsonl(files["b"], b_rows)
    empty_id = b_rows[0]["id"]

    async def check_pairing(messages: list[dict[str, str]]) -> str:
        question, a, b = _answers(messages)
        pid = re.search(r"number (\d+)", question).group(1)
        assert all(x == "" or x.startswith(f"[p{pid}]") for x in (a, b))
        return "[[C]]"

    summary = run_judge(_config(files, tmp_path / "out"), judge=check_pairing)
    assert summary["n_pairs"] == N - 2
    assert {e["id"] for e in summary["excluded"]} == {"p3", empty_id}
    assert all(e["missing"] == ["b"] for e in summary["excluded"])
    assert summary["counts"]["tie"] == N - 2


def test_resume_skips_done_judgments_and_retries_failures(files: dict[str, Path], tmp_path: Path) -> None:
    calls = {"n": 0}

    async def flaky(messages: list[dict[str, str]]) -> str:
        calls["n"] += 1
        if calls["n"] % 5 == 0:
            raise RuntimeError("HTTP 500")
        return "[[B]]"

    out = tmp_path / "out"
    first = run_judge(_config(files, out), judge=flaky)
    assert first["n_call_errors"] == 2 * N // 5
    assert first["counts"]["unparsed"] > 0
    before = calls["n"]

    async def steady(messages: list[dict[str, str]]) -> str:
        calls["n"] += 1
        return "[[B]]"

    with (out / "judgments.jsonl").open("a") as f:
        f.write('{"id": "p0", "order": "ab", "raw": "[[A')  # a write killed mid-line
    second = run_judge(_config(files, out), judge=steady)
    assert calls["n"] - before == 2 * N // 5  # only the failed calls were redone
    assert second["n_call_errors"] == 0 and second["counts"]["tie"] == N
    other = _config(files, out)
    other.judge = "another-judge"
    before = calls["n"]
    run_judge(other, judge=steady)
    assert calls["n"] - before == 2 * N  # another judge's verdicts are never reused


def test_parsers() -> None:
    assert parse_tag("reasons... [[A]]").position == "A"
    assert parse_tag("[[ b ]]").position == "B"
    assert parse_tag("[[C]]").position == "tie"
    assert parse_tag("End with [[A]], [[B]] or [[C]]").position is None
    assert parse_tag("A is better").position is None
    assert parse_scores("8 9.5\nbecause").scores == (8.0, 9.5)
    assert parse_scores("8 9.5\nbecause").position == "B"
    assert parse_scores("7, 7").position == "tie"
    assert parse_scores("Score: 8 and 9").position is None
    assert parse_rank("[{'model': 'model_2', 'rank': 1}, {'model': 'model_1', 'rank': 2}]").position == "B"
    assert parse_rank('[{"model": "model_1", "rank": 1}, {"model": "model_2", "rank": 2}').position == "A"
    assert parse_rank("[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 1}]").position is None
    assert parse_yesno("[[Yes]]") is True and parse_yesno("[[no]]") is False and parse_yesno("yes") is None
    assert combine("a", "tie") == "tie" and combine("a", None) == "unparsed" and combine("b", "b") == "loss"


def test_default_template_renders_braces_in_answers_literally() -> None:
    tpl = load_template("default")
    msgs = tpl.messages(question="Q {answer_b}", answer_a="uses {question} and {x}", answer_b="B")
    assert msgs[0]["role"] == "system"
    assert "uses {question} and {x}" in msgs[1]["content"]
    assert "Q {answer_b}" in msgs[1]["content"]
    ref = tpl.messages(question="Q", answer_a="a", answer_b="b", reference="THE REF")
    assert "THE REF" in ref[1]["content"]
    with pytest.raises(ImitlabError):
        render("{question} {answer_a}", {"question": "q"})


def test_bad_input_errors_name_file_and_line(files: dict[str, Path], tmp_path: Path) -> None:
    async def judge(messages: list[dict[str, str]]) -> str:
        return "[[A]]"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "p0", "answer": "x"}\n{"id": "p1", "answer": \n')
    with pytest.raises(ImitlabError, match=r"bad.jsonl:2"):
        run_judge(JudgeConfig(a=str(bad), b=str(files["b"]), prompts=str(files["prompts"]), judge="f",
                              out=tmp_path / "o1"), judge=judge)  # fmt: skip
    dup = _write_jsonl(tmp_path / "dup.jsonl", [{"id": "p0", "answer": "x"}, {"id": "p0", "answer": "y"}])
    with pytest.raises(ImitlabError, match=r"dup.jsonl:2: a second answer for prompt 'p0' \(first on line 1\)"):
        run_judge(JudgeConfig(a=str(dup), b=str(files["b"]), prompts=str(files["prompts"]), judge="f",
                              out=tmp_path / "o2"), judge=judge)  # fmt: skip
    noprompt = _write_jsonl(tmp_path / "np.jsonl", [{"id": "x", "prompt": "ok"}, {"id": "y", "title": "no"}])
    with pytest.raises(ImitlabError, match=r"np.jsonl:2: no prompt text"):
        run_judge(JudgeConfig(a=str(files["a"]), b=str(files["b"]), prompts=str(noprompt), judge="f",
                              out=tmp_path / "o3"), judge=judge)  # fmt: skip
    with pytest.raises(ImitlabError, match="unknown judge template"):
        load_template("no-such-template")
