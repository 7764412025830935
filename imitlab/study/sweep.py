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
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text, sha256_file
from imitlab.models.api_model import APIModel
from imitlab.study.progress import SweepProgress
from imitlab.study.stages import StageCache
from imitlab.study.sweep_config import StageResources, SweepConfig, expand, load_sweep_config

if TYPE_CHECKING:
    from imitlab.study.executors import Executor, Resources, StageRun

log = logging.getLogger(__name__)


class Teacher:
    """The teacher, open for the whole sweep: a live model (a llama.cpp server for local models) that serves
    collection, synthesis, its own benchmark run, its reference answers and the judge."""

    def __init__(self, spec: str, model: APIModel) -> None:
        self.spec, self.model = spec, model

    @property
    def base_url(self) -> str:
        return self.model.engine.base_url


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


# Stages of one imitation cell: its training, its benchmarks, its answers to the judge prompts, its judge.
STAGES_PER_CELL = 4
# Stages that make each kind of imitation data (see _dataset): broad = prompts, collect, decontaminate.
DATA_STAGES = {"broad": 3, "local": 2}  # local = synthesize-local, decontaminate


def planned_stages(config: SweepConfig) -> int:
    """How many stages the sweep will pass through (run or reused) if no cell is skipped."""
    cells = len(config.bases) * len(config.data_kinds) * len(config.budgets)
    models = 1 + len(config.bases)  # the teacher and each untouched base: benchmarks and answers; bases judged too
    judged = len(config.bases)
    data = sum(DATA_STAGES[kind] for kind in config.data_kinds)
    return data + cells * STAGES_PER_CELL + 2 * models + judged + (1 if config.judge.style else 0)


