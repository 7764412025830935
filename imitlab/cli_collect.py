"""CLI for the collect half of the pipeline: ``imitlab prompts ...``, ``imitlab collect``, ``imitlab data ...``.

Thin: each command builds a config and calls one API function. Registered on the main app by ``cli.py``.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from imitlab.errors import ImitlabError

if TYPE_CHECKING:
    from imitlab.models.api_model import APIModel

prompts_app = typer.Typer(help="Prompt sources: import files, self-instruct bootstrap, task-specific synthesis.")
data_app = typer.Typer(help="Imitation sets: dedup, decontaminate, split, token-budget subsets.")
console = Console()
err_console = Console(stderr=True)

BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="Base URL for openai: specs.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Cache root (default $IMITLAB_CACHE).")]
InOpt = Annotated[Path, typer.Option("--in", help="Input data set (directory or conversations .jsonl).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output data-set directory.")]
# Options the teacher-driven prompt generators (self-instruct, synthesize) share.
TeacherOpt = Annotated[str, typer.Option(help="Teacher model spec.")]
ConcurrencyOpt = Annotated[int, typer.Option(help="Requests in flight.")]
MaxRequestsOpt = Annotated[int | None, typer.Option(help="Stop after this many requests.")]
TemperatureOpt = Annotated[float, typer.Option()]
SeedOpt = Annotated[int, typer.Option()]


def _summary(title: str, rows: dict[str, object]) -> None:
    table = Table(title=title, show_header=False)
    for k, v in rows.items():
        table.add_row(k, str(v))
    console.print(table)


def _open_teacher(
    spec: str, concurrency: int, base_url: str | None, cache: Path | None
) -> AbstractContextManager[APIModel]:
    """The teacher of a prompt generator, opened at the edge: its engine's progress bars go to stderr."""
    from imitlab.models.api_model import open_model
    from imitlab.models.engine import EngineSettings

    settings = EngineSettings(concurrency=concurrency, cache_root=cache)
    return open_model(spec, settings=settings, base_url=base_url, cache=cache, console=err_console)


def _gen_summary(title: str, requests: int, parsed: int, dropped: dict[str, int], pt: int, ct: int) -> None:
    rows: dict[str, object] = {"requests": requests, "parsed": parsed}
    rows.update({f"dropped: {k}": v for k, v in dropped.items()})
    rows["teacher tokens"] = f"{pt} prompt + {ct} completion"
    _summary(title, rows)


