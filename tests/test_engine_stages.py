"""Stages on the request engine: a judge and the style probes reach the same verdicts through a faulty server.

The server (tests/fake_openai_server.py) answers 429 (with Retry-After) and 500 at set rates; its judge is a
deterministic function of the prompt, so a clean server's verdicts are the ground truth. The stages receive a
live model (as the sweep passes them), and the style table also generates a column's answers through it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from imitlab.judge.pairwise import JudgeConfig, run_judge
from imitlab.judge.style import StyleConfig, run_style
from imitlab.models.api_model import open_model
from imitlab.models.engine import EngineSettings

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAI

N = 10
SPEC = "openai:judge"


def respond(body: dict[str, Any]) -> str:
    """A judge that prefers the longer answer and calls hedged answers unauthoritative; otherwise an answerer."""
    text = body["messages"][-1]["content"]
    pair = re.search(r"\[Answer A\]\n(.*?)\n\[End of Answer A\].*\[Answer B\]\n(.*?)\n\[End of Answer B\]", text, re.S)
    if pair:
        a, b = pair.groups()
        return "[[A]]" if len(a) > len(b) else "[[B]]" if len(b) > len(a) else "[[C]]"
    if "[Answer]\n" in text:
        return "[[No]]" if "maybe" in text.split("[Answer]\n", 1)[1] else "[[Yes]]"
    return f"Here is my answer to {text}:\n- a point\n- another point"


def _files(tmp_path: Path) -> dict[str, Path]:
    def write(name: str, rows: list[dict[str, str]]) -> Path:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    ids = [f"p{i}" for i in range(N)]
    return {
        "prompts": write("prompts", [{"id": i, "prompt": f"Question {i}?"} for i in ids]),
        # a is longer on some prompts and hedges on others; b is the same plain answer throughout
        "a": write(
            "a", [{"id": i, "answer": f"{i}: " + ("word " * (n % 3 * 4) or "maybe so")} for n, i in enumerate(ids)]
        ),
        "b": write("b", [{"id": i, "answer": f"{i}: plain answer"} for i in ids]),
    }


def _run(srv: FakeOpenAI, files: dict[str, Path], out: Path) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Judge a vs b, then the style table with a tone probe and a generated column, all through one live model."""
    settings = EngineSettings(concurrency=4, cache_path=out / "responses.sqlite", progress=False,
                              backoff_base=0.01, backoff_max=0.05)  # fmt: skip
    with open_model(SPEC, base_url=srv.base_url, settings=settings) as judge:
        summary = run_judge(JudgeConfig(a=str(files["a"]), b=str(files["b"]), prompts=str(files["prompts"]),
                                        judge=SPEC, out=out / "judge", n_resamples=100), judge=judge)  # fmt: skip
        style = run_style(StyleConfig(teacher=str(files["b"]), models={"a": str(files["a"])}, teacher2=SPEC,
                                      prompts=str(files["prompts"]), judge=SPEC, out=out / "style", n_resamples=100),
                          judge=judge, models={SPEC: judge})  # fmt: skip
        usage = judge.engine.usage
    return summary, style, usage


def _verdicts(out: Path) -> dict[tuple[str, str], tuple[Any, ...]]:
    rows = [json.loads(x) for x in (out / "judge" / "judgments.jsonl").read_text().splitlines()]
    return {(r["id"], r["order"]): (r["position"], r["winner"], r.get("error")) for r in rows}


def _tone(out: Path) -> dict[tuple[str, str], Any]:
    rows = [json.loads(x) for x in (out / "style" / "style_items.jsonl").read_text().splitlines()]
    return {(r["column"], r["id"]): (r["tone"], r["tone_raw"]) for r in rows}


def test_judge_and_style_reach_the_same_verdicts_through_429s_and_500s(tmp_path: Path) -> None:
    files = _files(tmp_path)
    with FakeOpenAI(responder=respond) as clean:
        clean_summary, clean_style, _ = _run(clean, files, tmp_path / "clean")
    with FakeOpenAI(rates={"429": 0.2, "500": 0.2}, retry_after=0.05, responder=respond) as faulty:
        summary, style, usage = _run(faulty, files, tmp_path / "faulty")
    assert faulty.outcomes["429"] > 0 and faulty.outcomes["500"] > 0  # the faults did happen ...
    assert usage.retries == faulty.outcomes["429"] + faulty.outcomes["500"] and usage.failed == 0  # ... and healed
    verdicts = _verdicts(tmp_path / "faulty")
    assert verdicts == _verdicts(tmp_path / "clean") and len(verdicts) == 2 * N
    assert all(error is None for _, _, error in verdicts.values())
    assert summary["counts"] == clean_summary["counts"] and summary["n_call_errors"] == 0
    assert summary["counts"]["win"] > 0 and summary["counts"]["loss"] > 0  # the verdicts are not all alike
    assert _tone(tmp_path / "faulty") == _tone(tmp_path / "clean")
    for column in ("a", "teacher2"):
        assert style["columns"][column]["authoritative_tone"] == clean_style["columns"][column]["authoritative_tone"]
        assert style["columns"][column]["tone_unparsed"] == 0
    assert 0 < style["columns"]["a"]["authoritative_tone"]["value"] < 1  # hedged answers were told apart
    # the generated column (teacher2 through the live model) is identical too
    assert (tmp_path / "faulty/style/answers_teacher2.jsonl").read_text().count("another point") == N
    answers = [(tmp_path / d / "style/answers_teacher2.jsonl").read_text().splitlines() for d in ("clean", "faulty")]
    assert sorted(answers[0]) == sorted(answers[1])