def run_sweep(
    config: SweepConfig,
    run_dir: Path,
    console: Console | None = None,
    executor: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Run (or resume, or extend) the sweep in ``run_dir``; return the results it writes.

    ``executor``: ``local`` runs the stages one after another in this process; ``ray`` runs the stages that need
    no teacher as Ray tasks with the config's ``resources`` (on the cluster at ``address``, or on a one-machine
    cluster it starts), independent cells in parallel (imitlab/study/executors.py).
    """
    from imitlab.study.executors import check_executor, make_executor

    check_executor(executor, address)
    console = console or Console()
    if executor != "local":
        run_dir = run_dir.resolve()  # workers may start in another directory (or on another machine)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    atomic_write_text(run_dir / "sweep_config.json", json.dumps(config.as_dict(), indent=2))
    progress = SweepProgress(console, planned_stages(config))
    cache = StageCache(run_dir, on_event=progress.on_event)
    data_dir = str(expand("${IMITLAB_DATA}", config.data_dir))
    models: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    trains: dict[str, StageRun] = {}  # model id -> its training stage

    with make_executor(executor, cache, address) as stages, serve_teacher(config) as teacher:
        console.print(f"[bold]teacher[/] {config.teacher} at {teacher.base_url}; stages: {stages.name}")
        data_runs = {kind: _dataset(kind, config, stages, teacher, data_dir) for kind in config.data_kinds}
        datasets = {kind: run.result() for kind, run in data_runs.items()}  # token counts below read the data
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
                        progress.skip(STAGES_PER_CELL)
                        continue
                    model_id = f"{base}/{kind}/{budget}"
                    trains[model_id] = train = _train(base, kind, budget, data, config, stages)
                    assert train.path is not None  # a training stage's key is known at submission
                    models.append(
                        {
                            "id": model_id,
                            "role": "imitation",
                            "spec": f"hf:{train.path / 'model'}",
                            "params_m": _params_m(base),
                            "base": base,
                            "data_kind": kind,
                            "tokens": budget,
                            "dir": train.path.name,
                        }
                    )
        evals = {m["id"]: _evaluate(m, config, stages, teacher, data_dir, trains.get(m["id"])) for m in models}
        judged = _preferences(models, config, stages, teacher, data_dir, trains)
        stages.join()  # every stage finished (or the first failure raised, after the others ended)
        benchmarks = {model_id: _benchmarks(run.result()) for model_id, run in evals.items()}
        preference, style, samples = _read_preferences(models, config, *judged)

    results = {
        "schema": "imitlab.study/1",
        "run": {
            "name": config.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),  # this invocation
            "stage_seconds": round(cache.stage_seconds, 1),  # every stage's own run time, reused ones too
            "config": config.as_dict(),
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
def _dataset(kind: str, config: SweepConfig, stages: Executor, teacher: Teacher, data_dir: str) -> StageRun:
    # Data stages run on the driver: collection and synthesis talk to the teacher, and decontamination is cheap.
    raw = _broad(config, stages, teacher) if kind == "broad" else _local(config, stages, teacher)
    assert raw.path is not None
    eval_sets = _eval_sets(config)
    return stages.submit(
        "decontaminate",
        {"data": raw.path.name, "eval_sets": eval_sets},
        functools.partial(_decontaminate, raw.path, data_dir=data_dir, eval_sets=eval_sets),
        after=[raw],
    )


def _broad(config: SweepConfig, stages: Executor, teacher: Teacher) -> StageRun:
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

    prompts_run = stages.submit("prompts-broad", key, make_prompts)
    prompts = prompts_run.path
    assert prompts is not None

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

    return stages.submit(
        "collect-broad",
        {
            "prompts": prompts.name,
            "teacher": config.teacher,
            "max_tokens": config.broad.max_tokens,
            "seed": config.seed,
        },
        run_collect,
        after=[prompts_run],
    )


def _local(config: SweepConfig, stages: Executor, teacher: Teacher) -> StageRun:
    from imitlab.data.dataset import write_dataset
    from imitlab.prompts.synthesize import SynthConfig, qa_conversations, synthesize_qa

    seeds = expand(config.local.seeds, config.data_dir)
    key = {"seeds": sha256_file(seeds), **config.local.as_dict(), "teacher": config.teacher, "seed": config.seed}

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
            params={**config.local.as_dict(), "seed": config.seed},
        )

    return stages.submit("synthesize-local", key, run_synth)


def _headline(bench: str) -> str:
    from imitlab.evals import get_task

    return get_task(bench).headline_metric  # the benchmark's declaration says which metric it reports


def _eval_sets(config: SweepConfig) -> list[str]:
    """Only what this sweep evaluates on: the data must not contain those items (benchmarks and judge prompt sets
    go by the same names in decontamination)."""
    from imitlab.eval_sets import eval_set_names

    known = set(eval_set_names())
    return sorted({n for n in [*config.eval.benches, config.judge.prompts] if n in known})


def _decontaminate(raw: Path, out: Path, *, data_dir: str, eval_sets: list[str]) -> None:
    from imitlab.data.dataset import write_dataset
    from imitlab.data.decontaminate import DecontamConfig, decontaminate
    from imitlab.data.schema import read_conversations
    from imitlab.eval_sets import CATALOGUE

    cfg = DecontamConfig(eval_sets=eval_sets, data_dir=Path(data_dir))
    records = read_conversations(raw)
    clean, report = decontaminate(records, cfg, CATALOGUE)
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
def _train(base: str, kind: str, budget: int, data: Path, config: SweepConfig, stages: Executor) -> StageRun:
    key = {"base": base, "data": data.name, "tokens": budget, **config.train_settings(), "seed": config.seed}
    run = functools.partial(_train_stage, base=base, run_name=f"{base}/{kind}/{budget}", budget=budget, data=data,
                            config=config)  # fmt: skip
    return stages.submit("train", key, run, where="worker", resources=_resources(config.resources.train))


def _train_stage(d: Path, *, base: str, run_name: str, budget: int, data: Path, config: SweepConfig) -> None:
    from imitlab.train.launch import launch
    from imitlab.train.tracking import REPORT_TO_ENV

    launch(
        config.train_config(
            base=base,
            data=str(data),
            out=str(d),
            tokens=budget,
            run_name=run_name,
            # tracked (when $IMITLAB_REPORT_TO names a tracker) under the cell's id: base/kind/budget
            report_to=os.environ.get(REPORT_TO_ENV, "none"),
        )
    )
    if "save" not in config.train:
        # The resumable checkpoints (weights and optimizer state: 9.5 GB for a 0.5B model) only serve a killed
        # stage; once it finished, model/ is what the sweep uses. A cpu-study run filled its disk without this.
        shutil.rmtree(d / "checkpoints", ignore_errors=True)


def _resources(section: StageResources) -> Resources:
    from imitlab.study.executors import Resources

    return Resources(cpus=section.cpus, gpus=section.gpus)


# -- evaluate -----------------------------------------------------------------------------------------
def _evaluate(
    model: dict[str, Any],
    config: SweepConfig,
    stages: Executor,
    teacher: Teacher,
    data_dir: str,
    train: StageRun | None,
) -> StageRun:
    """The model's benchmark stage: the teacher through its server on the driver, every other model on a worker."""
    is_teacher = model["role"] == "teacher"
    key = {"model": model["dir"] or model["spec"], **config.eval.as_dict(), "seed": config.seed}
    run = functools.partial(
        _eval_stage,
        spec=model["spec"],
        config=config,
        data_dir=data_dir,
        api_mode=_teacher_mode(config) if is_teacher else "chat",
        model=teacher.model if is_teacher else None,  # the teacher is scored through its server
    )
    if is_teacher:
        return stages.submit("eval", key, run)
    after = [train] if train else []
    return stages.submit("eval", key, run, where="worker", resources=_resources(config.resources.eval), after=after)


