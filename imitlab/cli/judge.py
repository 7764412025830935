"""``imitlab judge`` (+ ``calibrate``, ``probe``) and ``imitlab style``: thin typer commands over imitlab.judge.

``imitlab judge --a ... --b ...`` compares two models; ``imitlab judge calibrate`` and ``imitlab judge probe`` are
sub-commands of the same group, so the comparison's options are checked only when no sub-command is named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imitlab.cli.options import (
    AnswerTokensOpt,
    BaseUrlOpt,
    CacheOpt,
    ConfigFileOpt,
    DataDirOpt,
    JudgeOpt,
    JudgeOrNoneOpt,
    JudgeTokensOpt,
    LimitOpt,
    LogprobsOpt,
    MaxSecondsOpt,
    ParallelOpt,
    PromptsOpt,
    PromptsOrNoneOpt,
    SeedOpt,
    TemplateOpt,
    stage_config,
)
from imitlab.cli.output import console


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


judge_app = typer.Typer(help="Pairwise LLM-as-judge; `calibrate` and `probe` measure the judge itself.")


@judge_app.callback(invoke_without_command=True)
def judge_cmd(
    ctx: typer.Context,
    a: Annotated[
        str | None, typer.Option("--a", help="Model spec or answers file (usually the imitation model).")
    ] = None,
    b: Annotated[str | None, typer.Option("--b", help="Model spec or answers file (usually the teacher).")] = None,
    prompts: PromptsOrNoneOpt = None,
    judge: JudgeOrNoneOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (a rerun resumes).")] = None,
    template: TemplateOpt = "default",
    flip: Annotated[str, typer.Option(help="Order-flipped verdicts: tie | exclude | first.")] = "tie",
    verdict: Annotated[
        str, typer.Option(help="text: the parsed reply | logprob: P(label), both orders averaged (needs logprobs).")
    ] = "text",
    reference: Annotated[bool, typer.Option(help="Reference-guided judging where a reference exists.")] = True,
    limit: LimitOpt = None,
    judge_max_tokens: JudgeTokensOpt = 512,
    max_tokens: AnswerTokensOpt = 512,
    parallel: ParallelOpt = 4,
    base_url: BaseUrlOpt = None,
    data_dir: DataDirOpt = None,
    cache: CacheOpt = None,
    config_file: ConfigFileOpt = None,
) -> None:
    """Pairwise LLM-as-judge, both orders: win/tie/loss of A vs B and "as good as or better", with 95% CIs."""
    from imitlab.judge.pairwise import JudgeConfig, run_judge
    from imitlab.judge.sources import GenerationParams

    if ctx.invoked_subcommand is not None:
        return
    missing = [name for name, value in (("--a", a), ("--b", b), ("--prompts", prompts), ("--judge", judge),
                                        ("--out", out)) if value is None]  # fmt: skip
    if missing and config_file is None:
        raise typer.BadParameter(f"missing option(s) {', '.join(missing)} (or name a sub-command: calibrate, probe)")

    values = dict(
        a=a, b=b, prompts=prompts, judge=judge, out=out, template=template, flip=flip, verdict=verdict,
        reference="auto" if reference else "off", limit=limit, judge_max_tokens=judge_max_tokens,
        generation=GenerationParams(max_tokens=max_tokens, parallel=parallel), parallel=parallel,
        data=data_dir, cache=cache, base_url=base_url,
    )  # fmt: skip
    renamed = {"generation": "max_tokens", "data": "data_dir"}
    config = stage_config(ctx, JudgeConfig, config_file, values, options=renamed)
    judge = config.judge
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
    if summary.get("verdict") == "logprob":
        table.add_row("P(A better), both orders averaged", _pct(summary["p_a_better"]))
        lean = summary.get("mean_p_first")
        table.add_row("mean P(slot A) before averaging", f"{100 * lean:.1f}%" if lean is not None else "-")
    console.print(table)
    console.print(f"written to {out}/summary.json")


@judge_app.command("calibrate")
def calibrate_cmd(
    judge: JudgeOpt,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default runs/calibrate/JUDGE).")] = None,
    n: Annotated[int, typer.Option("--n", help="Recorded pairs to judge (each in both orders).")] = 40,
    max_words: Annotated[int, typer.Option(help="Longest question or answer in a sampled pair, in words.")] = 50,
    max_seconds: MaxSecondsOpt = None,
    logprobs: LogprobsOpt = False,
    template: TemplateOpt = "label",
    judge_max_tokens: JudgeTokensOpt = 8,
    seed: SeedOpt = 0,
    parallel: ParallelOpt = 1,
    base_url: BaseUrlOpt = None,
    data_dir: DataDirOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Score a judge against GPT-4's recorded verdicts: agreement, order consistency, position and length bias."""
    from imitlab.judge.calibrate import CalibrateConfig, run_calibration

    out = out or Path("runs") / "calibrate" / judge.replace("/", "_").replace(":", "_")
    config = CalibrateConfig(judge=judge, out=out, n=n, max_words=max_words, logprobs=logprobs, template=template,
                             judge_max_tokens=judge_max_tokens, seed=seed, parallel=parallel, base_url=base_url,
                             data=data_dir, cache=cache, max_seconds=max_seconds)  # fmt: skip
    result = run_calibration(config)
    sample = result["sample"]
    if sample["stopped_by_time"]:
        console.print(f"time budget reached: {sample['n']} of {sample['n_sampled']} sampled pairs judged")
    table = Table(title=f"judge {judge} vs GPT-4 on {sample['n']} recorded pairs (95% CI)")
    table.add_column("")
    kinds = [k for k in ("text", "logprob") if k in result]
    for kind in kinds:
        table.add_column("probability verdict" if kind == "logprob" else "text verdict")
    rows = [("agreement with GPT-4", "agreement", _pct), ("  when the judge decided", "agreement_when_decided", _pct),
            ("decided (not tie/unparsed)", "decided", _pct), ("Cohen's kappa", "kappa", _num),
            ("same answer in both orders", "order_agreement", _pct), ("picked the first slot", "position_a", _pct),
            ("longer answer won", "longer_wins", _pct), ("  GPT-4 on the same pairs", "gpt4_longer_wins", _pct),
            ("P(GPT-4's choice)", "soft_agreement", _pct)]  # fmt: skip
    for label, key, fmt in rows:
        table.add_row(label, *(fmt(result[k][key]) if key in result[k] else "-" for k in kinds))
    console.print(table)
    run = result["run"]
    load = f"load average {run['loadavg_before'][0]:.1f} -> {run['loadavg_after'][0]:.1f} on {run['cpu_count']} CPUs"
    console.print(f"{run['seconds']:.0f} s, {run['calls']} calls, {load}; written to {out}/calibration.json")


