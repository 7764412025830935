"""Score the same multiple-choice items with lm-evaluation-harness, for agreement checks and speed comparisons.

lm-eval's built-in tasks download their data from the hub, so this writes local YAML tasks
(``dataset_path: json`` + ``data_files``) over JSON files made from the very items imitlab scores, with
lm-eval's own MMLU/ARC prompt formats. MMLU gets one lm-eval task per subject, as lm-eval itself does, so
each subject's five dev questions are its shots. Needs the ``dev`` extra (``pip install lm-eval``).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imitlab.evals.task import Item

_MMLU_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
    dev: {dev}
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
num_fewshot: 5
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about {subject_name}.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{choices[0]}}}}\\nB. {{{{choices[1]}}}}\\nC. {{{{choices[2]}}}}\\nD. {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""  # noqa: E501 - lm-eval's MMLU prompt line, verbatim

_ARC_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
test_split: test
num_fewshot: 0
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: gold
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""

# Greedy completions only (speed and agreement checks): the "bypass" metric scores nothing.
_GENERATE_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
test_split: test
num_fewshot: 0
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{id}}}}"
generation_kwargs:
  until: {until}
  max_gen_toks: {max_gen_toks}
  do_sample: false
metric_list:
  - metric: bypass
"""


@dataclass
class GenerationResult:
    outputs: dict[str, str]  # prompt id -> greedy completion, cut at the first stop string
    elapsed_s: float


@dataclass
class ReferenceResult:
    predictions: dict[str, int]  # item id -> index of the highest-scoring choice
    acc: float
    n: int
    elapsed_s: float  # lm-eval's evaluation, without writing the task files


def _mmlu_doc(item: Item) -> dict[str, Any]:
    return {"id": item["id"], "question": item["question"], "choices": item["options"], "answer": item["gold"]}


def run_lm_eval(
    bench: str,
    items: list[Item],
    model_dir: str,
    *,
    shots: dict[str, list[Item]] | None = None,
    batch_size: int = 16,
    device: str = "auto",
    dtype: str = "auto",
) -> ReferenceResult:
    """lm-eval's HF backend on ``items`` of ``bench`` ("mmlu" needs ``shots``: subject -> dev items)."""
    return run_lm_eval_many([(bench, items, shots)], model_dir, batch_size=batch_size, device=device, dtype=dtype)[
        bench
    ]


def run_lm_eval_many(
    jobs: list[tuple[str, list[Item], dict[str, list[Item]] | None]],
    model_dir: str,
    *,
    batch_size: int = 16,
    device: str = "auto",
    dtype: str = "auto",
) -> dict[str, ReferenceResult]:
    """Several benchmarks in one lm-eval run (one model load); {bench: result}. ``elapsed_s`` is the run's.

    ``device`` and ``dtype`` are imitlab's settings (:mod:`imitlab.devices`), resolved the way imitlab's own
    backend resolves them, so a comparison puts both on the same device in the same precision.
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    from imitlab.devices import resolve

    where, precision = resolve(device, dtype)

    with tempfile.TemporaryDirectory(prefix="imitlab-lmeval-") as tmp:
        root = Path(tmp)
        names: dict[str, list[str]] = {}
        for bench, items, shots in jobs:
            names[bench] = _write_tasks(root, bench, items, shots)
        start = time.perf_counter()
        results = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": model_dir, "dtype": str(precision).removeprefix("torch.")},
            tasks=[n for ns in names.values() for n in ns],
            task_manager=TaskManager(include_path=str(root), include_defaults=False),
            batch_size=batch_size,
            log_samples=True,
            device=str(where),
        )
        elapsed = time.perf_counter() - start
    out = {}
    for bench, items, _ in jobs:
        predictions: dict[str, int] = {}
        for name in names[bench]:
            for sample in results["samples"][name]:
                scores = [resp[0] for resp in sample["filtered_resps"]]
                predictions[sample["doc"]["id"]] = max(range(len(scores)), key=scores.__getitem__)
        correct = sum(predictions[i["id"]] == i["gold"] for i in items)
        out[bench] = ReferenceResult(predictions, correct / len(items), len(items), elapsed)
    return out


def _write_tasks(root: Path, bench: str, items: list[Item], shots: dict[str, list[Item]] | None) -> list[str]:
    """Local YAML tasks (and their JSONL data) for ``items``; returns the task names."""
    names = []
    if bench == "mmlu":
        assert shots is not None, "mmlu needs each subject's dev items as shots"
        by_subject: dict[str, list[Item]] = defaultdict(list)
        for item in items:
            by_subject[item["subject"]].append(item)
        for subject, members in sorted(by_subject.items()):
            task = f"imitlab_mmlu_{subject}"
            test, dev = root / f"{subject}_test.jsonl", root / f"{subject}_dev.jsonl"
            test.write_text("".join(json.dumps(_mmlu_doc(i)) + "\n" for i in members))
            dev.write_text("".join(json.dumps(_mmlu_doc(i)) + "\n" for i in shots[subject]))
            yaml = _MMLU_YAML.format(task=task, test=test, dev=dev, subject_name=subject.replace("_", " "))
            (root / f"{task}.yaml").write_text(yaml)
            names.append(task)
    elif bench in ("arc_easy", "arc_challenge"):
        task = f"imitlab_{bench}"
        test = root / f"{bench}_test.jsonl"
        docs = [{"id": i["id"], "question": i["question"], "choices": i["choices"], "gold": i["gold"]} for i in items]
        test.write_text("".join(json.dumps(d) + "\n" for d in docs))
        (root / f"{task}.yaml").write_text(_ARC_YAML.format(task=task, test=test))
        names.append(task)
    else:
        raise ValueError(f"no lm-eval reference task for {bench!r}")
    return names


def run_lm_eval_generate(
    prompts: dict[str, str],
    model_dir: str,
    *,
    until: list[str],
    max_gen_toks: int,
    batch_size: int = 16,
    device: str = "auto",
    dtype: str = "auto",
) -> GenerationResult:
    """lm-eval's HF backend completing ``prompts`` (id -> raw prompt) greedily, as a code benchmark would."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from imitlab.devices import resolve

    where, precision = resolve(device, dtype)
    with tempfile.TemporaryDirectory(prefix="imitlab-lmeval-") as tmp:
        root = Path(tmp)
        test = root / "generate_test.jsonl"
        test.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in prompts.items()))
        yaml = _GENERATE_YAML.format(
            task="imitlab_generate", test=test, until=json.dumps(until), max_gen_toks=max_gen_toks
        )
        (root / "imitlab_generate.yaml").write_text(yaml)
        start = time.perf_counter()
        results = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": model_dir, "dtype": str(precision).removeprefix("torch.")},
            tasks=["imitlab_generate"],
            task_manager=TaskManager(include_path=str(root), include_defaults=False),
            batch_size=batch_size,
            log_samples=True,
            device=str(where),
        )
        elapsed = time.perf_counter() - start
    outputs = {s["doc"]["id"]: s["filtered_resps"][0] for s in results["samples"]["imitlab_generate"]}
    return GenerationResult(outputs, elapsed)
