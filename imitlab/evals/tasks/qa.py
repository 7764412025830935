"""Open-domain QA by greedy short answers: NQ-open (the paper's 3-shot NQ) and a TriviaQA subsample.

Scored by SQuAD-normalised exact match against every gold answer, plus the softer "answer contained" and
token F1 (small instruct models answer in sentences, so exact match is near zero for them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imitlab.evals.task import FewShot, HubData, Item, Task, register
from imitlab.fileio import iter_jsonl
from imitlab.sources import HubRef

_STOP = ("\n", ".", ",")  # lm-eval's nq_open / triviaqa stop strings


def _nq(rel: str):
    def load(data_dir: Path) -> list[Item]:
        return [
            {"id": str(lineno), "question": rec["question"], "answers": rec["answer"], "answer": rec["answer"][0]}
            for lineno, rec in iter_jsonl(data_dir / rel, {"question": str, "answer": list})
        ]

    return load


def _nq_hub(rows: list[dict[str, Any]]) -> list[Item]:
    """google-research-datasets/nq_open rows {question, answer: [str]}; ids are 1-based row numbers, as the
    local file's line numbers."""
    return [
        {"id": str(n), "question": row["question"], "answers": list(row["answer"]), "answer": row["answer"][0]}
        for n, row in enumerate(rows, 1)
    ]


register(
    Task(
        name="nq_open",
        kind="generate",
        files=("nq_open/NQ-open.dev.jsonl", "nq_open/NQ-open.efficientqa.dev.1.1.jsonl"),
        load=_nq("nq_open/NQ-open.dev.jsonl"),
        description="Answer these questions:\n\n",
        template="Q: {question}?\nA:",
        target="{answer}",
        # Shots from the EfficientQA dev set, so they are never among the NQ-open dev items being scored.
        fewshot=FewShot(k=3, load=_nq("nq_open/NQ-open.efficientqa.dev.1.1.jsonl")),
        fewshot_delimiter="\n",
        stop=_STOP,
        max_tokens=32,
        about="NQ-open dev, 3-shot (first 3 of EfficientQA dev), greedy; EM over all golds, contains, F1",
        display_name="Natural Questions (open)",
        headline="em",
        # lm-eval's nq_open: validation = NQ-open dev; its shots come from train (EfficientQA dev is not on the hub)
        hub=HubData(HubRef("google-research-datasets/nq_open"), _nq_hub, split="validation", fewshot_split="train"),
    )
)

_TRIVIA = "triviaqa/triviaqa_sm_sub.jsonl"
_TRIVIA_SHOTS = 3  # the file's first items are the shots and are not scored


def _trivia(data_dir: Path) -> list[Item]:
    items = []
    for lineno, rec in iter_jsonl(data_dir / _TRIVIA, {"context": str, "answer": str, "aliases": list}):
        question = rec["context"].removeprefix("Question:").removesuffix("Answer:").strip()
        answers = list(dict.fromkeys([rec["answer"], *rec["aliases"]]))
        items.append({"id": str(lineno), "question": question, "answers": answers, "answer": rec["answer"]})
    return items


def _trivia_hub(rows: list[dict[str, Any]]) -> list[Item]:
    """mandarjoshi/trivia_qa (rc.nocontext) rows {question, question_id, answer: {value, aliases, ...}}."""
    items = []
    for row in rows:
        value = row["answer"]["value"]
        answers = list(dict.fromkeys([value, *row["answer"]["aliases"]]))
        items.append({"id": row["question_id"], "question": row["question"], "answers": answers, "answer": value})
    return items


register(
    Task(
        name="triviaqa",
        kind="generate",
        files=(_TRIVIA,),
        load=lambda d: _trivia(d)[_TRIVIA_SHOTS:],
        template="Question: {question}\nAnswer:",
        target="{answer}",
        fewshot=FewShot(k=_TRIVIA_SHOTS, load=lambda d: _trivia(d)[:_TRIVIA_SHOTS]),
        fewshot_delimiter="\n\n",
        stop=_STOP,
        max_tokens=32,
        about="MosaicML's 3k TriviaQA subsample, 3-shot, greedy; EM over the answer and its aliases, contains, F1",
        display_name="TriviaQA",
        headline="em",
        # the hub has the full set (lm-eval's triviaqa: rc.nocontext validation, shots from train), not the subsample
        hub=HubData(
            HubRef("mandarjoshi/trivia_qa", "rc.nocontext"), _trivia_hub, split="validation", fewshot_split="train"
        ),
    )
)
