"""``imitlab judge`` and ``imitlab style``: thin typer commands over run_judge and run_style."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()

DataOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data root (default $IMITLAB_DATA).")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Cache root (default $IMITLAB_CACHE).")]
PromptsOpt = Annotated[
    str, typer.Option("--prompts", help="koala | vicuna80 | mt-bench | alpaca-eval | a JSON/JSONL file.")
]


def _pct(est: dict) -> str:
    if est["n"] == 0 or est["value"] is None:
        return "-"
    if est["low"] is None:
        return f"{100 * est['value']:.1f}%"
    return f"{100 * est['value']:.1f}% [{100 * est['low']:.1f}, {100 * est['high']:.1f}]"


def _num(est: dict) -> str:
    if est["value"] is None:
        return "-"
    if est["low"] is None:
        return f"{est['value']:.2f}"
    return f"{est['value']:.2f} [{est['low']:.2f}, {est['high']:.2f}]"


def judge_cmd(
    a: Annotated[str, typer.Option("--a", help="Model spec or answers file (usually the imitation model).")],
    b: Annotated[str, typer.Option("--b", help="Model spec or answers file (usually the teacher).")],
    prompts: PromptsOpt,
    judge: Annotated[str, typer.Option("--judge", help="Judge model spec (packaged name, gguf:PATH, openai:M).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (a rerun resumes).")],
    template: Annotated[str, typer.Option(help="default | mt-bench | alpaca-eval | vicuna | PATH.json")] = "default",
    flip: Annotated[str, typer.Option(help="Order-flipped verdicts: tie | exclude | first.")] = "tie",
    reference: Annotated[bool, typer.Option(help="Reference-guided judging where a reference exists.")] = True,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts.")] = None,
    judge_max_tokens: Annotated[int, typer.Option(help="Judge reply token cap.")] = 512,
    max_tokens: Annotated[int, typer.Option(help="Answer token cap when --a/--b are model specs.")] = 512,
    parallel: Annotated[int, typer.Option(help="Concurrent requests (llama.cpp slots).")] = 4,
    base_url: Annotated[str | None, typer.Option(help="Base URL for openai: specs.")] = None,
    data_dir: DataOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Pairwise LLM-as-judge, both orders: win/tie/loss of A vs B and "as good as or better", with 95% CIs."""
    from imitlab.judge.pairwise import JudgeConfig, run_judge
    from imitlab.judge.sources import GenerationParams

    config = JudgeConfig(
        a=a, b=b, prompts=prompts, judge=judge, out=out, template=template, flip=flip,  # type: ignore[arg-type]
        reference="auto" if reference else "off", limit=limit, judge_max_tokens=judge_max_tokens,
        generation=GenerationParams(max_tokens=max_tokens, parallel=parallel), parallel=parallel,
        data=data_dir, cache=cache, base_url=base_url,
    )  # fmt: skip
    summary = run_judge(config)
    c = summary["counts"]
    table = Table(title=f"{summary['a']['model']} (A) vs {summary['b']['model']} (B), judge {judge}")
    table.add_column("")
    table.add_column("value (95% CI)")
    for name in ("win", "tie", "loss", "as_good_or_better"):
        table.add_row(name.replace("_", " "), _pct(summary["rates"][name]))
    table.add_row("counts", f"{c['win']} win / {c['tie']} tie / {c['loss']} loss")
    table.add_row("unparsed / inconsistent", f"{c['unparsed']} / {c['inconsistent']}")
    table.add_row("excluded (missing answer)", str(len(summary["excluded"])))
    bias = summary["position_bias"]
    table.add_row("judge picked position A", f"{100 * bias['A']:.0f}% of {bias['n']} parsed" if bias["n"] else "-")
    console.print(table)
    console.print(f"written to {out}/summary.json")


def style_cmd(
    teacher: Annotated[str, typer.Option("--teacher", help="Teacher: model spec or answers file.")],
    prompts: PromptsOpt,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="NAME=SPEC_OR_ANSWERS, repeatable (e.g. base=..., imitation=...)."),
    ] = None,
    teacher2: Annotated[str | None, typer.Option(help="A second teacher sample (the ceiling column).")] = None,
    judge: Annotated[str | None, typer.Option(help="Judge model for the authoritative-tone probe.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Answer token cap for model specs.")] = 512,
    parallel: Annotated[int, typer.Option(help="Concurrent requests.")] = 4,
    base_url: Annotated[str | None, typer.Option(help="Base URL for openai: specs.")] = None,
    data_dir: DataOpt = None,
    cache: CacheOpt = None,
) -> None:
    """The paper's style metrics (Table 2) of each model against the teacher, with 95% CIs."""
    from imitlab.errors import ImitlabError
    from imitlab.judge.sources import GenerationParams
    from imitlab.judge.style import StyleConfig, run_style

    models = {}
    for item in model or []:
        name, sep, source = item.partition("=")
        if not sep or not name or not source:
            raise ImitlabError(f"--model {item!r}: expected NAME=SPEC_OR_ANSWERS")
        models[name] = source
    result = run_style(
        StyleConfig(
            teacher=teacher, models=models, prompts=prompts, out=out, teacher2=teacher2, judge=judge, limit=limit,
            generation=GenerationParams(max_tokens=max_tokens, parallel=parallel), parallel=parallel,
            data=data_dir, cache=cache, base_url=base_url,
        )
    )  # fmt: skip
    table = Table(title="style vs the teacher (95% CI)")
    table.add_column("metric")
    cols = result["columns"]
    for name in cols:
        table.add_column(name)
    for metric in ("list_when_teacher", "summary_when_teacher", "authoritative_tone"):
        table.add_row(metric.replace("_", " "), *(_pct(c[metric]) if metric in c else "-" for c in cols.values()))
    for metric in ("unigram_overlap", "length_pearson"):
        table.add_row(
            metric.replace("_", " "),
            *(_num(c[metric]) for c in cols.values()),
        )
    table.add_row("n prompts", *(str(c["n"]) for c in cols.values()))
    console.print(table)
    console.print(f"written to {out}/style.json")