def _eval_stage(d: Path, *, spec: str, config: SweepConfig, data_dir: str, api_mode: str, model: Any) -> None:
    from imitlab.evals import EvalConfig, run_eval

    e = config.eval
    run_eval(
        EvalConfig(
            model=spec,
            benches=e.benches,
            out=d,
            data_dir=Path(data_dir),
            limit=e.limit,
            seed=config.seed + 1234,
            api_mode=api_mode,
            batch_size=e.batch_size,
            concurrency=config.teacher_concurrency,
            cache=Path(config.cache) if config.cache else None,
        ),
        model=model,
    )


def _benchmarks(directory: Path) -> dict[str, Any]:
    summary = json.loads((directory / "summary.json").read_text())
    return {b: {"n": s["n"], "metrics": s["metrics"], "methods": s.get("methods", {})} for b, s in summary.items()}


# -- preference and style -----------------------------------------------------------------------------
def _answers(
    model: dict[str, Any],
    config: SweepConfig,
    stages: Executor,
    teacher: Teacher,
    data_dir: str,
    train: StageRun | None,
) -> StageRun:
    """The model's answers to the judge prompts: the teacher's from its server (driver), the others on a worker."""
    from imitlab.judge.sources import GenerationParams, generate_answers, load_prompts

    j = config.judge
    prompts = load_prompts(j.prompts, data=data_dir, limit=j.limit)
    key = {"model": model["dir"] or model["spec"], "prompts": j.prompts, "limit": j.limit, "max_tokens": j.max_tokens}
    if model["role"] == "teacher":
        params = GenerationParams(max_tokens=j.max_tokens, parallel=config.teacher_concurrency)

        def teacher_answers(d: Path) -> None:
            generate_answers(teacher.model, prompts, d / "answers.jsonl", params)

        return stages.submit("answers", key, teacher_answers)
    run = functools.partial(
        _local_answers_stage,
        spec=model["spec"],
        model_id=model["id"],
        prompts=[(p.id, p.prompt) for p in prompts],
        max_tokens=j.max_tokens,
        cache=config.cache,
    )
    after = [train] if train else []
    resources = _resources(config.resources.answers)
    return stages.submit("answers", key, run, where="worker", resources=resources, after=after)


def _local_answers_stage(
    d: Path, *, spec: str, model_id: str, prompts: list[tuple[str, str]], max_tokens: int, cache: str | None
) -> None:
    from imitlab.models.generate import generate_answers_local
    from imitlab.models.spec import parse_spec, resolve_hf

    path = resolve_hf(parse_spec(spec), cache)
    generate_answers_local(path, prompts, d / "answers.jsonl", model_name=model_id, max_new_tokens=max_tokens)