@judge_app.command("probe")
def probe_cmd(
    judge: JudgeOpt,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default runs/probe/JUDGE).")] = None,
    n: Annotated[int, typer.Option("--n", help="Pairs per kind (each judged in both orders).")] = 20,
    kinds: Annotated[
        str, typer.Option(help="Comma-separated: style, substance, crossed, teacher_style.")
    ] = "style,substance,crossed",
    max_words: Annotated[int, typer.Option(help="Longest question + answer, in words.")] = 90,
    max_seconds: MaxSecondsOpt = None,
    logprobs: LogprobsOpt = False,
    template: TemplateOpt = "label",
    judge_max_tokens: JudgeTokensOpt = 8,
    seed: SeedOpt = 0,
    parallel: ParallelOpt = 1,
    base_url: BaseUrlOpt = None,
    data_dir: DataDirOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Style vs substance: how often the judge prefers the teacher's style over correct content, with 95% CIs."""
    from imitlab.judge.probe import A_IS, ProbeConfig, run_probe

    out = out or Path("runs") / "probe" / judge.replace("/", "_").replace(":", "_")
    config = ProbeConfig(judge=judge, out=out, n=n, kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
                         max_words=max_words, max_seconds=max_seconds, logprobs=logprobs, template=template,
                         judge_max_tokens=judge_max_tokens, seed=seed, parallel=parallel, base_url=base_url,
                         data=data_dir, cache=cache)  # fmt: skip
    result = run_probe(config)
    if result["stopped_by_time"]:
        console.print(f"time budget reached: {result['n_pairs']} of {result['n_built']} pairs judged")
    table = Table(title=f"judge {judge}: how often side a is preferred (tie = half, 95% CI)")
    for col in ("kind", "a is", "n", "text verdict", "probability verdict", "mean P(a)"):
        table.add_column(col)
    for kind, summary in result["kinds"].items():
        prob = summary.get("logprob")
        prob_cells = (_pct(prob["rates"]["win_rate_ties_half"]), _pct(prob["p_a"])) if prob else ("-", "-")
        table.add_row(kind, A_IS[kind], str(summary["n"]), _pct(summary["text"]["rates"]["win_rate_ties_half"]),
                      *prob_cells)  # fmt: skip
    console.print(table)
    run = result["run"]
    load = f"load average {run['loadavg_before'][0]:.1f} -> {run['loadavg_after'][0]:.1f} on {run['cpu_count']} CPUs"
    console.print(f"{run['seconds']:.0f} s, {run['calls']} calls, {load}; written to {out}/probe.json")


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
    limit: LimitOpt = None,
    max_tokens: AnswerTokensOpt = 512,
    parallel: ParallelOpt = 4,
    base_url: BaseUrlOpt = None,
    data_dir: DataDirOpt = None,
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
