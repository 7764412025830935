"""The whole study through the real path, in miniature: a real llama.cpp teacher, real training, real
benchmarks, a real judge, then a second run that reuses every stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imitlab.models.packaged import PulledModel
from imitlab.study.report import write_report
from imitlab.study.sweep import STAGES_PER_CELL, planned_stages, run_sweep
from imitlab.study.sweep_config import load_sweep_config

pytestmark = pytest.mark.real

TINY = {
    "name": "tiny",
    "teacher": "smollm2-135m-instruct",
    "bases": ["smollm2-135m-instruct"],
    "budgets": [250],
    "data_kinds": ["broad", "local"],
    "broad": {"prompts": ["${IMITLAB_DATA}/alpaca_gpt4_demo/alpaca_en_demo.json"], "limit": 8, "max_tokens": 48},
    "local": {"n_pairs": 10},
    "train": {"block_size": 128, "batch_size": 2, "learning_rate": 1e-4},
    "eval": {"benches": ["nq_open"], "limit": 4},
    "judge": {"prompts": "vicuna80", "limit": 2, "max_tokens": 48, "judge_max_tokens": 48},
    "teacher_concurrency": 2,
}


def test_tiny_sweep_end_to_end_and_cached_rerun(smollm2: PulledModel, tmp_path: Path) -> None:
    config = load_sweep_config(TINY)
    results = run_sweep(config, tmp_path / "run")
    ids = [m["id"] for m in results["models"]]
    assert ids[:2] == ["teacher", "base/smollm2-135m-instruct"]
    imitation = [m for m in results["models"] if m["role"] == "imitation"]
    assert {m["data_kind"] for m in imitation} <= {"broad", "local"} and imitation
    for m in results["models"]:
        nq = results["benchmarks"][m["id"]]["nq_open"]
        assert nq["n"] == 4 and 0.0 <= nq["metrics"]["em"]["value"] <= 1.0
    for m in imitation:
        judged = results["preference"][m["id"]]["judge"]
        assert judged["n"] == 2
        assert (tmp_path / "run" / results["manifests"][m["id"]]["train"]).is_file()
    assert set(results["style"]) >= {m["id"] for m in imitation}
    assert results["samples"] and "teacher" in results["samples"][0]["answers"]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["models"] == results["models"]
    html, report_json = write_report(tmp_path / "run")
    assert html.is_file() and json.loads(report_json.read_text())
    # A second run redoes nothing.
    again = run_sweep(config, tmp_path / "run")
    # (Two stages of the first run can share a key, e.g. judging two students whose answers are identical,
    # so the second run's reuse count is the first run's calls: ran + reused.)
    first = results["run"]
    assert again["run"]["stages_run"] == []
    assert len(again["run"]["stages_reused"]) == len(first["stages_run"]) + len(first["stages_reused"])
    assert set(again["run"]["stages_reused"]) == set(first["stages_run"]) | set(first["stages_reused"])
    assert again["benchmarks"] == results["benchmarks"]
    # The sweep's progress bar counts to the stages the sweep really passed through, skipped cells taken out.
    planned = planned_stages(config) - STAGES_PER_CELL * len(first["skipped"])
    assert len(first["stages_run"]) + len(first["stages_reused"]) == planned
