"""The findings logic on synthetic results.json files that should and should not count as reproduced."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from imitlab.errors import ImitlabError
from imitlab.study.findings import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    compare,
    decide_findings,
    linear_combination,
)

SMALL, LARGE = "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"
BUDGETS = (2000, 8000)


def est(value: float, half: float = 0.03, n: int = 200) -> dict[str, Any]:
    return {"value": value, "low": value - half, "high": value + half, "n": n}


def bench(metric: str, value: float, half: float = 0.03) -> dict[str, Any]:
    return {"n": 200, "metrics": {metric: est(value, half)}}


def scores(nq: float, code: float, half: float = 0.03) -> dict[str, Any]:
    return {"nq_open": bench("f1", nq, half), "humaneval": bench("pass@1", code, half)}


def pref(value: float, half: float = 0.05, a_share: float = 0.55) -> dict[str, Any]:
    return {"judge": {"win_rate_ties_half": est(value, half), "position_bias": {"n": 80, "A": a_share,
                      "B": 1 - a_share, "tie": 0.0}}, "human": None}  # fmt: skip


def style(overlap: float, lists: float) -> dict[str, Any]:
    return {"unigram_overlap": est(overlap, 3.0), "list_when_teacher_lists": est(lists, 0.08)}


def paper_like() -> dict[str, Any]:
    """A run where all four findings show: style/preference climb, broad benchmarks flat, size matters, local helps."""
    models = [{"id": "teacher", "role": "teacher", "spec": "qwen2.5-coder-1.5b-instruct", "params_m": 1780}]
    results: dict[str, Any] = {"schema": "imitlab.study/1", "models": models, "benchmarks": {}, "preference": {},
                               "style": {}, "headline_metric": {"nq_open": "em", "humaneval": "pass@1"},
                               "run": {"config": {"local": {"seeds": "/data/nq_open/NQ-open.dev.jsonl"}}}}  # fmt: skip
    results["benchmarks"]["teacher"] = scores(0.40, 0.60)
    for base, size, level in ((SMALL, 135, 0.10), (LARGE, 494, 0.25)):
        bid = f"base/{base}"
        models.append({"id": bid, "role": "base", "spec": base, "params_m": size, "base": base, "data_kind": None,
                       "tokens": 0})  # fmt: skip
        results["benchmarks"][bid] = scores(level, level)
        results["preference"][bid] = pref(0.15)
        results["style"][bid] = style(20, 0.10)
        for kind in ("broad", "local"):
            for i, tokens in enumerate(BUDGETS):
                mid = f"{base}/{kind}/{tokens}"
                models.append({"id": mid, "role": "imitation", "spec": f"hf:{mid}", "params_m": size, "base": base,
                               "data_kind": kind, "tokens": tokens})  # fmt: skip
                local_gain = 0.06 * (i + 1) if kind == "local" else 0.0
                results["benchmarks"][mid] = scores(level + local_gain + 0.005 * i, level + 0.005 * i)
                results["preference"][mid] = pref(0.25 + 0.15 * i)
                results["style"][mid] = style(30 + 10 * i, 0.4 + 0.3 * i)
    return results


def verdicts(results: dict[str, Any]) -> list[str]:
    return [f["verdict"] for f in decide_findings(results)["findings"]]


def test_a_paper_like_run_reproduces_all_four() -> None:
    out = decide_findings(paper_like())
    assert [f["verdict"] for f in out["findings"]] == [REPRODUCED] * 4
    assert out["reproduced"] == 4
    assert out["metrics"] == {"nq_open": "f1", "humaneval": "pass@1"}  # the soft QA metric, not the EM headline
    f3 = out["findings"][2]["evidence"]
    # bigger base: 0.255 - 0.105 = +0.15; more data: 0.105 - 0.100 = +0.005; the difference +0.145, CI +-0.073
    assert [round(c["difference"]["value"], 3) for c in f3] == [0.145, 0.145]
    assert all(c["difference"]["low"] > 0 for c in f3)
    assert out["findings"][3]["benchmark"] == "nq_open"


def _each_imitation(results: dict[str, Any], kind: str, fn) -> None:
    for m in results["models"]:
        if m["role"] == "imitation" and m["data_kind"] == kind:
            fn(m)


def test_broad_imitation_that_lifts_the_benchmark_contradicts_finding_2() -> None:
    results = paper_like()

    def lift(m: dict[str, Any]) -> None:
        results["benchmarks"][m["id"]]["humaneval"] = bench("pass@1", 0.58)
        results["benchmarks"][m["id"]]["nq_open"] = bench("f1", 0.38)

    _each_imitation(results, "broad", lift)
    assert verdicts(results)[1] == NOT_REPRODUCED


def test_more_data_gaining_more_than_a_bigger_base_contradicts_finding_3() -> None:
    results = paper_like()
    for tokens, value in ((2000, 0.05), (8000, 0.40)):  # the small base's broad series climbs steeply
        results["benchmarks"][f"{SMALL}/broad/{tokens}"] = scores(value, value)
    for tokens in BUDGETS:
        results["benchmarks"][f"{LARGE}/broad/{tokens}"] = scores(0.42, 0.42)
    assert verdicts(results)[2] == NOT_REPRODUCED


def test_local_imitation_that_hurts_its_task_contradicts_finding_4() -> None:
    results = paper_like()
    _each_imitation(results, "local", lambda m: results["benchmarks"][m["id"]].update(nq_open=bench("f1", 0.01)))
    assert verdicts(results)[3] == NOT_REPRODUCED


def test_preference_and_style_moving_away_contradict_finding_1() -> None:
    results = paper_like()

    def away(m: dict[str, Any]) -> None:
        results["preference"][m["id"]] = pref(0.02, 0.01)
        results["style"][m["id"]] = style(5, 0.0)

    _each_imitation(results, "broad", away)
    _each_imitation(results, "local", away)
    assert verdicts(results)[0] == NOT_REPRODUCED


def test_wide_intervals_are_inconclusive_not_reproduced() -> None:
    results = paper_like()
    for benches in results["benchmarks"].values():
        for summary in benches.values():
            metric, e = next(iter(summary["metrics"].items()))
            summary["metrics"][metric] = est(e["value"], 0.5)
    for mid in results["preference"]:
        results["preference"][mid] = pref(results["preference"][mid]["judge"]["win_rate_ties_half"]["value"], 0.5)
        results["style"][mid] = {k: est(v["value"], 100) for k, v in results["style"][mid].items()}
    out = decide_findings(results)
    assert [f["verdict"] for f in out["findings"]] == [INCONCLUSIVE] * 4
    assert all("overlap" in f["reason"] for f in out["findings"])


def test_a_position_biased_judge_cannot_carry_finding_1() -> None:
    results = paper_like()
    for mid in results["preference"]:
        results["preference"][mid]["judge"]["position_bias"] = {"n": 80, "A": 1.0, "B": 0.0, "tie": 0.0}
    f1 = decide_findings(results)["findings"][0]
    assert f1["verdict"] == INCONCLUSIVE  # style still moves, but preference is not evidence
    assert "preference" in f1["reason"] and any("90%" in n for n in f1["notes"])
    assert all(c["family"] == "style" for c in f1["evidence"])


def test_a_probability_judge_leaning_to_one_slot_still_carries_finding_1() -> None:
    """verdict: logprob averages P(better) over both orders: the lean towards slot A cancels, so its P(better)
    decides the preference half even though its top label was A in every call; its win rate is not read."""
    results = paper_like()
    for block in results["preference"].values():
        judge = block["judge"]
        p_better = judge.pop("win_rate_ties_half")  # the paper-like trend, now as probabilities
        judge.update(verdict="logprob", p_a_better=p_better, win_rate_ties_half=est(0.5, 0.01),
                     position_bias={"n": 80, "A": 1.0, "B": 0.0, "tie": 0.0})  # fmt: skip
    f1 = decide_findings(results)["findings"][0]
    assert f1["verdict"] == REPRODUCED
    prefs = [c for c in f1["evidence"] if c["family"] == "preference"]
    assert prefs and all(c["measure"] == "p_a_better" and c["outcome"] == "supports" for c in prefs)


def test_no_gap_between_teacher_and_base_decides_nothing_for_finding_2() -> None:
    results = paper_like()
    results["benchmarks"]["teacher"] = scores(0.11, 0.26)  # the teacher is no better than the larger base
    f2 = decide_findings(results)["findings"][1]
    large_cells = [c for c in f2["evidence"] if c["base"] == LARGE]
    assert all(c["outcome"] == "undecided" and c["relation"].startswith("no gap") for c in large_cells)


def test_missing_pieces_are_inconclusive_with_a_reason() -> None:
    results = paper_like()
    one_base = copy.deepcopy(results)
    one_base["models"] = [m for m in one_base["models"] if m.get("base") != LARGE]
    assert verdicts(one_base)[2] == INCONCLUSIVE
    assert "two base models" in decide_findings(one_base)["findings"][2]["reason"]
    no_local_bench = copy.deepcopy(results)
    no_local_bench["run"]["config"]["local"]["seeds"] = "/data/other.jsonl"
    assert decide_findings(no_local_bench)["findings"][3]["reason"].startswith("not measured")
    assert decide_findings(no_local_bench, local_bench="nq_open")["findings"][3]["verdict"] == REPRODUCED
    empty = {"schema": "imitlab.study/1", "models": [{"id": "teacher", "role": "teacher", "spec": "t"}]}
    assert verdicts(empty) == [INCONCLUSIVE] * 4


def test_interval_arithmetic() -> None:
    assert compare(est(0.5), est(0.4)) == "above" and compare(est(0.4), est(0.5)) == "below"
    assert compare(est(0.5), est(0.45)) == "overlap"
    combo = linear_combination([(1, est(0.5, 0.0392)), (-1, est(0.3, 0.0392))])  # se 0.02 each
    assert combo["value"] == pytest.approx(0.2)
    assert combo["high"] - combo["value"] == pytest.approx(1.96 * 0.02 * 2**0.5, rel=1e-3)


def test_the_report_shows_the_findings_and_the_judge_calibration(tmp_path) -> None:
    import json

    from imitlab.study.report import write_report

    results = paper_like()
    for block in results["preference"].values():
        block["judge"]["spec"] = "qwen2.5-coder-1.5b-instruct"
    (tmp_path / "results.json").write_text(json.dumps(results))
    cal = {"judge": "qwen2.5-coder-1.5b-instruct", "sample": {"n": 24},
           "text": {"agreement": est(0.25, 0.15), "kappa": est(0.05, 0.2), "order_agreement": est(0.3, 0.2),
                    "position_a": est(0.9, 0.05)}}  # fmt: skip
    (tmp_path / "calibration.json").write_text(json.dumps(cal))
    html, numbers = write_report(tmp_path, calibration=[tmp_path / "calibration.json"])
    report = json.loads(numbers.read_text())
    assert [f["verdict"] for f in report["findings"]["findings"]] == [REPRODUCED] * 4
    assert report["calibration"]["qwen2.5-coder-1.5b-instruct"]["agreement"]["value"] == 0.25
    page = html.read_text()
    assert "4 of 4 reproduced" in page and "How far to trust judge" in page
    assert 'bigger base 0.150 <span class="ci">' in page  # the deciding numbers are on the page
    (tmp_path / "bad.json").write_text('{"judge": 3}')
    with pytest.raises(ImitlabError, match=r"bad.json: field judge/text"):
        write_report(tmp_path, calibration=[tmp_path / "bad.json"])


def test_the_cpu_study_config_loads_and_gives_finding_4_its_benchmark() -> None:
    from importlib import resources

    from imitlab.study.findings import DECIDING_METRICS, local_benchmark
    from imitlab.study.sweep_config import load_sweep_config

    config = load_sweep_config(str(resources.files("imitlab.study").joinpath("configs/cpu-study.yaml")))
    assert config.teacher == config.judge.judge == "qwen2.5-coder-1.5b-instruct"
    assert len(config.bases) == 2 and set(config.data_kinds) == {"broad", "local"}
    bench = local_benchmark({"run": {"config": config.as_dict()}})
    assert bench == "nq_open" and bench in config.eval.benches  # finding 4 is decidable from this run
    assert DECIDING_METRICS[bench] == "f1"
