"""``imitlab eval``: run registered benchmarks on one model and write per-item records and summaries.

Output directory layout (all JSON is UTF-8)::

    manifest.json            config, model spec, backend, data files' sha256, versions, sandbox isolation
    summary.json             {bench: summary} for every benchmark of this run
    <bench>.items.jsonl      one record per scored item, appended as it is scored (resumable)
    <bench>.summary.json     metrics with bootstrap 95% CIs, per-group scores, method counts, speed
    <bench>.run.json         what the items file was made with; a rerun with the same values resumes it
    results_<time>.json      the run's scores in lm-evaluation-harness's results layout (imitlab.evals.lmeval_format)

The runner knows the three task kinds (choice, generate, code) and nothing about any one benchmark. It receives
a :class:`~imitlab.models.base.Model` and picks its scoring method from the model's declared capabilities: a
model that scores any continuation exactly (weights in this process) answers multiple choice by log-likelihood
on raw few-shot prompts, as lm-evaluation-harness does; any other (an API endpoint) answers by letter and is
prompted as ``api_mode`` says.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic

from imitlab.devices import check_device, check_dtype
from imitlab.errors import ImitlabError
from imitlab.evals import metrics, sandbox
from imitlab.evals.data import TaskData, open_task_data
from imitlab.evals.task import Item, Task, get_task
from imitlab.fileio import atomic_write_text, iter_jsonl, repair_tail
from imitlab.models.base import GenRequest, LLRequest, Mode
from imitlab.stage_config import StageConfig
from imitlab.stats import bootstrap_ci

if TYPE_CHECKING:
    from imitlab.models.base import Model

log = logging.getLogger(__name__)


class EvalConfig(StageConfig):
    model: str  # a model spec (packaged name, hf:DIR, gguf:PATH, openai:NAME)
    benches: list[str]
    out: Path
    data_dir: Path | None = None
    # Score this many items per benchmark (None = all): one number for every benchmark, or one per benchmark
    # ({"nq_open": 100, "humaneval": 20}), since a code problem costs far more. Which items, ``limit_mode`` says.
    limit: int | dict[str, int | None] | None = None
    # "sample": a fixed-seed sample in file order (the Python API's and the sweep's default, as before);
    # "first": the first N items, per group for grouped benchmarks (lm-eval's --limit; the CLI's --limit)
    limit_mode: str = "sample"
    seed: int = 1234
    num_fewshot: int | None = None  # examples per prompt (None: the benchmark's own k; 0: none)
    subjects: list[str] | None = None  # grouped benchmarks (MMLU): score only these groups or named subsets
    datasets: dict[str, str] = pydantic.Field(default_factory=dict)  # bench -> REF read instead (imitlab.sources)
    backend: str = "auto"  # auto: local weights -> "hf"; openai: -> "api". "api" also serves local GGUFs
    base_url: str | None = None
    batch_size: int = 16
    threads: int | None = None  # torch CPU threads for the local backend (1 is faster on a busy machine)
    device: str = "auto"  # local backend: auto | cpu | cuda | cuda:N | mps (imitlab.devices)
    dtype: str = "auto"  # local backend weights: auto | bf16 | fp16 | fp32 (auto: bf16 on a GPU, fp32 on CPU)
    concurrency: int = 4  # parallel requests to an API endpoint
    # How a model that cannot score every continuation (an API endpoint) is prompted: "chat" (each prompt a user
    # turn) or "completions" (raw text). A model that can is always scored on raw prompts, like lm-eval.
    api_mode: str = "chat"
    progress: bool = True  # a progress bar per benchmark (and per batch of API requests)
    samples: int = 1  # code: samples per problem (pass@k for k <= samples)
    temperature: float | None = None  # code sampling temperature; default 0 for one sample, 0.8 for more
    max_tokens: int | None = None  # override the benchmark's token cap
    sandbox_timeout_s: float = 10.0
    chunk: int = 64  # items scored (and appended to disk) at a time
    cache: Path | None = None
    ks: tuple[int, ...] = (1, 10, 100)

    def limit_for(self, bench: str) -> int | None:
        if not isinstance(self.limit, dict):
            return self.limit
        if bench not in self.limit:
            raise ImitlabError(f"limit: no item count for {bench!r}; give one per benchmark (null = all)")
        return self.limit[bench]

    def run_key(self, task: Task, data_hash: str) -> dict[str, Any]:
        """What an items file depends on; a resumed run must match it exactly."""
        key = {
            "bench": task.name, "model": self.model, "backend": self.backend, "api_mode": self.api_mode,
            "limit": self.limit_for(task.name), "seed": self.seed, "samples": self.samples,
            "temperature": self.temperature, "max_tokens": self.max_tokens, "data_sha256": data_hash,
        }  # fmt: skip
        # Settings added later enter the key only when set, so runs made before them still resume.
        if self.limit_mode != "sample":
            key["limit_mode"] = self.limit_mode
        if self.num_fewshot is not None:
            key["num_fewshot"] = self.num_fewshot
        if self.subjects and task.group:
            key["subjects"] = sorted(self.subjects)
        return key


@dataclass
class _Prepared:
    item: Item
    prefix: str
    prompt: str  # prefix + the item's own prompt
    shot_ids: list[str] = field(default_factory=list)


# -- entry point ---------------------------------------------------------------------------------------
def run_eval(
    config: EvalConfig, progress: Callable[[str], None] | None = None, model: Model | None = None
) -> dict[str, dict[str, Any]]:
    """Score every benchmark in ``config.benches`` on ``config.model``; returns {bench: summary}.

    ``model`` scores with a model already open (loaded weights, a served teacher) instead of opening
    ``config.model``; ``progress`` is told each chunk's count as a line of text.
    """
    tasks = [get_task(name) for name in config.benches]  # unknown names fail before any model loads
    for task in tasks:
        config.limit_for(task.name)  # as does a per-benchmark limit that misses one
        fewshot_count(task, config.num_fewshot)  # and a few-shot count the benchmark cannot give
    _check_selection(config, tasks)
    check_device(config.device)
    check_dtype(config.dtype)
    sources = {t.name: open_task_data(t, config.data_dir, config.datasets) for t in tasks}
    data_hashes = {name: source.sha256() for name, source in sources.items()}  # reads (or downloads) each set
    config.out.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, dict[str, Any]] = {}
    started = time.time()
    with open_eval_model(config) if model is None else contextlib.nullcontext(model) as model:
        _write_manifest(config, tasks, sources, data_hashes, model)
        for task in tasks:
            summaries[task.name] = _run_task(task, model, sources[task.name], data_hashes[task.name], config, progress)
            atomic_write_text(config.out / "summary.json", json.dumps(summaries, indent=2))
        from imitlab.evals.lmeval_format import write_results

        write_results(config, tasks, summaries, sources, model.describe(), started)
    return summaries


@contextlib.contextmanager
def open_eval_model(config: EvalConfig) -> Iterator[Model]:
    """The model ``config`` names: local weights in this process ("hf"), or an endpoint ("api"; a local GGUF or
    packaged model gets a llama.cpp server with one decoding slot per concurrent request). Closed on exit."""
    from imitlab.models.spec import parse_spec, resolve_hf

    spec = parse_spec(config.model, base_url=config.base_url)
    kind = config.backend
    if kind == "auto":
        kind = "api" if spec.kind == "openai" else "hf"
    if kind == "hf":
        from imitlab.evals.hf_backend import HFModel

        model = HFModel(resolve_hf(spec, config.cache), spec=str(spec), name=spec.name, batch_size=config.batch_size,
                        device=config.device, dtype=config.dtype, threads=config.threads)  # fmt: skip
        with contextlib.closing(model):
            yield model
    elif kind == "api":
        from imitlab.models.api_model import open_model
        from imitlab.models.engine import EngineSettings

        settings = EngineSettings(concurrency=config.concurrency, cache_root=config.cache, progress=config.progress)
        with open_model(spec, settings=settings, cache=config.cache) as api_model:
            yield api_model
    else:
        raise ImitlabError(f"unknown backend {config.backend!r}; use auto, hf or api")


def prompt_mode(model: Model, config: EvalConfig) -> Mode:
    """Raw prompts for a model that scores any continuation (lm-eval's way); else what ``api_mode`` says."""
    if model.capabilities.loglikelihood == "any":
        return "completions"
    if config.api_mode not in ("chat", "completions"):
        raise ImitlabError(f"api_mode must be 'chat' or 'completions', got {config.api_mode!r}")
    return "chat" if config.api_mode == "chat" else "completions"


# -- items ---------------------------------------------------------------------------------------------
def select_items(
    items: list[Item], limit: int | None, seed: int, mode: str = "sample", group: str | None = None
) -> list[Item]:
    """Which items to score. ``sample``: a fixed-seed sample (kept in file order), so two models scored with the
    same seed see the same items. ``first``: the first ``limit`` items, or the first ``limit`` of each ``group``
    value (lm-eval's --limit, which applies to each MMLU subject)."""
    if mode not in ("sample", "first"):
        raise ImitlabError(f"limit_mode must be 'sample' or 'first', got {mode!r}")
    if limit is not None and limit < 1:
        raise ImitlabError(f"--limit must be at least 1, got {limit}")
    if limit is None or (limit >= len(items) and not group):
        return items
    if mode == "first":
        taken: Counter[Any] = Counter()
        kept = []
        for item in items:
            key = item[group] if group else None
            if taken[key] < limit:
                taken[key] += 1
                kept.append(item)
        return kept
    if limit >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def fewshot_count(task: Task, num_fewshot: int | None) -> int:
    """How many solved examples precede each item: ``num_fewshot`` when given, else the benchmark's own k."""
    if num_fewshot is None:
        return task.fewshot.k if task.fewshot is not None else 0
    if num_fewshot < 0:
        raise ImitlabError(f"--num-fewshot must be 0 or more, got {num_fewshot}")
    if num_fewshot > 0 and task.fewshot is None:
        raise ImitlabError(f"{task.name} has no few-shot examples to draw from (it is 0-shot); use --num-fewshot 0")
    return num_fewshot


def filter_subjects(task: Task, items: list[Item], subjects: list[str] | None) -> list[Item]:
    """The items of the named groups (MMLU subjects) or named subsets (lm-eval's mmlu_stem, ...)."""
    if not subjects or not task.group:
        return items
    wanted = set(expand_subjects(task, subjects, {str(i[task.group]) for i in items}))
    return [i for i in items if str(i[task.group]) in wanted]


def expand_subjects(task: Task, subjects: list[str], known: set[str]) -> list[str]:
    """Subject and subset names -> subject names; an unknown name is an error listing the known ones."""
    names: list[str] = []
    for name in subjects:
        if name in task.subsets:
            names += task.subsets[name]
        elif name in known:
            names.append(name)
        else:
            raise ImitlabError(
                f"{task.name}: unknown subject {name!r}; use a group ({', '.join(task.subsets) or 'none'}) "
                f"or one of {len(known)} subjects: {', '.join(sorted(known))}"
            )
    return list(dict.fromkeys(names))


def _check_selection(config: EvalConfig, tasks: list[Task]) -> None:
    if config.subjects and not any(t.group for t in tasks):
        raise ImitlabError(
            f"--subjects applies to benchmarks with subjects (mmlu); none of {', '.join(config.benches)} has them"
        )
    unknown = sorted(set(config.datasets) - {t.name for t in tasks})
    if unknown:
        raise ImitlabError(f"--dataset names {', '.join(unknown)}, which this run does not score")


def prepare(task: Task, items: list[Item], pool: list[Item], k: int | None = None) -> list[_Prepared]:
    """Attach each item's few-shot prefix (first k of its pool, or of its group's pool) and full prompt."""
    k = task.fewshot.k if k is None and task.fewshot is not None else (k or 0)
    pools: dict[Any, list[Item]] = {}
    if task.fewshot is not None:
        if task.fewshot.match:
            for shot in pool:
                pools.setdefault(shot[task.fewshot.match], []).append(shot)
        else:
            pools[None] = pool
    prepared = []
    for item in items:
        shots: list[Item] = []
        if task.fewshot is not None and k > 0:
            key = item[task.fewshot.match] if task.fewshot.match else None
            shots = pools.get(key, [])[:k]
            if len(shots) < k:
                raise ImitlabError(f"{task.name}: only {len(shots)} few-shot examples for {key!r}, need {k}")
        prefix = task.prefix(item, shots)
        prepared.append(_Prepared(item, prefix, prefix + task.template.format(**item), [s["id"] for s in shots]))
    return prepared


# -- one benchmark -------------------------------------------------------------------------------------
def _run_task(
    task: Task,
    model: Model,
    source: TaskData,
    data_hash: str,
    config: EvalConfig,
    progress: Callable[[str], None] | None,
) -> dict[str, Any]:
    items = filter_subjects(task, source.items(), config.subjects)
    selected = select_items(items, config.limit_for(task.name), config.seed, config.limit_mode, task.group)
    k = fewshot_count(task, config.num_fewshot)
    prepared = prepare(task, selected, source.fewshot_pool() if k else [], k)
    if task.group:  # score a group's items together so its shared prefix is computed once per chunk
        prepared.sort(key=lambda p: str(p.item[task.group]))
    records_path = config.out / f"{task.name}.items.jsonl"
    run_path = config.out / f"{task.name}.run.json"
    key = config.run_key(task, data_hash)
    info = model.describe()
    if "dtype" in info:  # bf16 and fp32 scores differ slightly: one items file, one precision
        key["dtype"] = info["dtype"]
    done = _resume(records_path, run_path, key)
    todo = [p for p in prepared if p.item["id"] not in done]
    if done:
        log.info("%s: resuming, %d of %d items already scored", task.name, len(prepared) - len(todo), len(prepared))
    atomic_write_text(run_path, json.dumps(key, indent=2))
    scorer = {"choice": _score_choice, "generate": _score_generate, "code": _score_code}[task.kind]
    from imitlab.models.engine import ProgressBar  # imports openai: only once there is work

    start = time.perf_counter()
    bar = ProgressBar(f"eval {task.name}", len(prepared), enabled=config.progress)
    with open(records_path, "a", encoding="utf-8") as out, bar:
        bar.advance(len(prepared) - len(todo), note="resumed" if done else "")
        for begin in range(0, len(todo), config.chunk):
            batch = todo[begin : begin + config.chunk]
            for record in scorer(task, model, batch, config):
                done[record["id"]] = record
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            rate = (begin + len(batch)) / max(time.perf_counter() - start, 1e-9)
            bar.advance(len(batch), note=f"{rate:.2f} items/s")
            if progress:
                progress(f"{task.name}: {len(done)}/{len(prepared)}")
    elapsed = time.perf_counter() - start
    records = [done[p.item["id"]] for p in prepared]
    summary = summarize(task, records, config)
    from imitlab.evals.lmeval_format import stderrs

    summary["stderr"] = stderrs(records, summary["metrics"])  # lm-eval's standard errors, for its results layout
    summary.update(
        model=config.model, backend=info["backend"], n_available=len(items), num_fewshot=k,
        limit=config.limit_for(task.name), limit_mode=config.limit_mode, seed=config.seed,
        subjects=expand_subjects(task, config.subjects, {str(i[task.group]) for i in source.items()})
        if config.subjects and task.group else None,
        data=source.describe(), scored_this_run=len(todo), elapsed_s=round(elapsed, 3),
        items_per_s=round(len(todo) / elapsed, 3) if todo and elapsed > 0 else None,
        backend_stats=model.usage,
    )  # fmt: skip
    atomic_write_text(config.out / f"{task.name}.summary.json", json.dumps(summary, indent=2))
    return summary


def _resume(records_path: Path, run_path: Path, key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if not records_path.exists():
        return {}
    previous = json.loads(run_path.read_text()) if run_path.exists() else None
    if previous != key:
        log.info("%s was made with other settings; starting it over", records_path)
        records_path.unlink()
        return {}
    repair_tail(records_path)  # a line cut off by a crash; everything before it is complete
    return {record["id"]: record for _, record in iter_jsonl(records_path, {"id": object})}


# -- scorers: each returns one record per prepared item ------------------------------------------------
def _score_choice(task: Task, model: Model, batch: list[_Prepared], config: EvalConfig) -> list[dict[str, Any]]:
    records = []
    if model.capabilities.loglikelihood == "any":
        requests = [
            LLRequest(p.prompt, task.target_delimiter + choice, prefix_key=p.prefix)
            for p in batch
            for choice in p.item["choices"]
        ]
        results = iter(model.loglikelihood(requests))
        for p in batch:
            choices = p.item["choices"]
            lls = [next(results).logprob for _ in choices]
            pred = int(np.argmax(lls))
            norm = [ll / max(1, len(c)) for ll, c in zip(lls, choices, strict=True)]
            record = _record(task, p, output=choices[pred], method="loglikelihood")
            record.update(
                choices=choices, gold=p.item["gold"], pred=pred, logprobs=[round(x, 6) for x in lls],
                acc=float(pred == p.item["gold"]),
            )  # fmt: skip
            if not task.letters:
                record["acc_norm"] = float(int(np.argmax(norm)) == p.item["gold"])
            records.append(record)
        return records
    # A model that cannot score every choice's text answers by letter: letter tasks as they are, others with
    # their options lettered.
    from imitlab.evals.api_backend import choose_letters

    letters = [[chr(ord("A") + i) for i in range(len(p.item["choices"]))] for p in batch]
    prompts = [p.prompt if task.letters else _lettered(p, ls) for p, ls in zip(batch, letters, strict=True)]
    answers = choose_letters(model, prompts, letters, mode=prompt_mode(model, config))  # type: ignore[arg-type]
    for p, ls, prompt, answer in zip(batch, letters, prompts, answers, strict=True):
        record = _record(task, p, output=answer.text, method=answer.method)
        record.update(
            prompt=prompt, choices=p.item["choices"], letters=ls, gold=p.item["gold"], pred=answer.pred,
            letter_logprobs=answer.letter_logprobs, acc=float(answer.pred == p.item["gold"]),
        )  # fmt: skip
        records.append(record)
    return records


def _lettered(p: _Prepared, letters: list[str]) -> str:
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(letters, p.item["choices"], strict=True))
    return f"{p.prefix}Question: {p.item['question']}\n{options}\nAnswer:"


def _score_generate(task: Task, model: Model, batch: list[_Prepared], config: EvalConfig) -> list[dict[str, Any]]:
    max_tokens = config.max_tokens or task.max_tokens
    outputs = _generate(model, batch, task.stop, max_tokens, n=1, temperature=0.0, mode=prompt_mode(model, config))
    records = []
    for p, outs in zip(batch, outputs, strict=True):
        text = outs[0].strip()  # lm-eval's remove_whitespace filter
        answers = p.item["answers"]
        record = _record(task, p, output=text, method="generate")
        record["gold"] = answers
        for name in task.metrics:
            record[name] = round(metrics.GENERATE_METRICS[name](text, answers), 6)
        records.append(record)
    return records


def _score_code(task: Task, model: Model, batch: list[_Prepared], config: EvalConfig) -> list[dict[str, Any]]:
    n = config.samples
    temperature = config.temperature if config.temperature is not None else (0.0 if n == 1 else 0.8)
    max_tokens = config.max_tokens or task.max_tokens
    mode = prompt_mode(model, config)
    chat = mode == "chat"  # a chat answer is a fenced block or prose around code: no stops, extracted below
    outputs = _generate(model, batch, () if chat else task.stop, max_tokens, n=n, temperature=temperature, mode=mode)
    programs = []
    for p, outs in zip(batch, outputs, strict=True):
        for text in outs:
            completion = extract_code(text, p.item) if chat else text
            programs.append(sandbox.humaneval_program(p.item, completion))
    limits = sandbox.Limits(timeout_s=config.sandbox_timeout_s)
    results = iter(sandbox.run_many(programs, limits))
    records = []
    for p, outs in zip(batch, outputs, strict=True):
        runs = [next(results) for _ in outs]
        passed = sum(r.passed for r in runs)
        record = _record(task, p, output=outs[0], method="generate")
        record.update(
            outputs=outs if n > 1 else None, statuses=[r.status for r in runs],
            errors=["" if r.passed else r.reason for r in runs], n=n, passed=passed,
            **{f"pass@{k}": metrics.pass_at_k(n, passed, k) for k in (1, *config.ks) if k <= n},
        )  # fmt: skip
        records.append(record)
    return records


def _generate(
    model: Model, batch: list[_Prepared], stop: tuple[str, ...], max_tokens: int, n: int, temperature: float, mode: Mode
) -> list[list[str]]:
    requests = [GenRequest(p.prompt, prefix_key=p.prefix) for p in batch]  # the key lets a local model share a prefix
    return model.generate(requests, stop=stop, max_tokens=max_tokens, n=n, temperature=temperature, mode=mode)


_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str, problem: Item) -> str:
    """Turn a chat model's answer into a completion of the HumanEval prompt.

    A fenced block is taken if there is one. If it defines the entry point, the whole block replaces the
    function (the prompt's imports are kept: the block follows the prompt and redefines the function);
    otherwise it is treated as the function body, like a plain completion.
    """
    match = _FENCE.search(text)
    code = match.group(1) if match else text
    if re.search(rf"^\s*def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.MULTILINE):
        return "\n    pass\n\n" + code  # close the prompt's open function, then redefine it
    return code


def _record(task: Task, p: _Prepared, *, output: str, method: str) -> dict[str, Any]:
    return {
        "id": p.item["id"], "group": p.item.get(task.group) if task.group else None, "prompt": p.prompt,
        "fewshot_ids": p.shot_ids, "output": output, "method": method,
    }  # fmt: skip


# -- summaries -----------------------------------------------------------------------------------------
_METRICS = {"choice": ("acc", "acc_norm"), "code": ("pass@1",)}


def summarize(task: Task, records: list[dict[str, Any]], config: EvalConfig) -> dict[str, Any]:
    """Metric means with bootstrap 95% CIs (seeded), per-group scores and a macro average, method counts."""
    summary: dict[str, Any] = {"bench": task.name, "display_name": task.title, "kind": task.kind,
                               "headline": task.headline_metric, "n": len(records), "metrics": {}}  # fmt: skip
    names = list(task.metrics if task.kind == "generate" else _METRICS[task.kind])
    if task.kind == "code":
        names += [f"pass@{k}" for k in config.ks if 1 < k <= config.samples]
    for name in names:
        values = [r[name] for r in records if r.get(name) is not None]
        if values or not records:
            summary["metrics"][name] = bootstrap_ci(values, seed=config.seed).as_dict()
    if task.group and records:
        groups: dict[str, list[float]] = defaultdict(list)
        for r in records:
            groups[r["group"]].append(r["acc"])
        summary["groups"] = {g: {"acc": float(np.mean(v)), "n": len(v)} for g, v in sorted(groups.items())}
        labels = sorted(groups)
        table = np.array([[r["acc"], labels.index(r["group"])] for r in records])
        summary["metrics"]["acc_macro"] = bootstrap_ci(table, _macro, seed=config.seed).as_dict()
    summary["methods"] = dict(Counter(r["method"] for r in records))
    if task.kind == "code":
        summary["statuses"] = dict(Counter(s for r in records for s in r["statuses"]))
        summary["sandbox"] = {k: v for k, v in sandbox.isolation().items() if k != "prefix"}
    return summary


def _macro(table: np.ndarray) -> float:
    """Mean over groups of the group mean (column 0 = score, column 1 = group index)."""
    return float(np.mean([table[table[:, 1] == g, 0].mean() for g in np.unique(table[:, 1])]))


# -- manifest ------------------------------------------------------------------------------------------
def _write_manifest(
    config: EvalConfig, tasks: list[Task], sources: dict[str, TaskData], data_hashes: dict[str, str], model: Model
) -> None:
    import importlib.metadata as md
    import platform

    versions = {}
    for package in ("imitlab", "torch", "transformers", "openai", "datasets"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[package] = md.version(package)
    config_dict = config.as_dict()
    info = model.describe()
    manifest = {
        "config": config_dict, "backend": info["backend"], "model_spec": info["spec"], "model": info,
        # the local backend's resolved device and dtype
        "precision": {k: info[k] for k in ("device", "dtype")} if "dtype" in info else None,
        "data_dir": next((str(s.located.data_dir) for s in sources.values() if s.located.data_dir), None),
        "data": {name: s.describe() for name, s in sources.items()},
        "data_sha256": data_hashes, "benches": {t.name: t.about for t in tasks},
        "versions": versions, "python": platform.python_version(),
        "sandbox": {k: v for k, v in sandbox.isolation().items() if k != "prefix"}
        if any(t.kind == "code" for t in tasks)
        else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    atomic_write_text(config.out / "manifest.json", json.dumps(manifest, indent=2))
