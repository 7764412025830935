"""Open-domain QA by greedy short answers: NQ-open (the paper's 3-shot NQ) and a TriviaQA subsample.

Scored by SQuAD-normalised exact match against every gold answer, plus the softer "answer contained" and
token F1 (small instruct models answer in sentences, so exact match is near zero for them).
"""

from __future__ import annotations

from pathlib import Path

from imitlab.evals.task import FewShot, Item, Task, register
from imitlab.fileio import iter_jsonl

_STOP = ("\n", ".", ",")  # lm-eval's nq_open / triviaqa stop strings


def _nq(rel: str):
    def load(data_dir: Path) -> list[Item]:
        return [
            {"id": str(lineno), "question": rec["question"], "answers": rec["answer"], "answer": rec["answer"][0]}
            for lineno, rec in iter_jsonl(data_dir / rel, {"question": str, "answer": list})
        ]

    return load


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
    )
)
