"""GSM8K: grade-school math, 5-shot chain of thought (lm-eval's format), scored on the final number."""

from __future__ import annotations

from pathlib import Path

from imitlab.errors import ImitlabError
from imitlab.evals.task import FewShot, Item, Task, register
from imitlab.fileio import iter_jsonl


def _loader(rel: str):  # returns a loader
    def load(data_dir: Path) -> list[Item]:
        path = data_dir / rel
        items = []
        for lineno, rec in iter_jsonl(path, {"question": str, "answer": str}):
            if "####" not in rec["answer"]:
                raise ImitlabError(f"{path}:{lineno}: field 'answer' has no '#### <number>' final answer")
            final = rec["answer"].rsplit("####", 1)[1].strip()
            items.append({"id": str(lineno), "question": rec["question"], "answer": rec["answer"], "answers": [final]})
        return items

    return load


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
    )
)
