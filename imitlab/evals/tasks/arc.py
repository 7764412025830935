"""AI2 ARC Easy / Challenge: 0-shot multiple choice by log-likelihood of each answer text (lm-eval's format)."""

from __future__ import annotations

from pathlib import Path

from imitlab.errors import ImitlabError
from imitlab.evals.task import Item, Task, register
from imitlab.fileio import iter_jsonl


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


for _name, _title, _file in (
    ("arc_easy", "ARC-Easy", "arc/arc_easy_test.jsonl"),
    ("arc_challenge", "ARC-Challenge", "arc/arc_challenge_test.jsonl"),
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
        )
    )
