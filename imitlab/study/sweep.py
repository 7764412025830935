"""``imitlab sweep CONFIG.yaml``: the paper's grid over imitation data budgets, base models and data kinds.

For each cell it runs collect -> train -> eval -> judge/style, every stage cached by the hash of its inputs
(stages.py), and writes ``RUN/results.json`` (the contract in docs/study.md) for ``imitlab report``.
One llama.cpp server for the teacher serves collection, synthesis, the teacher's own benchmark run, its
reference answers and the judge, all through its OpenAI-compatible API.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text, sha256_file
from imitlab.models.api_model import APIModel
from imitlab.study.stages import StageCache
from imitlab.study.sweep_config import SweepConfig, expand, load_sweep_config

log = logging.getLogger(__name__)


class Teacher:
    """The teacher, open for the whole sweep: a live model (a llama.cpp server for local models) that serves
    collection, synthesis, its own benchmark run, its reference answers and the judge."""

    def __init__(self, spec: str, model: APIModel) -> None:
        self.spec, self.model = spec, model

    @property
    def base_url(self) -> str:
        return self.model.engine.base_url

    @property
    def name(self) -> str:
        return self.model.engine.model


@contextmanager
def serve_teacher(config: SweepConfig) -> Iterator[Teacher]:
    from imitlab.models.api_model import open_model
    from imitlab.models.engine import EngineSettings

    # Long generations on a small machine: a generous end-to-end timeout, and progress bars per stage.
    settings = EngineSettings(concurrency=config.teacher_concurrency, timeout=600.0,
                              cache_root=Path(config.cache) if config.cache else None)  # fmt: skip
    with open_model(config.teacher, settings=settings, cache=config.cache, ctx_per_slot=4096) as model:
        yield Teacher(config.teacher, model)


def _teacher_mode(config: SweepConfig) -> str:
    """``eval.teacher_mode`` resolved: "auto" scores a local teacher on raw prompts, like the students."""
    from imitlab.models.spec import parse_spec

    if config.eval.teacher_mode != "auto":
        return config.eval.teacher_mode
    return "chat" if parse_spec(config.teacher).kind == "openai" else "completions"


def _params_m(spec: str) -> float | None:
    from imitlab.models.catalog import packaged_models

    model = packaged_models().get(spec)
    if model is None:
        return None
    text = model.params.upper()
    return float(text[:-1]) * (1000 if text.endswith("B") else 1) if text[-1] in "MB" else None


def run_sweep(config: SweepConfig, run_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """Run (or resume, or extend) the sweep in ``run_dir``; return the results it writes."""
    console = console or Console()
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    atomic_write_text(run_dir / "sweep_config.json", json.dumps(asdict(config), indent=2))
    cache = StageCache(run_dir, on_event=lambda what, name: console.print(f"  [dim]{what:>6}[/] {name}"))
    data_dir = str(expand("${IMITLAB_DATA}", config.data_dir))
    models: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []

    with serve_teacher(config) as teacher:
        console.print(f"[bold]teacher[/] {config.teacher} at {teacher.base_url}")
        datasets = {kind: _dataset(kind, config, cache, teacher, data_dir) for kind in config.data_kinds}
        models.append(
            {
                "id": "teacher",
                "role": "teacher",
                "spec": config.teacher,
                "params_m": _params_m(config.teacher),
                "base": None,
                "data_kind": None,
                "tokens": None,
                "dir": None,
            }
        )
        for base in config.bases:
            models.append(
                {
                    "id": f"base/{base}",
                    "role": "base",
                    "spec": base,
                    "params_m": _params_m(base),
                    "base": base,
                    "data_kind": None,
                    "tokens": 0,
                    "dir": None,
                }
            )
            for kind, data in datasets.items():
                available = _student_tokens(data, base, config)
                for budget in sorted(config.budgets):
                    if budget > available:
                        note = f"{kind} data has {available} {base} tokens, fewer than the budget {budget}"
                        console.print(f"  [yellow]skipped[/] {base}/{kind}/{budget}: {note}")
                        skipped.append({"id": f"{base}/{kind}/{budget}", "reason": note})
                        continue
                    train_dir = _train(base, kind, budget, data, config, cache)
                    models.append(
                        {
                            "id": f"{base}/{kind}/{budget}",
                            "role": "imitation",
                            "spec": f"hf:{train_dir / 'model'}",
                            "params_m": _params_m(base),
                            "base": base,
                            "data_kind": kind,
                            "tokens": budget,
                            "dir": train_dir.name,
                        }
                    )
        benchmarks = {m["id"]: _evaluate(m, config, cache, teacher, data_dir) for m in models}
        preference, style, samples = _preferences(models, config, cache, teacher, data_dir)

    results = {
        "schema": "imitlab.study/1",
        "run": {
            "name": config.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),  # this invocation
            "stage_seconds": round(cache.stage_seconds, 1),  # every stage's own run time, reused ones too
            "config": asdict(config),
            "stages_run": cache.ran,
            "stages_reused": cache.reused,
            "skipped": skipped,
        },
        "teacher": config.teacher,
        "models": [{k: v for k, v in m.items() if k != "dir"} for m in models],
        "benchmarks": benchmarks,
        "headline_metric": {b: _headline(b) for b in config.eval.benches},
        "preference": preference,
        "style": style,
        "samples": samples,
        "manifests": {m["id"]: {"train": f"stages/{m['dir']}/manifest.json"} for m in models if m["dir"]},
    }
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, ensure_ascii=False))
    return results


# -- data ---------------------------------------------------------------------------------------------
def _dataset(kind: str, config: SweepConfig, cache: StageCache, teacher: Teacher, data_dir: str) -> Path:
    if kind == "broad":
        raw = _broad(config, cache, teacher)
    else:
        raw = _local(config, cache, teacher)
    eval_sets = _eval_sets(config)
    return cache.run(
        "decontaminate",
        {"data": raw.name, "eval_sets": eval_sets},
        lambda d: _decontaminate(raw, d, data_dir, eval_sets),
    )


def _broad(config: SweepConfig, cache: StageCache, teacher: Teacher) -> Path:
    from imitlab.collect.config import CollectConfig
    from imitlab.collect.runner import collect
    from imitlab.prompts.importers import import_prompts
    from imitlab.prompts.schema import write_prompt_set

    files = [expand(p, config.data_dir) for p in config.broad.prompts]
    for f in files:
        if not Path(f).is_file():
            raise ImitlabError(f"broad.prompts: file not found: {f}")
    key = {"files": {f: sha256_file(f) for f in files}, "limit": config.broad.limit}

    def make_prompts(d: Path) -> None:
        records = import_prompts(files).records[: config.broad.limit]
        write_prompt_set(d / "prompts.jsonl", records)

    prompts = cache.run("prompts-broad", key, make_prompts)

    def run_collect(d: Path) -> None:
        # The teacher's identity (its weights, never its server's port) keys the collection, so a sweep killed
        # here resumes this directory in a new process, asking the teacher only for what is not written yet.
        cfg = CollectConfig(
            teacher=config.teacher,
            prompts=prompts / "prompts.jsonl",
            out=d,
            concurrency=config.teacher_concurrency,
            max_tokens=config.broad.max_tokens,
            temperature=0.7,
            seed=config.seed,
            cache_root=Path(config.cache) if config.cache else None,
        )
        collect(cfg, model=teacher.model)

    return cache.run(
        "collect-broad",
        {
            "prompts": prompts.name,
            "teacher": config.teacher,
            "max_tokens": config.broad.max_tokens,
            "seed": config.seed,
        },
        run_collect,
    )


def _local(config: SweepConfig, cache: StageCache, teacher: Teacher) -> Path:
    from imitlab.data.dataset import write_dataset
    from imitlab.prompts.synthesize import SynthConfig, qa_conversations, synthesize_qa

    seeds = expand(config.local.seeds, config.data_dir)
    key = {"seeds": sha256_file(seeds), **asdict(config.local), "teacher": config.teacher, "seed": config.seed}

    def run_synth(d: Path) -> None:
        cfg = SynthConfig(
            seed_file=Path(seeds),
            n_pairs=config.local.n_pairs,
            n_seed=config.local.n_seed,
            k=config.local.k,
            concurrency=config.teacher_concurrency,
            seed=config.seed,
        )
        result = synthesize_qa(teacher.model, cfg)
        write_dataset(
            d,
            qa_conversations(result.records, config.teacher),
            operation="synthesize",
            inputs=[Path(seeds)],
            params={**asdict(config.local), "seed": config.seed},
        )

    return cache.run("synthesize-local", key, run_synth)


def _headline(bench: str) -> str:
    from imitlab.evals import get_task

    return get_task(bench).headline_metric  # the benchmark's declaration says which metric it reports


def _eval_sets(config: SweepConfig) -> list[str]:
    """Only what this sweep evaluates on: the data must not contain those items (benchmarks and judge prompt sets
    go by the same names in decontamination)."""
    from imitlab.data.decontaminate import eval_set_names

    known = set(eval_set_names())
    return sorted({n for n in [*config.eval.benches, config.judge.prompts] if n in known})


def _decontaminate(raw: Path, out: Path, data_dir: str, eval_sets: list[str]) -> None:
    from imitlab.data.dataset import write_dataset
    from imitlab.data.decontaminate import DecontamConfig, decontaminate
    from imitlab.data.schema import read_conversations

    cfg = DecontamConfig(eval_sets=eval_sets, data_dir=Path(data_dir))
    records = read_conversations(raw)
    clean, report = decontaminate(records, cfg)
    if not clean:
        raise ImitlabError(
            f"decontamination removed all {len(records)} conversations of {raw.name}: they overlap the evaluation "
            f"sets {', '.join(eval_sets)}; take imitation prompts from elsewhere"
        )
    atomic_write_text(out / "decontamination_report.json", json.dumps(report, indent=2, ensure_ascii=False))
    write_dataset(
        out,
        clean,
        operation="decontaminate",
        inputs=[raw / "conversations.jsonl"],
        params={},
        extra_files=["decontamination_report.json"],
    )


def _student_tokens(data: Path, base: str, config: SweepConfig) -> int:
    from imitlab.data.schema import read_conversations
    from imitlab.data.subset import count_tokens

    tokenizer = _tokenizer(base, config.cache)
    return sum(count_tokens(tokenizer, r["messages"]) for r in read_conversations(data))


@functools.lru_cache(maxsize=8)
def _tokenizer(base: str, cache: str | None) -> Any:
    """A base model's tokenizer, loaded once per sweep process (every data kind counts tokens with it)."""
    from imitlab.models.tokenizer import load_tokenizer

    return load_tokenizer(base, cache)


