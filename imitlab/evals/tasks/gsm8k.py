"""GSM8K: grade-school math, 5-shot chain of thought (lm-eval's format), scored on the final number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.evals.task import FewShot, HubData, Item, Task, register
from imitlab.fileio import iter_jsonl
from imitlab.sources import HubRef


def _loader(rel: str):  # returns a loader
    def load(data_dir: Path) -> list[Item]:
        path = data_dir / rel
        items = []
        for lineno, rec in iter_jsonl(path, {"question": str, "answer": str}):
            if "####" not in rec["answer"]:
                raise ImitlabError(f"{path}:{lineno}: field 'answer' has no '#### <number>' final answer")
            items.append(_item(str(lineno), rec["question"], rec["answer"]))
        return items

    return load


def _item(item_id: str, question: str, answer: str) -> Item:
    final = answer.rsplit("####", 1)[1].strip()
    return {"id": item_id, "question": question, "answer": answer, "answers": [final]}


def _hub_items(rows: list[dict[str, Any]]) -> list[Item]:
    """openai/gsm8k (main) rows {question, answer}, numbered from 1 like the file's lines."""
    items = []
    for n, row in enumerate(rows, 1):
        if "####" not in row["answer"]:
            raise ValueError(f"row {n}: field 'answer' has no '#### <number>' final answer")
        items.append(_item(str(n), row["question"], row["answer"]))
    return items


register(
    Task(
        name="gsm8k",
        kind="generate",
        files=("gsm8k/test.jsonl", "gsm8k/train.jsonl.gz"),
        load=_loader("gsm8k/test.jsonl"),
        template="Question: {question}\nAnswer:",
        target="{answer}",
        fewshot=FewShot(k=5, load=_loader("gsm8k/train.jsonl.gz")),  # the first 5 training problems
        stop=("Question:", "</s>", "<|im_end|>", "\n\n"),
        max_tokens=256,
        metrics=("number",),
        about="GSM8K test, 5-shot CoT from train, greedy; the last number of the answer vs the gold number",
        display_name="GSM8K",
        headline="number",
        hub=HubData(HubRef("openai/gsm8k", "main"), _hub_items, split="test", fewshot_split="train"),
    )
)
