"""MMLU 5-shot speed and agreement: imitlab's local backend vs lm-evaluation-harness, same items, same run.

Both score the same MMLU test items (the first ``--per-subject`` items of each of ``--subjects`` subjects)
with the same 5 dev shots per subject, on the same HF checkpoint, on the same device in the same dtype
(``--device``/``--dtype``, resolved once by imitlab.devices: auto = bf16 on a GPU, fp32 on the CPU), in this
one process:

1. ``imitlab``  :func:`imitlab.evals.run_eval` with :class:`~imitlab.evals.hf_backend.HFModel` (the
               few-shot prefix's KV cache computed once per subject and reused; only the answer-letter
               position goes through the output layer);
2. ``lm-eval``  ``lm_eval.simple_evaluate`` with its HF backend on local YAML tasks over the same items
               (its default logits cache for one-token continuations is on).

Wall time includes each side's model load. The sides alternate over ``--rounds`` rounds (the machine may be
shared) and each side's fastest run is compared. Prints items/s, the speed-up, both accuracies and the share of
identical predictions; ``--json FILE`` writes them. Target: >= 3x faster with identical predictions.

    .venv/bin/python bench/eval.py [--model smollm2-135m-instruct] [--subjects 2] [--per-subject 10]
                                   [--device auto] [--dtype auto]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from imitlab.config import data_dir
from imitlab.devices import describe, dtype_name, resolve
from imitlab.evals import EvalConfig, get_task, run_eval
from imitlab.evals import task as registry
from imitlab.evals.hf_backend import HFModel
from imitlab.evals.lmeval_ref import run_lm_eval_many
from imitlab.models.spec import parse_spec, resolve_hf

# Subjects with long and short questions alike, in a fixed order so runs are comparable.
SUBJECTS = [
    "high_school_geography", "marketing", "college_biology", "high_school_us_history", "philosophy",
    "professional_law", "abstract_algebra", "nutrition",
]  # fmt: skip


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--per-subject", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps, for both sides")
    parser.add_argument("--dtype", default="auto", help="auto | bf16 | fp16 | fp32 weights, for both sides")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both sides (default: torch's)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each side; the fastest counts")
    parser.add_argument("--json", type=Path, default=None)
    return parser


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Score the items with both sides over ``args.rounds`` alternating rounds; the comparison's figures."""
    if args.threads:
        torch.set_num_threads(args.threads)  # both sides run in this process, so both get the same
    model_dir = resolve_hf(parse_spec(args.model))
    device, dtype = resolve(args.device, args.dtype)
    # Both sides get the resolved device and dtype, so "auto" cannot resolve differently for one of them.
    where, precision = str(device), dtype_name(dtype)
    task = get_task("mmlu")
    subjects = SUBJECTS[: args.subjects]
    all_items = task.load(data_dir())
    items = [i for s in subjects for i in [x for x in all_items if x["subject"] == s][: args.per_subject]]
    assert task.fewshot is not None
    shots: dict[str, list] = {}
    for shot in task.fewshot.load(data_dir()):
        shots.setdefault(shot["subject"], []).append(shot)
    ids = {i["id"] for i in items}
    subset = registry.Task(**{**task.__dict__, "name": "mmlu_bench", "load": lambda d: [
        i for i in task.load(d) if i["id"] in ids]})  # fmt: skip
    registry._REGISTRY[subset.name] = subset
    threads = torch.get_num_threads()
    print(f"{len(items)} MMLU items ({', '.join(subjects)}), model {args.model}, torch threads {threads}")
    print(f"device {describe(device)}, {precision} weights, both sides")

    def imitlab_run() -> tuple[float, dict[str, int]]:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            backend = HFModel(model_dir, batch_size=args.batch_size, device=where, dtype=precision)
            config = EvalConfig(model=args.model, benches=["mmlu_bench"], out=Path(tmp), data_dir=data_dir())
            run_eval(config, model=backend)
            seconds = time.perf_counter() - start
            lines = (Path(tmp) / "mmlu_bench.items.jsonl").read_text().splitlines()
        return seconds, {r["id"]: r["pred"] for r in map(json.loads, lines)}

    def lm_eval_run() -> tuple[float, dict[str, int]]:
        start = time.perf_counter()
        ref = run_lm_eval_many(
            [("mmlu", items, shots)], model_dir, batch_size=args.batch_size, device=where, dtype=precision
        )["mmlu"]
        return time.perf_counter() - start, ref.predictions

    # The machine is shared: alternate the two sides over the rounds and compare each side's fastest run.
    times: dict[str, list[float]] = {"imitlab": [], "lm-eval": []}
    runs = {"imitlab": imitlab_run, "lm-eval": lm_eval_run}
    predictions: dict[str, dict[str, int]] = {}
    for round_ in range(args.rounds):
        for side in ("imitlab", "lm-eval") if round_ % 2 == 0 else ("lm-eval", "imitlab"):
            seconds, predictions[side] = runs[side]()
            times[side].append(round(seconds, 2))
            print(f"round {round_ + 1} {side}: {seconds:.1f} s, load avg {os.getloadavg()[0]:.1f}")
    ours, theirs = predictions["imitlab"], predictions["lm-eval"]
    ours_s, ref_s = min(times["imitlab"]), min(times["lm-eval"])

    n = len(items)
    same = sum(ours[i["id"]] == theirs[i["id"]] for i in items)
    result = {
        "items": n, "subjects": subjects, "model": args.model, "batch_size": args.batch_size, "threads": threads,
        "device": describe(device), "dtype": precision,
        "rounds": args.rounds, "imitlab_s_each": times["imitlab"], "lm_eval_s_each": times["lm-eval"],
        "imitlab_s": ours_s, "lm_eval_s": ref_s,
        "imitlab_items_per_s": round(n / ours_s, 3), "lm_eval_items_per_s": round(n / ref_s, 3),
        "speedup": round(ref_s / ours_s, 2),
        "imitlab_acc": sum(ours[i["id"]] == i["gold"] for i in items) / n,
        "lm_eval_acc": sum(theirs[i["id"]] == i["gold"] for i in items) / n,
        "identical_predictions": same / n,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f} at the end",
    }  # fmt: skip
    return result


def main() -> None:
    args = parser().parse_args()
    result = compare(args)
    for key, value in result.items():
        print(f"{key:>22}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
