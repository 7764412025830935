"""MMLU (Hendrycks et al.): 5-shot from each subject's dev split, log-likelihood of the answer letter."""

from __future__ import annotations

from pathlib import Path

from imitlab.errors import ImitlabError
from imitlab.evals.data import read_csv
from imitlab.evals.task import FewShot, Item, Task, register

LETTERS = ("A", "B", "C", "D")


def _load(data_dir: Path, split: str) -> list[Item]:
    items = []
    files = sorted((data_dir / "mmlu" / split).glob(f"*_{split}.csv"))
    if not files:
        raise ImitlabError(f"mmlu: no *_{split}.csv files in {data_dir / 'mmlu' / split}")
    for path in files:
        subject = path.name[: -len(f"_{split}.csv")]
        for lineno, row in read_csv(path, 6):
            question, *options, answer = row
            if answer not in LETTERS:
                raise ImitlabError(f"{path}:{lineno}: field 'answer' should be one of A-D, got {answer!r}")
            items.append(
                {
                    "id": f"{subject}/{lineno}",
                    "subject": subject,
                    "subject_name": subject.replace("_", " "),
                    "question": question.strip(),
                    **dict(zip(LETTERS, options, strict=True)),
                    "options": options,
                    "answer": answer,
                    "choices": list(LETTERS),
                    "gold": LETTERS.index(answer),
                }
            )
    return items


register(
    Task(
        name="mmlu",
        kind="choice",
        files=("mmlu/test", "mmlu/dev"),
        load=lambda d: _load(d, "test"),
        description="The following are multiple choice questions (with answers) about {subject_name}.\n\n",
        template="{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:",
        target="{answer}",
        fewshot=FewShot(k=5, load=lambda d: _load(d, "dev"), match="subject"),
        group="subject",
        letters=True,
        about="57 subjects, 5-shot from dev (first 5), acc of the most likely letter; lm-eval's mmlu format",
        display_name="MMLU",
        headline="acc",
    )
)
