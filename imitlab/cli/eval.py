"""``imitlab eval``: targeted benchmarks, or ``--completions`` made elsewhere; a thin layer over imitlab.evals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from imitlab.cli.options import (
    BaseUrlOpt,
    CacheOpt,
    ConcurrencyOpt,
    ConfigFileOpt,
    DataDirOpt,
    DeviceOpt,
    DtypeOpt,
    stage_config,
)
from imitlab.cli.output import console
from imitlab.errors import ImitlabError


def eval_(
    ctx: typer.Context,
    model: Annotated[
        Optional[str], typer.Option("--model", help="Model spec: packaged name, hf:DIR, gguf:PATH, openai:NAME.")
    ] = None,
    bench: Annotated[str, typer.Option("--bench", help="Benchmark name(s), comma-separated (see --list).")] = "",
    out: Annotated[Path, typer.Option("--out", help="Directory for per-item records and summaries.")] = Path(
        "runs/eval"
    ),
    limit: Annotated[
        Optional[int], typer.Option(help="Score the first N items per benchmark (per subject for MMLU), as lm-eval.")
    ] = None,
    sample: Annotated[
        Optional[int], typer.Option(help="Score a fixed-seed sample of N items per benchmark (--seed).")
    ] = None,
    num_fewshot: Annotated[
        Optional[int], typer.Option("--num-fewshot", help="Examples per prompt (default: the benchmark's own).")
    ] = None,
    subjects: Annotated[
        Optional[str], typer.Option(help="MMLU: subjects or lm-eval groups, comma-separated (e.g. mmlu_stem).")
    ] = None,
    dataset: Annotated[
        Optional[list[str]],
        typer.Option("--dataset", help="BENCH=REF: read a benchmark from a datasets folder, data files or hf:ID."),
    ] = None,
    data_dir: DataDirOpt = None,
    seed: Annotated[int, typer.Option(help="Seed for --sample and bootstrap CIs.")] = 1234,
    backend: Annotated[str, typer.Option(help="auto | hf (local weights) | api (OpenAI-compatible).")] = "auto",
    base_url: BaseUrlOpt = None,
    api_mode: Annotated[str, typer.Option(help="API endpoint style: chat | completions.")] = "chat",
    batch_size: Annotated[int, typer.Option(help="Local backend batch size.")] = 16,
    threads: Annotated[Optional[int], typer.Option(help="Local backend CPU threads (default: torch's).")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    concurrency: ConcurrencyOpt = 4,
    samples: Annotated[int, typer.Option(help="Code: samples per problem (pass@k for k <= samples).")] = 1,
    max_tokens: Annotated[Optional[int], typer.Option(help="Override the benchmark's token cap.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the benchmarks and exit.")] = False,
    completions: Annotated[
        Optional[Path],
        typer.Option(help="Score outputs made elsewhere, not a model: JSONL {task_id, completion} or {id, answer}."),
    ] = None,
    problems: Annotated[
        Optional[Path], typer.Option(help="With --completions: problems in HumanEval's schema (default: --bench's).")
    ] = None,
    cache: CacheOpt = None,
    config_file: ConfigFileOpt = None,
) -> None:
    """Score a model on targeted benchmarks (NQ, TriviaQA, MMLU, ARC, HumanEval) with 95% CIs."""
    from imitlab.evals import EvalConfig, get_task, known_tasks, run_eval

    if completions is not None or problems is not None:
        _eval_completions(completions, problems, bench, model, out, data_dir, seed)
        return
    if list_ or (not bench and config_file is None):
        table = Table(title="benchmarks")
        table.add_column("name", no_wrap=True)
        table.add_column("kind")
        table.add_column("what")
        for name in known_tasks():
            task = get_task(name)
            table.add_row(name, task.kind, task.about)
        console.print(table)
        if not bench and not list_:
            raise ImitlabError("name at least one benchmark with --bench NAME[,NAME]")
        return
    if not model and config_file is None:
        raise ImitlabError("name the model to evaluate with --model SPEC")
    if limit is not None and sample is not None:
        raise ImitlabError("--limit (the first N items) and --sample (a seeded sample of N) exclude each other")
    from imitlab.sources import parse_overrides

    values = dict(
        model=model, benches=[b.strip() for b in bench.split(",") if b.strip()] or None, out=out, data_dir=data_dir,
        limit=sample if sample is not None else limit, limit_mode="sample" if sample is not None else "first",
        num_fewshot=num_fewshot, subjects=[s.strip() for s in subjects.split(",") if s.strip()] if subjects else None,
        datasets=parse_overrides(dataset or []),
        seed=seed, backend=backend, base_url=base_url, api_mode=api_mode, batch_size=batch_size,
        threads=threads, concurrency=concurrency, samples=samples, max_tokens=max_tokens, cache=cache,
        device=device, dtype=dtype,
    )  # fmt: skip
    renamed = {"benches": "bench", "datasets": "dataset", "limit": "sample" if sample is not None else "limit",
               "limit_mode": "sample"}  # fmt: skip
    config = stage_config(ctx, EvalConfig, config_file, values, options=renamed)
    model, out = config.model, config.out
    with console.status("evaluating ...") as status:
        summaries = run_eval(config, progress=status.update)
    table = Table(title=f"{model} (95% bootstrap CIs)")
    for col in ("bench", "n", "metric", "score", "95% CI", "method"):
        table.add_column(col, no_wrap=True)
    for name, summary in summaries.items():
        methods = ", ".join(summary["methods"])
        for metric, est in summary["metrics"].items():
            ci = f"[{est['low']:.3f}, {est['high']:.3f}]"
            table.add_row(name, str(summary["n"]), metric, f"{est['value']:.3f}", ci, methods)
    console.print(table)
    console.print(f"records and summaries: {out}", soft_wrap=True)


def _eval_completions(
    completions: Path | None,
    problems: Path | None,
    bench: str,
    model: str | None,
    out: Path,
    data: Path | None,
    seed: int,
) -> None:
    """``eval --completions``: the logic is imitlab.evals.completions; this checks the options and prints."""
    from imitlab.evals.completions import CompletionsConfig, score_completions

    if completions is None:
        raise ImitlabError("--problems goes with --completions FILE (the outputs to score)")
    if model:
        raise ImitlabError("--completions scores outputs made elsewhere; drop --model")
    config = CompletionsConfig(
        completions=completions, out=out, bench=bench or None, problems=problems, data_dir=data, seed=seed
    )
    with console.status("scoring completions ...") as status:
        summary = score_completions(config, progress=status.update)
    table = Table(title=f"{completions.name} on {summary['bench']} (95% bootstrap CIs)")
    for col in ("metric", "score", "95% CI", "problems", "records"):
        table.add_column(col, no_wrap=True)
    for metric, est in summary["metrics"].items():
        ci = f"[{est['low']:.3f}, {est['high']:.3f}]"
        scored = f"{summary['n']}/{summary['n_problems']}"
        table.add_row(metric, f"{est['value']:.3f}", ci, scored, str(summary["n_records"]))
    console.print(table)
    console.print(f"{summary['passed_records']}/{summary['n_records']} records passed; verdicts: {out}", soft_wrap=True)
