"""MMLU (Hendrycks et al.): 5-shot from each subject's dev split, log-likelihood of the answer letter.

Local files: the hendrycks CSVs (``mmlu/{test,dev}/<subject>_{test,dev}.csv``); hub: ``cais/mmlu`` (config
``all``), the copy lm-eval reads. The subject groups are lm-eval's (``mmlu_stem``, ``mmlu_humanities``,
``mmlu_social_sciences``, ``mmlu_other``), for ``imitlab eval --subjects``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.evals.data import read_csv
from imitlab.evals.task import FewShot, HubData, Item, Task, register
from imitlab.sources import HubRef

LETTERS = ("A", "B", "C", "D")

# lm-eval 0.4.13's MMLU groups (lm_eval/tasks/mmlu/default/mmlu_<subject>.yaml "tag"); tests check the copy.
GROUPS: dict[str, tuple[str, ...]] = {
    "mmlu_stem": (
        "abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
        "college_computer_science", "college_mathematics", "college_physics", "computer_security",
        "conceptual_physics", "electrical_engineering", "elementary_mathematics", "high_school_biology",
        "high_school_chemistry", "high_school_computer_science", "high_school_mathematics", "high_school_physics",
        "high_school_statistics", "machine_learning",
    ),
    "mmlu_humanities": (
        "formal_logic", "high_school_european_history", "high_school_us_history", "high_school_world_history",
        "international_law", "jurisprudence", "logical_fallacies", "moral_disputes", "moral_scenarios",
        "philosophy", "prehistory", "professional_law", "world_religions",
    ),
    "mmlu_social_sciences": (
        "econometrics", "high_school_geography", "high_school_government_and_politics", "high_school_macroeconomics",
        "high_school_microeconomics", "high_school_psychology", "human_sexuality", "professional_psychology",
        "public_relations", "security_studies", "sociology", "us_foreign_policy",
    ),
    "mmlu_other": (
        "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging", "management",
        "marketing", "medical_genetics", "miscellaneous", "nutrition", "professional_accounting",
        "professional_medicine", "virology",
    ),
}  # fmt: skip


def _item(subject: str, number: int, question: str, options: list[str], answer: str) -> Item:
    return {
        "id": f"{subject}/{number}",
        "subject": subject,
        "subject_name": subject.replace("_", " "),
        "question": question.strip(),
        **dict(zip(LETTERS, options, strict=True)),
        "options": options,
        "answer": answer,
        "choices": list(LETTERS),
        "gold": LETTERS.index(answer),
    }


def _hub_items(rows: list[dict[str, Any]]) -> list[Item]:
    """cais/mmlu rows {question, subject, choices, answer: 0-3}; ids number each subject's rows from 1 in order
    (the CSV's ids are line numbers, which skip where a question spans several lines)."""
    seen: Counter[str] = Counter()
    items = []
    for row in rows:
        seen[row["subject"]] += 1
        if len(row["choices"]) != len(LETTERS) or row["answer"] not in range(len(LETTERS)):
            raise ValueError(f"row {row['subject']}/{seen[row['subject']]}: expected 4 choices and an answer 0-3")
        items.append(_item(row["subject"], seen[row["subject"]], row["question"], list(row["choices"]),
                           LETTERS[row["answer"]]))  # fmt: skip
    return items


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
            items.append(_item(subject, lineno, question, options, answer))
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
        subsets=GROUPS,
        hub=HubData(HubRef("cais/mmlu", "all"), _hub_items, split="test", fewshot_split="dev"),
        letters=True,
        about="57 subjects, 5-shot from dev (first 5), acc of the most likely letter; lm-eval's mmlu format",
        display_name="MMLU",
        headline="acc",
    )
)
