"""``imitlab prompts import | self-instruct | synthesize``: prompt sources, thin over imitlab.prompts."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imitlab.cli.options import (
    BaseUrlOpt,
    CacheOpt,
    ConcurrencyOpt,
    MaxRequestsOpt,
    PromptSetOutOpt,
    SeedOpt,
    TeacherOpt,
    TemperatureOpt,
)
from imitlab.cli.output import err_console, print_summary

if TYPE_CHECKING:
    from imitlab.models.api_model import APIModel

prompts_app = typer.Typer(help="Prompt sources: import files, self-instruct bootstrap, task-specific synthesis.")


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
    print_summary(title, rows)


@prompts_app.command("import")
def prompts_import(
    files: Annotated[
        list[str],
        typer.Argument(help="JSON/JSONL (optionally .gz) or .txt files, datasets folders, .parquet, hf:OWNER/NAME."),
    ],
    out: PromptSetOutOpt,
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
    print_summary(
        f"imported {n} prompts -> {out}", {**result.formats, **{f"skipped: {k}": v for k, v in result.skipped.items()}}
    )


@prompts_app.command("self-instruct")
def prompts_self_instruct(
    teacher: TeacherOpt,
    seeds: Annotated[
        list[Path], typer.Option("--seeds", help="Seed task file(s), e.g. self_instruct/seed_tasks.jsonl.")
    ],
    out: PromptSetOutOpt,
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