# -- train --------------------------------------------------------------------------------------------
def _train(base: str, kind: str, budget: int, data: Path, config: SweepConfig, cache: StageCache) -> Path:
    from imitlab.train.launch import launch
    from imitlab.train.tracking import REPORT_TO_ENV
    from imitlab.train.train_config import TrainConfig

    t = config.train
    key = {"base": base, "data": data.name, "tokens": budget, **asdict(t), "seed": config.seed}

    def run(d: Path) -> None:
        launch(
            TrainConfig(
                base=base,
                data=str(data),
                out=str(d),
                tokens=budget,
                block_size=t.block_size,
                batch_size=t.batch_size,
                learning_rate=t.learning_rate,
                warmup_steps=t.warmup_steps,
                scheduler=t.scheduler,
                epochs=t.epochs,
                lora=t.lora,
                seed=config.seed,
                save="steps",  # resumable: a killed train stage picks up its last checkpoint
                save_steps=25,
                cache=config.cache,
                processes=t.processes,
                # tracked (when $IMITLAB_REPORT_TO names a tracker) under the cell's id: base/kind/budget
                report_to=os.environ.get(REPORT_TO_ENV, "none"),
                run_name=f"{base}/{kind}/{budget}",
            )
        )

    return cache.run("train", key, run)


