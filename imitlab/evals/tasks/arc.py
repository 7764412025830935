"""AI2 ARC Easy / Challenge: 0-shot multiple choice by log-likelihood of each answer text (lm-eval's format)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.evals.task import HubData, Item, Task, register
from imitlab.fileio import iter_jsonl
from imitlab.sources import HubRef


def _loader(rel: str):
    def load(data_dir: Path) -> list[Item]:
        path = data_dir / rel
        items = []
        for lineno, rec in iter_jsonl(path, {"query": str, "choices": list, "gold": int}):
            if not 0 <= rec["gold"] < len(rec["choices"]):
                raise ImitlabError(f"{path}:{lineno}: field 'gold' = {rec['gold']} is not a choice index")
            question = rec["query"].removeprefix("Question:").strip()
            items.append({"id": str(lineno), "question": question, "choices": rec["choices"], "gold": rec["gold"]})
        return items

    return load


def _hub_items(rows: list[dict[str, Any]]) -> list[Item]:
    """allenai/ai2_arc rows {id, question, choices: {text, label}, answerKey} (lm-eval's arc_easy/arc_challenge)."""
    items = []
    for row in rows:
        labels = list(row["choices"]["label"])
        if row["answerKey"] not in labels:
            raise ValueError(f"row {row['id']}: answerKey {row['answerKey']!r} is not one of {labels}")
        gold = labels.index(row["answerKey"])
        items.append({"id": row["id"], "question": row["question"], "choices": list(row["choices"]["text"]),
                      "gold": gold})  # fmt: skip
    return items


for _name, _title, _file, _config in (
    ("arc_easy", "ARC-Easy", "arc/arc_easy_test.jsonl", "ARC-Easy"),
    ("arc_challenge", "ARC-Challenge", "arc/arc_challenge_test.jsonl", "ARC-Challenge"),
):
    register(
        Task(
            name=_name,
            kind="choice",
            files=(_file,),
            load=_loader(_file),
            template="Question: {question}\nAnswer:",
            about="0-shot, acc (and acc_norm: log-likelihood per character) over the answer texts",
            display_name=_title,
            headline="acc",
            hub=HubData(HubRef("allenai/ai2_arc", _config), _hub_items, split="test"),
        )
    )