# -- prompts ---------------------------------------------------------------------------------------
@prompts_app.command("import")
def prompts_import(
    files: Annotated[
        list[str],
        typer.Argument(help="JSON/JSONL (optionally .gz) or .txt files, datasets folders, .parquet, hf:OWNER/NAME."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Prompt-set JSONL to write.")],
    fmt: Annotated[str, typer.Option("--format", help="auto | sharegpt | alpaca | openai | field | text")] = "auto",
    turns: Annotated[
        str, typer.Option(help="first: the first user turn; all: every user turn (multi-turn).")
    ] = "first",
    dedupe: Annotated[bool, typer.Option(help="Drop exact repeats of a prompt.")] = True,
    split: Annotated[str, typer.Option(help="The split read from datasets sources (hf:..., folders).")] = "train",
) -> None:
    """Import prompts from ShareGPT, Alpaca, OpenAI-messages, prompt/question fields or plain text."""
    from imitlab.prompts.importers import import_prompts
    from imitlab.prompts.schema import write_prompt_set

    result = import_prompts(list(files), fmt=fmt, turns=turns, dedupe=dedupe, split=split)  # type: ignore[arg-type]
    n = write_prompt_set(out, result.records)
    _summary(
        f"imported {n} prompts -> {out}", {**result.formats, **{f"skipped: {k}": v for k, v in result.skipped.items()}}
    )


@prompts_app.command("self-instruct")
def prompts_self_instruct(
    teacher: TeacherOpt,
    seeds: Annotated[
        list[Path], typer.Option("--seeds", help="Seed task file(s), e.g. self_instruct/seed_tasks.jsonl.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Prompt-set JSONL to write.")],
    n: Annotated[int, typer.Option("-n", help="New instructions to keep.")] = 100,
    rouge: Annotated[float, typer.Option(help="Keep only if ROUGE-L F vs every kept instruction is below this.")] = 0.7,
    concurrency: ConcurrencyOpt = 4,
    max_requests: MaxRequestsOpt = None,
    temperature: TemperatureOpt = 1.0,
    seed: SeedOpt = 0,
    base_url: BaseUrlOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Self-Instruct: the teacher writes new instructions from seed tasks (ROUGE-L < 0.7, blacklist)."""
    from imitlab.prompts.schema import write_prompt_set
    from imitlab.prompts.selfinstruct import SelfInstructConfig, self_instruct

    cfg = SelfInstructConfig(seeds=list(seeds), n_instructions=n, rouge_threshold=rouge, concurrency=concurrency,
                             max_requests=max_requests, temperature=temperature, seed=seed)  # fmt: skip
    with _open_teacher(teacher, concurrency, base_url, cache) as model:
        result = self_instruct(model, cfg)
    write_prompt_set(out, result.records)
    _gen_summary(f"kept {len(result.records)} instructions -> {out}", result.requests, result.generated,
                 dict(result.dropped), result.prompt_tokens, result.completion_tokens)  # fmt: skip


@prompts_app.command("synthesize")
def prompts_synthesize(
    teacher: TeacherOpt,
    seeds: Annotated[Path, typer.Option("--seeds", help="QA seed file: {question, answer} JSON/JSONL (NQ-open dev).")],
    out: Annotated[Path, typer.Option("--out", help="Prompt-set JSONL to write (answers in meta.answer).")],
    n: Annotated[int, typer.Option("-n", help="QA pairs to keep.")] = 100,
    k: Annotated[int, typer.Option("-k", help="Examples shown per request.")] = 5,
    n_seed: Annotated[int, typer.Option(help="Size of the seed set drawn from the file.")] = 10,
    conversations: Annotated[
        Path | None, typer.Option(help="Also write the QA pairs as an imitation data set in this directory.")
    ] = None,
    concurrency: ConcurrencyOpt = 4,
    max_requests: MaxRequestsOpt = None,
    temperature: TemperatureOpt = 1.0,
    seed: SeedOpt = 0,
    base_url: BaseUrlOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Task-specific synthesis (the paper's NQ-synthetic): k of n seed QA pairs in, new QA pairs out."""
    from imitlab.data.dataset import write_dataset
    from imitlab.prompts.schema import write_prompt_set
    from imitlab.prompts.synthesize import SynthConfig, qa_conversations, synthesize_qa

    cfg = SynthConfig(seed_file=seeds, n_pairs=n, k=k, n_seed=n_seed, concurrency=concurrency,
                      max_requests=max_requests, temperature=temperature, seed=seed)  # fmt: skip
    with _open_teacher(teacher, concurrency, base_url, cache) as model:
        result = synthesize_qa(model, cfg)
    write_prompt_set(out, result.records)
    if conversations is not None:
        write_dataset(conversations, qa_conversations(result.records, model.spec), operation="synthesize",
                      inputs=[seeds], params={"k": k, "n_seed": n_seed, "seed": seed, "temperature": temperature,
                                              "seed_ids": [s.id for s in result.seeds]})  # fmt: skip
    _gen_summary(f"kept {len(result.records)} QA pairs -> {out}", result.requests, result.parsed,
                 dict(result.dropped), result.prompt_tokens, result.completion_tokens)  # fmt: skip


# -- collect ---------------------------------------------------------------------------------------
def collect_cmd(
    teacher: Annotated[str, typer.Option(help="Teacher model spec: packaged name, gguf:PATH, openai:MODEL.")],
    prompts: Annotated[
        Path, typer.Option(help="Prompt set, or any file `imitlab prompts import` reads (-> OUT/prompts.jsonl).")
    ],
    out: Annotated[Path, typer.Option(help="Output data-set directory (rerun the same command to resume).")],
    concurrency: Annotated[int, typer.Option(help="Requests in flight (= llama.cpp parallel slots).")] = 8,
    samples: Annotated[int, typer.Option("--samples", "-n", help="Answers per prompt.")] = 1,
    system: Annotated[str | None, typer.Option(help="System prompt for prompts without one.")] = None,
    temperature: Annotated[float, typer.Option()] = 0.7,
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
    ctx_per_slot: Annotated[int, typer.Option(help="llama.cpp context per slot (local teachers).")] = 4096,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    stream: Annotated[
        bool, typer.Option(help="Server-sent events: for long answers behind proxies that cut idle connections.")
    ] = False,
    batch: Annotated[
        bool, typer.Option(help="Through the OpenAI Batch API: half price, up to 24 h, single-turn prompts only. "
                                "Rerun the same command to resume (OUT/batch.json).")
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
) -> None:
    """Send every prompt to the teacher; write conversations.jsonl + manifest.json (resumable)."""
    from imitlab.collect import CollectConfig, collect

    prompt_set = _as_prompt_set(prompts, out)
    cfg = CollectConfig(
        teacher=teacher, prompts=prompt_set, out=out, base_url=base_url, concurrency=concurrency, timeout=timeout,
        max_retries=max_retries, n_samples=samples, system=system, temperature=temperature, top_p=top_p,
        max_tokens=max_tokens, seed=seed, price_prompt_per_m=price_prompt, price_completion_per_m=price_completion,
        use_cache=use_cache, cache_path=cache_file, cache_root=cache, retry_failed=retry_failed, progress=progress,
        ctx_per_slot=ctx_per_slot, stream=stream, batch=batch, batch_file_only=batch_file_only,
        merge_batch_output=merge_batch_output, batch_discount=batch_discount, batch_poll_s=batch_poll,
    )  # fmt: skip
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
    _summary(f"{result.conversations}", rows)


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
                f"{path} is neither a prompt set ({not_a_prompt_set}) nor a file `imitlab prompts import` reads "
                f"({exc})"
            ) from None
    converted = out / "prompts.jsonl"
    write_prompt_set(converted, imported.records)
    skipped = "".join(f", {n} skipped ({why})" for why, n in imported.skipped.items())
    err_console.print(
        f"{path}: {imported.formats[str(path)]} format, {len(imported.records)} prompts{skipped} -> {converted}",
        soft_wrap=True, markup=False, highlight=False,
    )
    return converted


# -- data ------------------------------------------------------------------------------------------
def _write(out: Path, records: list, operation: str, inp: Path, params: dict, report: dict, report_name: str) -> None:
    from imitlab.data.dataset import write_dataset
    from imitlab.fileio import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / report_name, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    summary = {k: v for k, v in report.items() if not isinstance(v, list)}
    write_dataset(out, records, operation=operation, inputs=[_conv(inp)], params=params,
                  extra={"report": summary}, extra_files=[report_name])  # fmt: skip


def _conv(path: Path) -> Path:
    from imitlab.data.schema import conversations_path

    return conversations_path(path)


@data_app.command("dedup")
def data_dedup(
    inp: InOpt,
    out: OutOpt,
    key: Annotated[str, typer.Option(help="prompt (user turns) | conversation")] = "prompt",
    threshold: Annotated[float, typer.Option(help="MinHash Jaccard threshold for near-duplicates.")] = 0.8,
    near: Annotated[bool, typer.Option(help="Also remove near-duplicates (MinHash LSH).")] = True,
) -> None:
    """Remove exact and near-duplicate prompts (first occurrence kept)."""
    from imitlab.data.dedup import DedupConfig, dedup
    from imitlab.data.schema import read_conversations

    if key not in ("prompt", "conversation"):
        raise ImitlabError(f"--key must be 'prompt' or 'conversation', not {key!r}")
    cfg = DedupConfig(key=key, threshold=threshold, near=near)  # type: ignore[arg-type]
    kept, report = dedup(read_conversations(inp), cfg)
    _write(out, kept, "dedup", inp, vars(cfg), report, "dedup_report.json")
    _summary(f"dedup -> {out}", {k: v for k, v in report.items() if not isinstance(v, list)})


@data_app.command("decontaminate")
def data_decontaminate(
    inp: InOpt,
    out: OutOpt,
    evals: Annotated[str | None, typer.Option("--evals", help="Comma-separated eval sets (default all).")] = None,
    eval_file: Annotated[list[Path] | None, typer.Option("--eval-file", help="Extra eval prompt file.")] = None,
    n: Annotated[int, typer.Option("-n", help="Shared word n-gram length that counts as contamination.")] = 13,
    min_words: Annotated[int, typer.Option(help="Shorter eval items are ignored.")] = 6,
    check: Annotated[str, typer.Option(help="all (prompts and answers) | prompt")] = "all",
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data root (default $IMITLAB_DATA).")] = None,
) -> None:
    """Remove conversations sharing an n-gram with an evaluation set; report what was removed."""
    from imitlab.data.decontaminate import DecontamConfig, decontaminate, eval_set_names
    from imitlab.data.schema import read_conversations

    sets = [s.strip() for s in evals.split(",") if s.strip()] if evals is not None else eval_set_names()
    cfg = DecontamConfig(eval_sets=sets, eval_files=list(eval_file or []), data_dir=data_dir, n=n,
                         min_words=min_words, check=check)  # type: ignore[arg-type]  # fmt: skip
    kept, report = decontaminate(read_conversations(inp), cfg)
    params = {**vars(cfg), "eval_files": [str(p) for p in cfg.eval_files], "data_dir": str(cfg.data_dir or "")}
    _write(out, kept, "decontaminate", inp, params, report, "decontamination_report.json")
    _summary(f"decontaminate -> {out}", {k: v for k, v in report.items() if not isinstance(v, list)})


@data_app.command("split")
def data_split(
    inp: InOpt,
    out: Annotated[Path, typer.Option("--out", help="Directory for train/ and heldout/ data sets.")],
    heldout: Annotated[float, typer.Option(help="Held-out fraction (<1) or number of prompt groups (>=1).")] = 0.05,
    seed: SeedOpt = 0,
) -> None:
    """Deterministic held-out split by prompt group: OUT/train and OUT/heldout."""
    from imitlab.data.dataset import write_dataset
    from imitlab.data.schema import read_conversations
    from imitlab.data.split import SplitConfig, split

    cfg = SplitConfig(heldout=heldout, seed=seed)
    train, held, report = split(read_conversations(inp), cfg)
    for name, recs in (("train", train), ("heldout", held)):
        write_dataset(out / name, recs, operation=f"split:{name}", inputs=[_conv(inp)], params=vars(cfg),
                      extra={"report": report})  # fmt: skip
    _summary(f"split -> {out}/train, {out}/heldout", report)


@data_app.command("subset")
def data_subset(
    inp: InOpt,
    out: Annotated[Path, typer.Option("--out", help="Output directory (one data set per budget: OUT/<budget>).")],
    tokens: Annotated[list[str], typer.Option("--tokens", help="Token budget(s), e.g. 100k 300k 1M (repeatable).")],
    student: Annotated[str, typer.Option(help="Student model spec whose tokenizer counts tokens.")] = (
        "smollm2-135m-instruct"
    ),
    seed: SeedOpt = 0,
    cache: CacheOpt = None,
) -> None:
    """Nested, deterministic subsets that meet token budgets (counted with the student's tokenizer)."""
    from imitlab.data.dataset import write_dataset
    from imitlab.data.schema import read_conversations
    from imitlab.data.subset import SubsetConfig, parse_budget, token_subsets

    budgets = [parse_budget(t) for tok in tokens for t in tok.split(",") if t.strip()]
    cfg = SubsetConfig(budgets=budgets, student=student, seed=seed, cache_root=str(cache) if cache else None)
    subsets, report = token_subsets(read_conversations(inp), cfg)
    single = len(budgets) == 1
    for budget, recs in subsets.items():
        dest = out if single else out / _budget_name(budget)
        write_dataset(dest, recs, operation="subset", inputs=[_conv(inp)],
                      params={"budget_tokens": budget, "student": student, "seed": seed},
                      extra={"student_tokens": report["subsets"][str(budget)], "report": report})  # fmt: skip
    _summary(f"subsets -> {out}", {_budget_name(int(b)): v for b, v in report["subsets"].items()})


@data_app.command("export")
def data_export(
    inp: InOpt,
    out: Annotated[Path, typer.Option("--out", help="The datasets folder to write (save_to_disk + README.md card).")],
    push_to_hub: Annotated[
        str | None, typer.Option(help="Also push it to this hub dataset repo (OWNER/NAME); needs a token.")
    ] = None,
    private: Annotated[bool, typer.Option(help="With --push-to-hub: create the repo private.")] = False,
) -> None:
    """Export an imitation set as a datasets folder in TRL's conversational format (messages), manifest as card."""
    from imitlab.data.export import export_dataset

    if push_to_hub:
        from imitlab.hub import check_push

        check_push(push_to_hub, "the imitation set")  # before anything is written
    summary = export_dataset(inp, out)
    rows: dict[str, object] = {"records": summary["records"], "columns": ", ".join(summary["columns"])}
    if push_to_hub:
        from imitlab.hub import push_dataset

        rows["pushed to"] = push_dataset(out, push_to_hub, private=private)
    _summary(f"exported -> {out}", rows)


def _budget_name(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1000)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def register(app: typer.Typer) -> None:
    app.add_typer(prompts_app, name="prompts")
    app.add_typer(data_app, name="data")
    app.command("collect")(collect_cmd)
