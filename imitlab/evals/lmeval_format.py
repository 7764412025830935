"""An eval run's scores in lm-evaluation-harness's results layout, so tools written for lm-eval read them.

``imitlab eval`` writes ``OUT/results_<time>.json`` next to its own ``summary.json``, with lm-eval 0.4's keys
(``lm_eval/result_schema.py``): ``results`` ({task: {"alias", "<metric>,<filter>", "<metric>_stderr,<filter>"}}),
``groups`` and ``group_subtasks`` (MMLU: ``mmlu`` -> ``mmlu_stem`` ... -> ``mmlu_<subject>``, sizes weighted as
lm-eval weights them), ``configs``, ``versions``, ``n-shot``, ``higher_is_better``, ``n-samples``
({"original", "effective"}) and ``config``. ``lm_eval.utils.make_table`` renders it.

What differs from a file lm-eval wrote: ``versions`` holds imitlab's version (the prompts are imitlab's
declarations, checked against lm-eval's in docs/evals.md, not lm-eval's task files); metric names follow lm-eval
where one exists (``em`` -> ``exact_match``) and keep imitlab's otherwise (``contains``, ``f1``); stderr is the
standard error of the mean, as lm-eval's ``mean_stderr`` computes it (imitlab's bootstrap CIs stay in
``summary.json``).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from imitlab.fileio import atomic_write_text

if TYPE_CHECKING:
    from imitlab.evals.data import TaskData
    from imitlab.evals.runner import EvalConfig
    from imitlab.evals.task import Task

# imitlab metric -> (lm-eval metric, lm-eval filter) per task kind; the filter is the one lm-eval's task applies
_GENERATE_FILTER = "remove_whitespace"
_NAMES = {"em": "exact_match", "number": "exact_match"}
_OUTPUT_TYPES = {"choice": "multiple_choice", "generate": "generate_until", "code": "generate_until"}


def mean_stderr(values: Sequence[float]) -> float | str:
    """lm-eval's ``mean_stderr``: sample standard deviation / sqrt(n); "N/A" below two values, as lm-eval writes."""
    n = len(values)
    if n < 2:
        return "N/A"
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


def stderrs(records: Sequence[dict[str, Any]], metrics: dict[str, Any]) -> dict[str, float | str]:
    """The stderr of every per-item metric of a summary (acc_macro is a statistic of groups, so it has none)."""
    out: dict[str, float | str] = {}
    for name in metrics:
        values = [float(r[name]) for r in records if r.get(name) is not None]
        if name != "acc_macro" and values:
            out[name] = mean_stderr(values)
    return out


def _filter(task: Task) -> str:
    if task.kind == "choice":
        return "none"
    if task.kind == "code":
        return "create_test"
    return "flexible-extract" if "number" in task.metrics else _GENERATE_FILTER


def _metric_keys(task: Task, name: str) -> tuple[str, str]:
    lm_name = _NAMES.get(name, name)
    flt = _filter(task)
    return f"{lm_name},{flt}", f"{lm_name}_stderr,{flt}"


def _config(task: Task, source: TaskData, k: int, config: EvalConfig, name: str | None = None) -> dict[str, Any]:
    hub = task.hub
    described = source.describe()
    from_hub = described["origin"] != "files"
    entry: dict[str, Any] = {
        "task": name or task.name,
        "dataset_path": (str(source.located.ref) if from_hub else described["data_dir"]),
        "dataset_name": hub.ref.config if (from_hub and hub) else None,
        "test_split": hub.split if (from_hub and hub) else ",".join(task.files),
        "fewshot_split": (hub.fewshot_split if (from_hub and hub) else None) if task.fewshot else None,
        "output_type": _OUTPUT_TYPES[task.kind],
        "description": task.description,
        "doc_to_text": task.template,
        "doc_to_target": task.target,
        "target_delimiter": task.target_delimiter,
        "fewshot_delimiter": task.fewshot_delimiter,
        "num_fewshot": k,
        "metric_list": [
            {"metric": _NAMES.get(m, m), "aggregation": "mean", "higher_is_better": True}
            for m in _metric_names(task, config)
        ],
        "metadata": {
            "version": _version(),
            "imitlab": {
                "data": described,
                "limit": config.limit_for(task.name),
                "limit_mode": config.limit_mode,
                "seed": config.seed,
            },
        },
    }
    if task.kind != "choice":
        entry["generation_kwargs"] = {
            "until": list(task.stop),
            "max_gen_toks": config.max_tokens or task.max_tokens,
            "do_sample": False,
        }
    return entry


def _metric_names(task: Task, config: EvalConfig) -> list[str]:
    if task.kind == "choice":
        return ["acc"] + ([] if task.letters else ["acc_norm"])
    if task.kind == "code":
        return ["pass@1"] + [f"pass@{k}" for k in config.ks if 1 < k <= config.samples]
    return list(task.metrics)


def _version() -> str:
    try:
        return f"imitlab {importlib.metadata.version('imitlab')}"
    except importlib.metadata.PackageNotFoundError:
        return "imitlab"


