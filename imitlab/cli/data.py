"""``imitlab data dedup | decontaminate | split | subset | export``: imitation sets, thin over imitlab.data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imitlab.cli.options import CacheOpt, DataDirOpt, InOpt, OutOpt, PrivateOpt, SeedOpt
from imitlab.cli.output import print_summary
from imitlab.errors import ImitlabError

data_app = typer.Typer(help="Imitation sets: dedup, decontaminate, split, token-budget subsets.")


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
    print_summary(f"dedup -> {out}", {k: v for k, v in report.items() if not isinstance(v, list)})


@data_app.command("decontaminate")
def data_decontaminate(
    inp: InOpt,
    out: OutOpt,
    evals: Annotated[str | None, typer.Option("--evals", help="Comma-separated eval sets (default all).")] = None,
    eval_file: Annotated[list[Path] | None, typer.Option("--eval-file", help="Extra eval prompt file.")] = None,
    n: Annotated[int, typer.Option("-n", help="Shared word n-gram length that counts as contamination.")] = 13,
    min_words: Annotated[int, typer.Option(help="Shorter eval items are ignored.")] = 6,
    check: Annotated[str, typer.Option(help="all (prompts and answers) | prompt")] = "all",
    data_dir: DataDirOpt = None,
) -> None:
    """Remove conversations sharing an n-gram with an evaluation set; report what was removed."""
    from imitlab.data.decontaminate import DecontamConfig, decontaminate
    from imitlab.data.schema import read_conversations
    from imitlab.eval_sets import CATALOGUE

    sets = [s.strip() for s in evals.split(",") if s.strip()] if evals is not None else None
    cfg = DecontamConfig(eval_sets=sets, eval_files=list(eval_file or []), data_dir=data_dir, n=n,
                         min_words=min_words, check=check)  # type: ignore[arg-type]  # fmt: skip
    kept, report = decontaminate(read_conversations(inp), cfg, CATALOGUE)
    params = {**vars(cfg), "eval_files": [str(p) for p in cfg.eval_files], "data_dir": str(cfg.data_dir or "")}
    _write(out, kept, "decontaminate", inp, params, report, "decontamination_report.json")
    print_summary(f"decontaminate -> {out}", {k: v for k, v in report.items() if not isinstance(v, list)})


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
    print_summary(f"split -> {out}/train, {out}/heldout", report)


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
    print_summary(f"subsets -> {out}", {_budget_name(int(b)): v for b, v in report["subsets"].items()})


@data_app.command("export")
def data_export(
    inp: InOpt,
    out: Annotated[Path, typer.Option("--out", help="The datasets folder to write (save_to_disk + README.md card).")],
    push_to_hub: Annotated[
        str | None, typer.Option(help="Also push it to this hub dataset repo (OWNER/NAME); needs a token.")
    ] = None,
    private: PrivateOpt = False,
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
    print_summary(f"exported -> {out}", rows)


def _budget_name(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1000)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)