def _preferences(
    models: list[dict[str, Any]],
    config: SweepConfig,
    stages: Executor,
    teacher: Teacher,
    data_dir: str,
    trains: dict[str, StageRun],
) -> tuple[dict[str, StageRun], dict[str, StageRun], StageRun | None]:
    """Submit the answers of every model, the judge of each against the teacher, and the style table."""
    from imitlab.judge.pairwise import JudgeConfig, run_judge
    from imitlab.judge.sources import GenerationParams
    from imitlab.judge.style import StyleConfig, run_style

    j = config.judge
    judge_is_teacher = not j.judge or j.judge == config.teacher
    judge_spec = config.teacher if judge_is_teacher else j.judge
    # the teacher's open model serves as judge and as the style table's second teacher sample
    judge_model = teacher.model if judge_is_teacher else None
    answers = {m["id"]: _answers(m, config, stages, teacher, data_dir, trains.get(m["id"])) for m in models}
    teacher_run = answers["teacher"]
    judges: dict[str, StageRun] = {}
    for m in models:
        if m["role"] == "teacher":
            continue
        mine = answers[m["id"]]

        def key(mine: StageRun = mine) -> dict[str, Any]:  # answers' hashes: known once they are written
            return {
                "a": sha256_file(mine.result() / "answers.jsonl"),
                "b": sha256_file(teacher_run.result() / "answers.jsonl"),
                "judge": judge_spec,
                "judge_max_tokens": j.judge_max_tokens,
                "prompts": j.prompts,
                "limit": j.limit,
                # absent at their defaults, so stages judged before these keys existed keep their cache keys
                **({"verdict": j.verdict} if j.verdict != "text" else {}),
                **({"template": j.template} if j.template != "default" else {}),
            }

        def run(d: Path, mine: StageRun = mine) -> None:
            run_judge(
                JudgeConfig(
                    a=str(mine.result() / "answers.jsonl"),
                    b=str(teacher_run.result() / "answers.jsonl"),
                    prompts=j.prompts,
                    judge=judge_spec,
                    out=d,
                    limit=j.limit,
                    data=Path(data_dir),
                    parallel=config.teacher_concurrency,
                    judge_max_tokens=j.judge_max_tokens,
                    verdict=j.verdict,  # type: ignore[arg-type]
                    template=j.template,
                ),
                judge=judge_model,
            )

        judges[m["id"]] = stages.submit("judge", key, run, after=[mine, teacher_run])
    style = None
    if j.style:
        others = {m["id"]: answers[m["id"]] for m in models if m["role"] != "teacher"}

        def style_key() -> dict[str, Any]:
            return {
                "answers": {k: sha256_file(v.result() / "answers.jsonl") for k, v in others.items()},
                "teacher": sha256_file(teacher_run.result() / "answers.jsonl"),
                "judge": judge_spec,
                "prompts": j.prompts,
                "limit": j.limit,
            }

        def run_s(d: Path) -> None:
            run_style(
                StyleConfig(
                    teacher=str(teacher_run.result() / "answers.jsonl"),
                    models={k: str(v.result() / "answers.jsonl") for k, v in others.items()},
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

        style = stages.submit("style", style_key, run_s, after=[teacher_run, *others.values()])
    return answers, judges, style


def _read_preferences(
    models: list[dict[str, Any]],
    config: SweepConfig,
    answers: dict[str, StageRun],
    judges: dict[str, StageRun],
    style_run: StageRun | None,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    j = config.judge
    judge_spec = config.teacher if not j.judge or j.judge == config.teacher else j.judge
    preference: dict[str, Any] = {}
    for model_id, run in judges.items():
        judge_dir = run.result()
        summary = json.loads((judge_dir / "summary.json").read_text())
        rates = summary.get("rates", {})
        preference[model_id] = {
            "judge": {
                "spec": judge_spec,
                "stage": f"stages/{judge_dir.name}",  # its pairs.jsonl is what people rate (imitlab rate)
                "n": summary.get("n_pairs"),
                "unparsed": summary.get("counts", {}).get("unparsed"),
                # share of calls that picked the first / second position: a judge that always picks one
                # position ranks the order, not the answers
                "position_bias": summary.get("position_bias"),
                "verdict": summary.get("verdict", "text"),
                # logprob verdicts: the mean probability that the model's answer is better, both orders averaged
                **({"p_a_better": summary["p_a_better"]} if "p_a_better" in summary else {}),
                **rates,
            },
            "human": None,
        }
    style: dict[str, Any] = {}
    if style_run is not None:
        table = json.loads((style_run.result() / "style.json").read_text())["columns"]
        for column, metrics in table.items():
            style["teacher#2" if column == "teacher2" else column] = {
                "list_when_teacher_lists": metrics.get("list_when_teacher"),
                "summary_when_teacher_summarizes": metrics.get("summary_when_teacher"),
                "unigram_overlap": metrics.get("unigram_overlap"),
                "length_pearson": metrics.get("length_pearson"),
                "authoritative_tone": metrics.get("authoritative_tone"),
            }
    samples = _samples({m["id"]: answers[m["id"]].result() / "answers.jsonl" for m in models}, limit=4)
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


def sweep(
    config_path: str | Path,
    run_dir: str | Path | None = None,
    console: Console | None = None,
    executor: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Load and check the config (before any work), then run the sweep."""
    config = load_sweep_config(config_path)
    return run_sweep(config, Path(run_dir) if run_dir else Path("runs") / config.name, console, executor, address)
