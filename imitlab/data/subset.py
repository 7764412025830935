"""Token-budget subsets that nest: the 100k subset is inside the 300k subset, so a sweep compares like with like.

Tokens are counted with the *student's* tokenizer over the conversation as training will see it (the
chat template when the tokenizer has one, else the concatenated turns). Prompt groups are ranked once by
``sha256(seed:group)``; a budget takes the shortest prefix of that ranking whose total reaches the budget.
Every budget uses the same ranking, so smaller subsets are prefixes of larger ones.
Public entry point: :func:`token_subsets`.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import pydantic

from imitlab.data.schema import group_key
from imitlab.data.split import group_order
from imitlab.errors import ImitlabError
from imitlab.stage_config import StageConfig

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*$")


class Tokenizer(Protocol):
    def __call__(self, text: str, **kw: Any) -> Any: ...


def parse_budget(text: str | int) -> int:
    """'300k' -> 300000, '1.5M' -> 1500000, '2000' -> 2000."""
    if isinstance(text, int):
        return text
    m = _BUDGET.match(text)
    if not m:
        raise ImitlabError(f"token budget {text!r} is not a number like 300k, 1.5M or 20000")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
    if value < 1:
        raise ImitlabError(f"token budget {text!r} must be at least 1 token")
    return int(value)


class SubsetConfig(StageConfig):
    budgets: list[int]
    student: str = "smollm2-135m-instruct"  # a model spec; its tokenizer counts the tokens
    seed: int = 0
    cache_root: str | None = None
    extra: dict[str, Any] = pydantic.Field(default_factory=dict)


def load_tokenizer(student: str, cache_root: str | None = None) -> Any:
    """The student's tokenizer exactly as training uses it (base models get the plain chat template)."""
    from imitlab.models.tokenizer import load_tokenizer as load_student_tokenizer

    return load_student_tokenizer(student, cache_root)


def count_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # some versions return a BatchEncoding
            ids = ids["input_ids"]
        return len(ids)
    return sum(len(tokenizer(m["content"], add_special_tokens=False)["input_ids"]) for m in messages)


def token_subsets(
    records: list[dict[str, Any]], cfg: SubsetConfig, tokenizer: Any | None = None
) -> tuple[dict[int, list[dict[str, Any]]], dict[str, Any]]:
    """Return {budget: records} and a report with the exact token totals of each subset."""
    if not cfg.budgets:
        raise ImitlabError("no token budget given")
    tokenizer = tokenizer or load_tokenizer(cfg.student, cfg.cache_root)
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(group_key(rec), []).append(rec)
    group_tokens = {g: sum(count_tokens(tokenizer, r["messages"]) for r in rs) for g, rs in groups.items()}
    ranking = sorted(groups, key=lambda g: group_order(g, cfg.seed))
    total = sum(group_tokens.values())
    subsets: dict[int, list[dict[str, Any]]] = {}
    summary = {}
    for budget in sorted(set(cfg.budgets)):
        if budget > total:
            raise ImitlabError(
                f"the data set has {total:,} tokens ({cfg.student} tokenizer), fewer than the budget {budget:,}"
            )
        chosen, running = [], 0
        for g in ranking:
            if running >= budget:
                break
            chosen.append(g)
            running += group_tokens[g]
        keep = set(chosen)
        subsets[budget] = [r for r in records if group_key(r) in keep]
        summary[str(budget)] = {"tokens": running, "groups": len(chosen), "records": len(subsets[budget])}
    report = {"student": cfg.student, "seed": cfg.seed, "total_tokens": total, "total_groups": len(groups),
              "subsets": summary}  # fmt: skip
    return subsets, report
