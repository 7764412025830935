"""Verdicts from probabilities: P(label) at the judge's verdict token, averaged over both orders.

A judge that returns token log-probabilities (llama.cpp's server, vLLM, OpenAI: ``logprobs: true,
top_logprobs: N`` on a chat request) says more than its argmax. At the verdict token (the first generated token,
or the token right after ``[[``) the probabilities of ``A`` and ``B`` give ``p_first``: how strongly it prefers the
answer in the first slot. Judging both orders and averaging

    p(a better) = (p_first(a shown first) + 1 - p_first(b shown first)) / 2

cancels any preference for a slot that does not depend on the answers: a judge that always leans 70/30 towards
slot A lands at exactly 0.5 on identical evidence and moves away from 0.5 only as far as the content moves it.
This is MT-Bench's swap applied to probabilities instead of to hard verdicts (docs/judge.md says how it relates to
AlpacaEval 2's logprob-weighted win rate).
"""

from __future__ import annotations

from collections.abc import Sequence

from imitlab.errors import ImitlabError

TOP_LOGPROBS = 20  # alternatives asked for per generated token (OpenAI's maximum; llama.cpp and vLLM accept it)
LABELS = ("A", "B")
# p and 1 - p do not always add back to exactly 1.0 in floating point; closer than this to 0.5 is a tie.
TIE_TOLERANCE = 1e-9
# Characters a tokenizer may glue to a label ("▁A", " A", "[[A", "**A"); the label is what is left.
_LABEL_PADDING = " \t\n\u2581\u0120[*'\"("


class NoLogprobs(ImitlabError):
    """The endpoint answered without token log-probabilities."""


def label_of(token: str) -> str | None:
    """The verdict label a token spells (``"A"``/``"B"``/``"C"``), else None. Case matters: ``a`` is a word."""
    core = token.strip(_LABEL_PADDING)
    return core if core in ("A", "B", "C") else None


def verdict_position(top_logprobs: Sequence[Sequence[tuple[str, float]]]) -> int | None:
    """Index of the verdict token: the first generated token that is a label and opens the reply or follows
    ``[[`` (so a reason that mentions "Answer A" before the verdict is not taken for it)."""
    text = ""
    for i, alternatives in enumerate(top_logprobs):
        if not alternatives:
            return None
        chosen = alternatives[0][0]
        opens_verdict = i == 0 or text.rstrip().endswith("[[") or chosen.lstrip().startswith("[[")
        if opens_verdict and label_of(chosen) is not None:
            return i
        text += chosen
    return None


def p_first(top_logprobs: Sequence[Sequence[tuple[str, float]]] | None) -> float | None:
    """P(the answer in slot A is better) from the verdict token's alternatives, normalised over A and B.

    Every alternative that spells a label adds to it (``"A"`` and ``" A"`` are different tokens). A tie label
    (``C``) is left out: the result ranks the two answers. None when the reply has no verdict token or neither A
    nor B is among its alternatives (counted as unparsed, never as 0.5). Raises :class:`NoLogprobs` when the
    response carried no log-probabilities at all.
    """
    import math

    if not top_logprobs:
        raise NoLogprobs("the judge's response carried no token log-probabilities")
    at = verdict_position(top_logprobs)
    if at is None:
        return None
    mass = dict.fromkeys(LABELS, 0.0)
    for token, logprob in top_logprobs[at]:
        label = label_of(token)
        if label in mass:
            mass[label] += math.exp(logprob)
    total = mass["A"] + mass["B"]
    return mass["A"] / total if total > 0 else None


def p_a_better(p_first_ab: float | None, p_first_ba: float | None) -> float | None:
    """P(model a's answer is better), both orders averaged; ``ab``: a in slot A, ``ba``: b in slot A."""
    if p_first_ab is None or p_first_ba is None:
        return None
    return (p_first_ab + (1.0 - p_first_ba)) / 2.0


def outcome_of(p: float | None) -> str:
    """A hard outcome from a's side: the more probable answer wins; exactly 0.5 is a tie."""
    if p is None:
        return "unparsed"
    if abs(p - 0.5) <= TIE_TOLERANCE:
        return "tie"
    return "win" if p > 0.5 else "loss"
