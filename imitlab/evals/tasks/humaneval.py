"""HumanEval: 0-shot function completion, run against its unit tests in the sandbox; pass@1 and pass@k."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imitlab.evals.task import HubData, Item, Task, register
from imitlab.fileio import iter_jsonl
from imitlab.sources import HubRef

_FILE = "humaneval/HumanEval.jsonl.gz"


def _load(data_dir: Path) -> list[Item]:
    fields = {"task_id": str, "prompt": str, "canonical_solution": str, "test": str, "entry_point": str}
    return [{"id": rec["task_id"], **rec} for _, rec in iter_jsonl(data_dir / _FILE, fields)]


def _hub_items(rows: list[dict[str, Any]]) -> list[Item]:
    """openai/openai_humaneval rows have the file's fields."""
    fields = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    return [{"id": row["task_id"], **{f: row[f] for f in fields}} for row in rows]


register(
    Task(
        name="humaneval",
        kind="code",
        files=(_FILE,),
        load=_load,
        template="{prompt}",
        stop=("\nclass", "\ndef", "\n#", "\nif", "\nprint"),  # the Codex paper's stops, as lm-eval uses
        max_tokens=384,
        about="164 problems, 0-shot completion of the prompt, greedy pass@1 (unbiased pass@k with --samples)",
        display_name="HumanEval",
        headline="pass@1",
        contamination_fields=("prompt",),
        hub=HubData(HubRef("openai/openai_humaneval"), _hub_items, split="test"),
    )
)
