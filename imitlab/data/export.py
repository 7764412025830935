"""``imitlab data export``: an imitation set as a ``datasets`` folder in TRL's conversational format.

The folder is ``Dataset.save_to_disk`` output (``datasets.load_from_disk(OUT)`` reads it) plus ``README.md``, the
dataset card rendered from the set's manifest, and ``manifest.json`` itself. Checked once with trl 1.16.0 (not a
dependency): ``is_conversational`` holds for every row, and SFTTrainer trained SmolLM2 on it for 2 steps after
``remove_columns(["id", "prompt_id", "teacher"])``.
One row per conversation::

    messages   [{"role": "system"|"user"|"assistant", "content": str}, ...]   TRL's conversational format
    id         the record's id
    prompt_id  samples of one prompt share it (null when the set has one sample per prompt)
    teacher    the model that wrote the assistant turns (null when not recorded)

The folder is written to a temporary sibling and renamed into place when complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imitlab.data.dataset import read_manifest
from imitlab.data.schema import conversations_path, read_conversations
from imitlab.extras import require
from imitlab.fileio import atomic_path

CARD = "README.md"
MANIFEST_COPY = "manifest.json"


def rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conversation records -> rows of the exported columns (only role and content kept in each message)."""
    return [
        {
            "messages": [{"role": m["role"], "content": m["content"]} for m in rec["messages"]],
            "id": rec["id"],
            "prompt_id": str(rec["prompt_id"]) if rec.get("prompt_id") is not None else None,
            "teacher": str(rec["teacher"]) if rec.get("teacher") else None,
        }
        for rec in records
    ]


def export_dataset(source: str | Path, out: str | Path) -> dict[str, Any]:
    """Write ``out`` (see the module docstring) from a data-set directory or conversations file; return a summary."""
    require("data", "imitlab data export")
    import datasets

    path = conversations_path(source)
    records = read_conversations(path)
    manifest = read_manifest(path)
    dataset = datasets.Dataset.from_list(rows(records))
    out = Path(out)
    with atomic_path(out, is_dir=True) as tmp:
        dataset.save_to_disk(str(tmp))
        (tmp / CARD).write_text(dataset_card(manifest, len(records), out.name), encoding="utf-8")
        if manifest is not None:
            (tmp / MANIFEST_COPY).write_text(
                json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
    return {"records": len(records), "columns": dataset.column_names, "out": str(out), "manifest": manifest is not None}


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def dataset_card(manifest: dict[str, Any] | None, n: int, name: str) -> str:
    """The card: hub metadata (YAML front matter) and what the manifest says about where the data came from."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        task_categories=["text-generation"], tags=["imitlab", "imitation", "sft", "conversational"],
        size_categories=[_size_category(n)], pretty_name=name,
    )  # fmt: skip
    m = manifest or {}
    counts = m.get("counts", {})
    teacher = m.get("teacher")
    teachers = ", ".join(teacher) if isinstance(teacher, list) else (teacher or "not recorded")
    stats = m.get("token_stats", {})
    lines = [
        f"# {name}",
        "",
        f"Imitation data written by imitlab (`imitlab data export`): {n} conversations "
        f"whose assistant turns come from the teacher, **{teachers}**.",
        "",
        "## Format",
        "",
        "TRL's conversational format: one row per conversation, `messages` a list of `{role, content}` "
        "(`system`, `user`, `assistant`), plus `id`, `prompt_id` (samples of one prompt share it) and `teacher`.",
        "",
        "```python",
        "from datasets import load_dataset  # or load_from_disk(PATH) for the local folder",
        f'ds = load_dataset("OWNER/{name}", split="train")',
        "```",
        "",
        "## Provenance (from the imitlab manifest)",
        "",
        f"- operation: `{m.get('operation', 'unknown')}`, created {m.get('created', 'unknown')}",
        f"- records: {counts.get('records', n)}; prompt groups: {counts.get('groups', 'n/a')}",
        f"- words (user / assistant): {stats.get('words', {}).get('user', 'n/a')} / "
        f"{stats.get('words', {}).get('assistant', 'n/a')}",
    ]
    if "teacher_completion_tokens" in stats:
        lines.append(f"- teacher tokens (prompt / completion): {stats.get('teacher_prompt_tokens')} / "
                     f"{stats['teacher_completion_tokens']}")  # fmt: skip
    for src in m.get("sources", []):
        lines.append(f"- source `{src.get('path')}` (sha256 `{src.get('sha256', '')[:16]}...`)")
    if manifest is None:
        lines.append("- no manifest was found next to the conversations: the data's origin is not recorded")
    lines += [
        "",
        "The whole manifest is `manifest.json` in this repository. Terms: the teacher's and the prompts' own terms "
        "apply (some teachers' terms restrict training competing models on their outputs).",
        "",
    ]
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))