# -- evaluate -----------------------------------------------------------------------------------------
def _evaluate(model: dict[str, Any], config: SweepConfig, cache: StageCache, teacher: Teacher, data_dir: str) -> Any:
    from imitlab.evals import EvalConfig, run_eval

    e = config.eval
    is_teacher = model["role"] == "teacher"
    key = {"model": model["dir"] or model["spec"], **asdict(e), "seed": config.seed}

    def run(d: Path) -> None:
        run_eval(
            EvalConfig(
                model=model["spec"],
                benches=e.benches,
                out=d,
                data_dir=Path(data_dir),
                limit=e.limit,
                seed=config.seed + 1234,
                api_mode=_teacher_mode(config) if is_teacher else "chat",
                batch_size=e.batch_size,
                concurrency=config.teacher_concurrency,
                cache=Path(config.cache) if config.cache else None,
            ),
            model=teacher.model if is_teacher else None,  # the teacher is scored through its server
        )

    directory = cache.run("eval", key, run)
    summary = json.loads((directory / "summary.json").read_text())
    return {b: {"n": s["n"], "metrics": s["metrics"], "methods": s.get("methods", {})} for b, s in summary.items()}


# -- preference and style -----------------------------------------------------------------------------
def _answers(model: dict[str, Any], config: SweepConfig, cache: StageCache, teacher: Teacher, data_dir: str) -> Path:
    from imitlab.judge.sources import GenerationParams, generate_answers, load_prompts
    from imitlab.models.generate import generate_answers_local
    from imitlab.models.spec import parse_spec, resolve_hf

    j = config.judge
    prompts = load_prompts(j.prompts, data=data_dir, limit=j.limit)
    key = {"model": model["dir"] or model["spec"], "prompts": j.prompts, "limit": j.limit, "max_tokens": j.max_tokens}

    def run(d: Path) -> None:
        if model["role"] == "teacher":
            params = GenerationParams(max_tokens=j.max_tokens, parallel=config.teacher_concurrency)
            generate_answers(teacher.model, prompts, d / "answers.jsonl", params)
        else:
            path = resolve_hf(parse_spec(model["spec"]), config.cache)
            generate_answers_local(
                path,
                [(p.id, p.prompt) for p in prompts],
                d / "answers.jsonl",
                model_name=model["id"],
                max_new_tokens=j.max_tokens,
            )

    return cache.run("answers", key, run) / "answers.jsonl"


