"""``imitlab collect``: every prompt to the teacher, resumable; a thin layer over :func:`imitlab.collect.collect`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imitlab.cli.options import (
    BaseUrlOpt,
    CacheOpt,
    ConcurrencyOpt,
    ConfigFileOpt,
    CtxPerSlotOpt,
    TeacherOrNoneOpt,
    TemperatureOpt,
    stage_config,
)
from imitlab.cli.output import err_console, print_summary


def collect_cmd(
    ctx: typer.Context,
    teacher: TeacherOrNoneOpt = None,
    prompts: Annotated[
        Path | None,
        typer.Option(help="Prompt set, or any file `imitlab prompts import` reads (-> OUT/prompts.jsonl)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output data-set directory (rerun the same command to resume).")
    ] = None,
    concurrency: ConcurrencyOpt = 8,
    samples: Annotated[int, typer.Option("--samples", "-n", help="Answers per prompt.")] = 1,
    system: Annotated[str | None, typer.Option(help="System prompt for prompts without one.")] = None,
    temperature: TemperatureOpt = 0.7,
    top_p: Annotated[float | None, typer.Option()] = None,
    max_tokens: Annotated[int, typer.Option(help="Completion token cap per answer.")] = 1024,
    seed: Annotated[int | None, typer.Option(help="Sampling seed sent to the API.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request, end to end.")] = 120.0,
    max_retries: Annotated[int, typer.Option(help="Retries per request (429/5xx/timeouts/connection).")] = 6,
    price_prompt: Annotated[float | None, typer.Option(help="USD per million prompt tokens.")] = None,
    price_completion: Annotated[float | None, typer.Option(help="USD per million completion tokens.")] = None,
    use_cache: Annotated[bool, typer.Option("--cache-responses/--no-cache-responses", help="Response cache.")] = True,
    cache_file: Annotated[Path | None, typer.Option(help="Response cache file (SQLite).")] = None,
    retry_failed: Annotated[bool, typer.Option(help="On resume, retry prompts that failed before.")] = True,
    ctx_per_slot: CtxPerSlotOpt = 4096,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    stream: Annotated[
        bool, typer.Option(help="Server-sent events: for long answers behind proxies that cut idle connections.")
    ] = False,
    batch: Annotated[
        bool,
        typer.Option(
            help="Through the OpenAI Batch API: half price, up to 24 h, single-turn prompts only. "
            "Rerun the same command to resume (OUT/batch.json)."
        ),
    ] = False,
    batch_file_only: Annotated[
        bool, typer.Option(help="Write OUT/batch/requests.jsonl (for vLLM's run_batch) and stop.")
    ] = False,
    merge_batch_output: Annotated[
        Path | None, typer.Option(help="Merge a batch result file made elsewhere (vLLM run_batch, a web upload).")
    ] = None,
    batch_discount: Annotated[
        float, typer.Option(help="Fraction of the list price batch answers do not cost (cost in the manifest).")
    ] = 0.5,
    batch_poll: Annotated[float, typer.Option(help="Longest wait between batch status polls, seconds.")] = 60.0,
    base_url: BaseUrlOpt = None,
    cache: CacheOpt = None,
    config_file: ConfigFileOpt = None,
) -> None:
    """Send every prompt to the teacher; write conversations.jsonl + manifest.json (resumable).

    --teacher, --prompts and --out are required unless the --config file sets teacher, prompts and out."""
    from imitlab.collect import CollectConfig, collect

    values = dict(
        teacher=teacher, prompts=prompts, out=out, base_url=base_url, concurrency=concurrency, timeout=timeout,
        max_retries=max_retries, n_samples=samples, system=system, temperature=temperature, top_p=top_p,
        max_tokens=max_tokens, seed=seed, price_prompt_per_m=price_prompt, price_completion_per_m=price_completion,
        use_cache=use_cache, cache_path=cache_file, cache_root=cache, retry_failed=retry_failed, progress=progress,
        ctx_per_slot=ctx_per_slot, stream=stream, batch=batch, batch_file_only=batch_file_only,
        merge_batch_output=merge_batch_output, batch_discount=batch_discount, batch_poll_s=batch_poll,
    )  # fmt: skip
    renamed = {
        "n_samples": "samples",
        "price_prompt_per_m": "price_prompt",
        "cache_root": "cache",
        "price_completion_per_m": "price_completion",
        "cache_path": "cache_file",
        "batch_poll_s": "batch_poll",
    }
    cfg = stage_config(ctx, CollectConfig, config_file, values, options=renamed)
    cfg.prompts = _as_prompt_set(cfg.prompts, cfg.out)
    result = collect(cfg, console=err_console)
    m, run = result.manifest, result.run
    rows: dict[str, object] = {
        "collected": f"{m['counts']['collected']} / {m['counts']['expected']}",
        "failed": m["counts"]["failed"],
        "this run": f"{run.written} written ({run.cached} cached), {run.failed} failed, {run.retries} retries, "
        f"{run.elapsed_s:.1f} s, {run.completion_tokens_per_s:.1f} completion tok/s",
        "tokens": f"{m['tokens']['prompt_tokens']} prompt + {m['tokens']['completion_tokens']} completion",
    }
    if m["cost_usd"] is not None:
        rows["cost (fresh requests)"] = f"${m['cost_usd']:.4f}"
    if b := m.get("batch"):
        if b["cost_usd_at_live_prices"] is not None:
            rows["cost at live prices"] = f"${b['cost_usd_at_live_prices']:.4f} (batch discount {b['discount']:g})"
        if run.anomalies:
            rows["result lines refused"] = ", ".join(f"{k} ({n})" for k, n in sorted(run.anomalies.items()))
    if len(m.get("served_by", {})) > 1:  # answers that name different models: say so, each record keeps its own
        rows["served by"] = ", ".join(f"{name} ({n})" for name, n in m["served_by"].items())
    for f in m["failures"][:5]:
        rows[f"failed {f['prompt_id']}#{f['sample']}"] = f["reason"]
    print_summary(f"{result.conversations}", rows)


def _as_prompt_set(path: Path, out: Path) -> Path:
    """The prompt set collect reads: ``path`` itself when it is one; otherwise ``path`` converted in memory by the
    importer (any file ``imitlab prompts import`` reads: ShareGPT, Alpaca, OpenAI messages, prompt/question
    fields, text) and written to ``OUT/prompts.jsonl``, which the collect manifest then names. Ids are the
    importer's stable ``<file stem>:<line>``, so rerunning the command resumes."""
    from imitlab.prompts.importers import import_prompts
    from imitlab.prompts.schema import PromptFormatError, read_prompt_set, write_prompt_set

    if not path.is_file():
        raise PromptFormatError(f"{path}: file not found")
    try:
        read_prompt_set(path)
        return path
    except PromptFormatError as not_a_prompt_set:
        try:
            imported = import_prompts([path])
        except PromptFormatError as exc:
            raise PromptFormatError(
                f"{path} is neither a prompt set ({not_a_prompt_set}) nor a file `imitlab prompts import` reads ({exc})"
            ) from None
    converted = out / "prompts.jsonl"
    write_prompt_set(converted, imported.records)
    skipped = "".join(f", {n} skipped ({why})" for why, n in imported.skipped.items())
    err_console.print(
        f"{path}: {imported.formats[str(path)]} format, {len(imported.records)} prompts{skipped} -> {converted}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    return converted
