"""Scoring functions: SQuAD-normalised exact match / containment / token F1, and unbiased pass@k."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The SQuAD v1.1 normalisation used by the NQ-open / EfficientQA evaluation.

    Unicode NFD first (as the ORQA / EfficientQA script does), then lower case, drop ASCII punctuation,
    drop the articles a/an/the, and collapse whitespace.
    """
    text = unicodedata.normalize("NFD", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in golds))


def contains_answer(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when some normalised gold answer appears in the normalised prediction as whole words.

    The softer QA metric: an instruct model that answers "It was Shakespeare." gets credit for "Shakespeare".
    """
    pred = f" {normalize_answer(prediction)} "
    return float(any((g := normalize_answer(gold)) and f" {g} " in pred for gold in golds))


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """The best SQuAD token-level F1 of the prediction against any gold answer."""
    pred_tokens = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        gold_tokens = normalize_answer(gold).split()
        common = Counter(pred_tokens) & Counter(gold_tokens)
        overlap = sum(common.values())
        if overlap == 0:
            continue
        precision = overlap / len(pred_tokens)
        recall = overlap / len(gold_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed (Chen et al. 2021, the numerically stable form)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


_NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def number_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the last number in the prediction equals a gold number (GSM8K's "flexible extract")."""
    found = _NUMBER.findall(prediction)
    if not found:
        return 0.0
    return float(any(_as_number(found[-1]) == _as_number(g) for g in golds))


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", "").strip().rstrip("."))
    except ValueError:
        return None


# Metrics a generate task may name in its declaration: (prediction, gold answers) -> score.
GENERATE_METRICS = {"em": exact_match, "contains": contains_answer, "f1": token_f1, "number": number_match}

_LETTER = re.compile(r"\b([A-Z])\b")


def parse_letter(text: str, letters: Sequence[str]) -> int | None:
    """The index of the answer letter a model wrote ("B", "(B)", "Answer: B."), or None if there is none."""
    allowed = set(letters)
    stripped = text.strip()
    if stripped[:1] in allowed and (len(stripped) == 1 or not stripped[1].isalpha()):
        return list(letters).index(stripped[0])
    for match in _LETTER.finditer(text):
        if match.group(1) in allowed:
            return list(letters).index(match.group(1))
    return None
