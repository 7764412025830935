"""Recorded judge verdicts from the literature, read through imitlab's parsers and aggregation.

These are the validation set for the judging code: the AlpacaEval GPT-4 annotations (each model vs
text-davinci-003) and the Vicuna-80 GPT-4 reviews (each model vs Vicuna-13B, two scores per review).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imitlab.errors import ImitlabError
from imitlab.judge.aggregate import Tally, alpaca_eval_outcome, tally
from imitlab.judge.parse import parse_scores
from imitlab.judge.sources import read_records


def alpaca_eval_outcomes(path: str | Path) -> list[str]:
    """Outcomes of output_2's model against the baseline (output_1), one per annotation."""
    outcomes = []
    for n, row in read_records(path):
        if "preference" not in row:
            raise ImitlabError(f"{path}: item {n}: no field 'preference'")
        try:
            outcomes.append(alpaca_eval_outcome(row["preference"]))
        except ValueError as exc:
            raise ImitlabError(f"{path}: item {n}: field 'preference': {exc}") from exc
    return outcomes


def alpaca_eval_tally(path: str | Path, **kw: int) -> Tally:
    return tally(alpaca_eval_outcomes(path), **kw)


@dataclass(frozen=True)
class Review:
    question_id: str
    recorded: tuple[float, float]  # the file's ``score`` field: [assistant 1, assistant 2]
    parsed: tuple[float, float] | None  # the same, read from the review text by imitlab's parser
    outcome: str  # assistant 1's point of view


def vicuna_reviews(path: str | Path) -> list[Review]:
    """Vicuna-80 GPT-4 reviews: the first line of each review's text holds the two scores."""
    reviews = []
    for n, row in read_records(path):
        for key in ("question_id", "text", "score"):
            if key not in row:
                raise ImitlabError(f"{path}:{n}: no field {key!r}")
        verdict = parse_scores(row["text"])
        outcome = {"A": "win", "B": "loss", "tie": "tie", None: "unparsed"}[verdict.position]
        reviews.append(Review(str(row["question_id"]), tuple(row["score"]), verdict.scores, outcome))  # type: ignore[arg-type]
    return reviews


def vicuna_tally(path: str | Path, **kw: int) -> tuple[Tally, float]:
    """Win/tie/loss of assistant 1 and its total score as a fraction of assistant 2's (the blog's "% quality")."""
    reviews = vicuna_reviews(path)
    parsed = [r.parsed for r in reviews if r.parsed]
    ratio = sum(s[0] for s in parsed) / sum(s[1] for s in parsed) if parsed else float("nan")
    return tally([r.outcome for r in reviews], **kw), ratio