def to_lm_eval(
    config: EvalConfig,
    tasks: list[Task],
    summaries: dict[str, dict[str, Any]],
    sources: dict[str, TaskData],
    model_info: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """The run's summaries as an lm-eval results dict (see the module docstring)."""
    results: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    group_subtasks: dict[str, list[str]] = {}
    configs: dict[str, Any] = {}
    n_shot: dict[str, int] = {}
    higher: dict[str, dict[str, bool]] = {}
    n_samples: dict[str, dict[str, int]] = {}
    for task in tasks:
        summary = summaries[task.name]
        k = int(summary.get("num_fewshot", 0))
        entry: dict[str, Any] = {"alias": task.name}
        errors = summary.get("stderr", {})
        for name, estimate in summary["metrics"].items():
            if name == "acc_macro":
                continue
            key, se_key = _metric_keys(task, name)
            entry[key] = estimate["value"]
            entry[se_key] = errors.get(name, "N/A")
            higher.setdefault(task.name, {})[key.split(",")[0]] = True
        results[task.name] = entry
        configs[task.name] = _config(task, sources[task.name], k, config)
        n_shot[task.name] = k
        n_samples[task.name] = {"original": summary["n_available"], "effective": summary["n"]}
        if task.group and task.subsets and summary.get("groups"):
            _add_subtasks(
                task,
                summary,
                sources[task.name],
                config,
                k,
                results,
                groups,
                group_subtasks,
                configs,
                n_shot,
                higher,
                n_samples,
            )
    versions = {name: _version() for name in results}
    return {
        "results": results,
        **({"groups": groups} if groups else {}),
        "group_subtasks": group_subtasks,
        "configs": dict(sorted(configs.items())),
        "versions": dict(sorted(versions.items())),
        "n-shot": dict(sorted(n_shot.items())),
        "higher_is_better": dict(sorted(higher.items())),
        "n-samples": n_samples,
        "config": {
            "model": model_info.get("spec", config.model),
            "model_args": None,
            "batch_size": config.batch_size,
            "device": model_info.get("device"),
            "model_dtype": model_info.get("dtype"),
            "limit": config.limit,
            "bootstrap_iters": 2000,
            "random_seed": config.seed,
            "fewshot_seed": None,
        },
        "model_name": config.model,
        "date": started,
        "total_evaluation_time_seconds": str(round(time.time() - started, 3)),
        "imitlab_version": _version(),
    }


def _add_subtasks(
    task: Task,
    summary: dict[str, Any],
    source: TaskData,
    config: EvalConfig,
    k: int,
    results: dict[str, Any],
    groups: dict[str, Any],
    group_subtasks: dict[str, list[str]],
    configs: dict[str, Any],
    n_shot: dict[str, int],
    higher: dict[str, Any],
    n_samples: dict[str, Any],
) -> None:
    """MMLU the way lm-eval lays it out: the benchmark a group of subset groups, each a group of subject tasks.

    Subset scores are size-weighted means of their subjects (lm-eval's weight_by_size) with lm-eval's pooled
    stderr; the top-level row is the benchmark's own acc over every scored item (the same weighted mean)."""
    key, se_key = _metric_keys(task, "acc")
    available: dict[str, int] = {}
    for item in source.items():
        available[str(item[task.group])] = available.get(str(item[task.group]), 0) + 1  # type: ignore[index]
    scored = summary["groups"]  # subject -> {"acc", "n"}
    children = []
    for subset, subjects in task.subsets.items():
        present = [s for s in subjects if s in scored]
        if not present:
            continue
        names = []
        for subject in present:
            name = f"{task.name}_{subject}"
            acc, n = scored[subject]["acc"], scored[subject]["n"]
            se = math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else "N/A"  # mean_stderr of 0/1 values
            results[name] = {"alias": subject, key: acc, se_key: se}  # make_table indents by depth itself
            configs[name] = {**_config(task, source, k, config, name), "dataset_name": subject}
            n_shot[name] = k
            higher[name] = {"acc": True}
            n_samples[name] = {"original": available.get(subject, n), "effective": n}
            names.append(name)
        sizes = [scored[s]["n"] for s in present]
        accs = [scored[s]["acc"] for s in present]
        ses = [results[f"{task.name}_{s}"][se_key] for s in present]
        mean = sum(a * n for a, n in zip(accs, sizes, strict=True)) / sum(sizes)
        pooled: float | str = "N/A"
        if all(isinstance(s, float) for s in ses) and sum(sizes) > len(sizes):
            pooled_var = sum((n - 1) * s**2 * n for n, s in zip(sizes, ses, strict=True)) / (sum(sizes) - len(sizes))  # type: ignore[operator]
            pooled = math.sqrt(pooled_var / sum(sizes))
        alias = subset.removeprefix(task.name + "_").replace("_", " ")
        results[subset] = groups[subset] = {"alias": alias, key: mean, se_key: pooled}
        higher[subset] = {"acc": True}
        n_shot[subset] = k
        group_subtasks[subset] = names
        children.append(subset)
    groups[task.name] = {**results[task.name]}
    group_subtasks[task.name] = children


def write_results(
    config: EvalConfig,
    tasks: list[Task],
    summaries: dict[str, dict[str, Any]],
    sources: dict[str, TaskData],
    model_info: dict[str, Any],
    started: float,
) -> str:
    """Write ``OUT/results_<time>.json`` (lm-eval's name: one per run, the newest by its time) and return its name."""
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(started)) + f".{int(started % 1 * 1e6):06d}"
    name = f"results_{stamp}.json"
    document = to_lm_eval(config, tasks, summaries, sources, model_info, started)
    atomic_write_text(config.out / name, json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    return name