def _preferences(
    models: list[dict[str, Any]], config: SweepConfig, cache: StageCache, teacher: Teacher, data_dir: str
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    from imitlab.judge.pairwise import JudgeConfig, run_judge
    from imitlab.judge.sources import GenerationParams
    from imitlab.judge.style import StyleConfig, run_style

    j = config.judge
    judge_is_teacher = not j.judge or j.judge == config.teacher
    judge_spec = config.teacher if judge_is_teacher else j.judge
    # the teacher's open model serves as judge and as the style table's second teacher sample
    judge_model = teacher.model if judge_is_teacher else None
    answers = {m["id"]: _answers(m, config, cache, teacher, data_dir) for m in models}
    teacher_answers = answers["teacher"]
    preference: dict[str, Any] = {}
    for m in models:
        if m["role"] == "teacher":
            continue
        key = {
            "a": sha256_file(answers[m["id"]]),
            "b": sha256_file(teacher_answers),
            "judge": judge_spec,
            "judge_max_tokens": j.judge_max_tokens,
            "prompts": j.prompts,
            "limit": j.limit,
        }

        def run(d: Path, a: Path = answers[m["id"]]) -> None:
            run_judge(
                JudgeConfig(
                    a=str(a),
                    b=str(teacher_answers),
                    prompts=j.prompts,
                    judge=judge_spec,
                    out=d,
                    limit=j.limit,
                    data=Path(data_dir),
                    parallel=config.teacher_concurrency,
                    judge_max_tokens=j.judge_max_tokens,
                ),
                judge=judge_model,
            )

        judge_dir = cache.run("judge", key, run)
        summary = json.loads((judge_dir / "summary.json").read_text())
        rates = summary.get("rates", {})
        preference[m["id"]] = {
            "judge": {
                "spec": judge_spec,
                "stage": f"stages/{judge_dir.name}",  # its pairs.jsonl is what people rate (imitlab rate)
                "n": summary.get("n_pairs"),
                "unparsed": summary.get("counts", {}).get("unparsed"),
                # share of calls that picked the first / second position: a judge that always picks one
                # position ranks the order, not the answers
                "position_bias": summary.get("position_bias"),
                **rates,
            },
            "human": None,
        }
    style: dict[str, Any] = {}
    if j.style:
        others = {m["id"]: str(answers[m["id"]]) for m in models if m["role"] != "teacher"}
        key = {
            "answers": {k: sha256_file(v) for k, v in others.items()},
            "teacher": sha256_file(teacher_answers),
            "judge": judge_spec,
            "prompts": j.prompts,
            "limit": j.limit,
        }

        def run_s(d: Path) -> None:
            run_style(
                StyleConfig(
                    teacher=str(teacher_answers),
                    models=others,
                    prompts=j.prompts,
                    out=d,
                    teacher2=config.teacher,
                    judge=judge_spec,
                    limit=j.limit,
                    data=Path(data_dir),
                    parallel=config.teacher_concurrency,
                    generation=GenerationParams(max_tokens=j.max_tokens, parallel=config.teacher_concurrency),
                ),
                judge=judge_model,
                models={config.teacher: teacher.model},
            )

        table = json.loads((cache.run("style", key, run_s) / "style.json").read_text())["columns"]
        for column, metrics in table.items():
            style["teacher#2" if column == "teacher2" else column] = {
                "list_when_teacher_lists": metrics.get("list_when_teacher"),
                "summary_when_teacher_summarizes": metrics.get("summary_when_teacher"),
                "unigram_overlap": metrics.get("unigram_overlap"),
                "length_pearson": metrics.get("length_pearson"),
                "authoritative_tone": metrics.get("authoritative_tone"),
            }
    samples = _samples(answers, limit=4)
    return preference, style, samples


def _samples(answers: dict[str, Path], limit: int) -> list[dict[str, Any]]:
    by_model = {
        mid: [json.loads(x) for x in path.read_text().splitlines() if x.strip()] for mid, path in answers.items()
    }
    teacher_rows = by_model["teacher"][:limit]
    out = []
    for row in teacher_rows:
        entry = {"prompt": row["prompt"], "answers": {}}
        for mid, rows in by_model.items():
            match = next((r for r in rows if str(r["id"]) == str(row["id"])), None)
            if match is not None:
                entry["answers"][mid] = match["answer"]
        out.append(entry)
    return out


def sweep(config_path: str | Path, run_dir: str | Path | None = None, console: Console | None = None) -> dict[str, Any]:
    """Load and check the config (before any work), then run the sweep."""
    config = load_sweep_config(config_path)
    return run_sweep(config, Path(run_dir) if run_dir else Path("runs") / config.name, console)
