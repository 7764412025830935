"""Turn a judge's free-text reply into a verdict on positions: ``"A"``, ``"B"``, ``"tie"`` or ``None``.

``None`` means unparseable: it is recorded and counted on its own, never as a win for either side.
A reply that names more than one distinct verdict (a small judge echoing "[[A]], [[B]] or [[C]]")
is ambiguous and so also unparseable, rather than silently read as the first tag.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

Position = str  # "A" | "B" | "tie"

_TAG = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.I)
_YESNO = re.compile(r"\[\[\s*(yes|no)\s*\]\]", re.I)
_NUM = r"(\d+(?:\.\d+)?)"
_SCORES = re.compile(rf"^\s*{_NUM}\s*[ ,/]\s*{_NUM}\s*$")
_NAMED_SCORES = re.compile(rf"Assistant 1\W*{_NUM}.*?Assistant 2\W*{_NUM}", re.S)
_TUPLE_SCORES = re.compile(rf"\(\s*{_NUM}\s*,\s*{_NUM}\s*\)")
_RANK = re.compile(r"""['"]model['"]\s*:\s*['"](model_[12])['"]\s*,\s*['"]rank['"]\s*:\s*([12])""")


@dataclass(frozen=True)
class Verdict:
    position: Position | None
    scores: tuple[float, float] | None = None


def parse_tag(text: str) -> Verdict:
    """MT-Bench style ``[[A]]`` / ``[[B]]`` / ``[[C]]`` (tie)."""
    found = {m.upper() if m.upper() in "ABC" else "C" for m in _TAG.findall(text)}
    if len(found) != 1:
        return Verdict(None)
    tag = found.pop()
    return Verdict({"A": "A", "B": "B", "C": "tie"}[tag])


def parse_scores(text: str) -> Verdict:
    """Vicuna-80 review style: two scores, for assistant 1 (A) and 2 (B).

    The general and coding prompts ask for them on the first line; the math prompt asks for a Python
    tuple, and GPT-4 sometimes wrote ``Assistant 1: 10 / Assistant 2: 6`` at the end instead, so those
    two forms are accepted as fallbacks (the last occurrence wins, as the final scores come last).
    """
    first = text.strip().split("\n", 1)[0] if text.strip() else ""
    match = _SCORES.match(first)
    if not match:
        found = _NAMED_SCORES.findall(text) or _TUPLE_SCORES.findall(text)
        if not found:
            return Verdict(None)
        s1, s2 = float(found[-1][0]), float(found[-1][1])
        return Verdict("A" if s1 > s2 else "B" if s2 > s1 else "tie", (s1, s2))
    s1, s2 = float(match.group(1)), float(match.group(2))
    return Verdict("A" if s1 > s2 else "B" if s2 > s1 else "tie", (s1, s2))


def parse_rank(text: str) -> Verdict:
    """AlpacaEval ranking style: a list of ``{'model': 'model_1', 'rank': 1}`` dicts; rank 1 wins."""
    ranks: dict[str, int] = {}
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        try:
            value = ast.literal_eval(text[start : end + 1])
            for item in value:
                ranks[str(item["model"])] = int(item["rank"])
        except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError):
            ranks = {}
    if not ranks:
        ranks = {model: int(rank) for model, rank in _RANK.findall(text)}
    winners = [m for m, r in ranks.items() if r == 1]
    if len(winners) != 1 or winners[0] not in ("model_1", "model_2"):
        return Verdict(None)
    return Verdict("A" if winners[0] == "model_1" else "B")


def parse_yesno(text: str) -> bool | None:
    found = {m.lower() for m in _YESNO.findall(text)}
    return (found.pop() == "yes") if len(found) == 1 else None


PAIR_PARSERS = {"tag": parse_tag, "scores": parse_scores, "rank": parse_rank}


def parse_verdict(parser: str, text: str) -> Verdict:
    return PAIR_PARSERS[parser](text)
