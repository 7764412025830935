"""From verdicts to the numbers: per-item outcomes, win/tie/loss, and "as good as or better" with CIs.

Outcomes are from side ``a``'s point of view: ``win`` (a better), ``tie``, ``loss`` (b better),
``unparsed`` (the judge's reply could not be read) and ``inconsistent`` (the verdict flipped with the
order and the flip policy is ``exclude``). Rates are over decided items (win + tie + loss); unparsed and
inconsistent items are counted and reported, never folded into wins or losses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from imitlab.stats import bootstrap_ci

Side = Literal["a", "b", "tie"]
FlipPolicy = Literal["tie", "exclude", "first"]
OUTCOMES = ("win", "tie", "loss", "unparsed", "inconsistent")
_FROM_SIDE = {"a": "win", "b": "loss", "tie": "tie"}


def side_of(position: str | None, order: str) -> Side | None:
    """Which model a position verdict favours: in order ``ab`` position A is model a; in ``ba`` it is b."""
    if position is None:
        return None
    if position == "tie":
        return "tie"
    first, second = order[0], order[1]
    return first if position == "A" else second  # type: ignore[return-value]


def combine(first: Side | None, second: Side | None, flip: FlipPolicy = "tie") -> str:
    """One item's outcome from its two orders' verdicts (``first`` is the a-then-b order)."""
    if first is None or second is None:
        return "unparsed"
    if first == second:
        return _FROM_SIDE[first]
    if flip == "tie":
        return "tie"
    if flip == "exclude":
        return "inconsistent"
    return _FROM_SIDE[first]


@dataclass(frozen=True)
class Tally:
    counts: dict[str, int]
    rates: dict[str, dict[str, float | int]]  # win/tie/loss/as_good_or_better/win_rate_ties_half -> Estimate dict

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "rates": self.rates}


def tally(outcomes: Iterable[str], *, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> Tally:
    """Counts of each outcome and bootstrap CIs of the rates over decided items."""
    outcomes = list(outcomes)
    bad = set(outcomes) - set(OUTCOMES)
    if bad:
        raise ValueError(f"unknown outcomes {sorted(bad)}")
    counts = Counter(outcomes)
    decided = np.array([o for o in outcomes if o in ("win", "tie", "loss")])
    columns = {
        "win": decided == "win",
        "tie": decided == "tie",
        "loss": decided == "loss",
        "as_good_or_better": decided != "loss",
        # AlpacaEval's leaderboard win rate: a tie counts half.
        "win_rate_ties_half": (decided == "win") + 0.5 * (decided == "tie"),
    }
    rates = {
        name: bootstrap_ci(values.astype(float), n_resamples=n_resamples, seed=seed, confidence=confidence).as_dict()
        for name, values in columns.items()
    }
    return Tally({o: counts.get(o, 0) for o in OUTCOMES}, rates)


def position_bias(positions: Sequence[str | None]) -> dict[str, float | int]:
    """How often the judge picked position A / B / tie among its parsed verdicts (order effects show here)."""
    parsed = [p for p in positions if p is not None]
    n = len(parsed)
    return {
        "n": n,
        "A": parsed.count("A") / n if n else float("nan"),
        "B": parsed.count("B") / n if n else float("nan"),
        "tie": parsed.count("tie") / n if n else float("nan"),
    }


def json_ready(obj: Any) -> Any:
    """Replace NaN (an undefined rate: no decided items) with None, so summaries are strict JSON."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    return obj


# -- recorded verdicts from the literature ---------------------------------------------------------------
def alpaca_eval_outcome(preference: float | None) -> str:
    """An AlpacaEval annotation's preference, from output_2's point of view (output_1 is the baseline).

    1 = output_1 preferred, 2 = output_2 preferred; 0 and 1.5 are ties (AlpacaEval writes them when both
    outputs are identical); null is a reply the annotator could not parse.
    """
    if preference is None:
        return "unparsed"
    if preference == 2:
        return "win"
    if preference == 1:
        return "loss"
    if preference in (0, 1.5):
        return "tie"
    raise ValueError(f"unexpected AlpacaEval preference {preference!r}")
