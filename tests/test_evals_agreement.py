"""Agreement with lm-evaluation-harness (HF backend, local YAML tasks) on the same model and the same items.

A fixed subset, small enough to run in about a minute on 2 CPU cores: MMLU items from two subjects (so the
few-shot prefix cache is shared, as in a full run) and ARC-Easy/Challenge items. lm-eval 0.4.x is a dev
dependency. The bigger comparison (speed included) is bench/eval.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imitlab.config import data_dir
from imitlab.evals import EvalConfig, get_task, run_eval
from imitlab.evals.hf_backend import HFModel
from imitlab.evals.task import Item
from imitlab.models.packaged import PulledModel

pytest.importorskip("lm_eval")
from imitlab.evals.lmeval_ref import run_lm_eval_many

MMLU_SUBJECTS = ("high_school_geography", "marketing")
MMLU_PER_SUBJECT = 4
ARC_ITEMS = 6


def _imitlab_predictions(backend: HFModel, bench: str, ids: list[str], out: Path) -> dict[str, int]:
    task = get_task(bench)
    config = EvalConfig(model="smollm2", benches=[bench], out=out, data_dir=data_dir())
    # Score exactly the chosen items: a task that loads only them, registered under its own name.
    from imitlab.evals import task as registry

    chosen = set(ids)
    subset = registry.Task(**{**task.__dict__, "name": f"{bench}_agreement", "load": lambda d: [
        i for i in task.load(d) if i["id"] in chosen]})  # fmt: skip
    registry._REGISTRY[subset.name] = subset
    try:
        config.benches = [subset.name]
        run_eval(config, model=backend)
    finally:
        registry._REGISTRY.pop(subset.name)
    lines = (out / f"{subset.name}.items.jsonl").read_text().splitlines()
    return {r["id"]: r["pred"] for r in map(json.loads, lines)}


def _mmlu_items() -> tuple[list[Item], dict[str, list[Item]]]:
    task = get_task("mmlu")
    items = [i for i in task.load(data_dir()) if i["subject"] in MMLU_SUBJECTS]
    chosen = [i for s in MMLU_SUBJECTS for i in [x for x in items if x["subject"] == s][:MMLU_PER_SUBJECT]]
    assert task.fewshot is not None
    shots: dict[str, list[Item]] = {}
    for shot in task.fewshot.load(data_dir()):
        shots.setdefault(shot["subject"], []).append(shot)
    return chosen, shots


@pytest.mark.real
def test_mmlu_and_arc_agree_with_lm_eval(smollm2: PulledModel, tmp_path: Path) -> None:
    assert smollm2.hf is not None
    backend = HFModel(str(smollm2.hf), batch_size=8)
    comparisons: list[tuple[str, list[Item], dict[str, list[Item]] | None]] = []
    mmlu, shots = _mmlu_items()
    comparisons.append(("mmlu", mmlu, shots))
    for bench in ("arc_easy", "arc_challenge"):
        comparisons.append((bench, get_task(bench).load(data_dir())[:ARC_ITEMS], None))
    refs = run_lm_eval_many(comparisons, str(smollm2.hf), batch_size=8)
    for bench, items, _ in comparisons:
        ours = _imitlab_predictions(backend, bench, [i["id"] for i in items], tmp_path / bench)
        ref = refs[bench]
        our_acc = sum(ours[i["id"]] == i["gold"] for i in items) / len(items)
        assert abs(our_acc - ref.acc) * 100 <= 0.5, (bench, our_acc, ref.acc)
        same = sum(ours[i["id"]] == ref.predictions[i["id"]] for i in items)
        assert same == len(items), (bench, ours, ref.predictions)
    assert backend.stats["prefix_passes"] >= 2  # the MMLU shots were cached, not recomputed per item
