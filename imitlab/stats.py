"""Small statistics shared by the evaluation stages: bootstrap confidence intervals and agreement.

Kept dependency-free (numpy only): percentile bootstrap over items is a few lines, and the kappas are
textbook formulas checked against worked examples in the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a bootstrap confidence interval."""

    value: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    def as_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n, "confidence": self.confidence}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_ci(
    values: Sequence[Any] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Percentile bootstrap CI of ``statistic`` over items (resampled with replacement, rows of ``values``).

    ``values`` may be 1-D (one number per item) or 2-D (one row per item, for statistics of several
    columns such as a correlation). With no items the estimate is NaN; with one item the interval is the point.
    """
    data = np.asarray(values, dtype=float)
    n = int(data.shape[0]) if data.ndim else 0
    if n == 0:
        nan = float("nan")
        return Estimate(nan, nan, nan, 0, confidence)
    point = float(statistic(data))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    stats = np.array([statistic(data[i]) for i in idx], dtype=float)
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return Estimate(point, float("nan"), float("nan"), n, confidence)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Estimate(point, float(low), float(high), n, confidence)


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's kappa for two raters' labels on the same items (NaN if undefined)."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs equal-length label lists, got {len(a)} and {len(b)}")
    if not a:
        return float("nan")
    labels = sorted(set(a) | set(b), key=str)
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    expected = sum((list(a).count(k) / n) * (list(b).count(k) / n) for k in labels)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else float("nan")
    return (observed - expected) / (1.0 - expected)


def fleiss_kappa(counts: Sequence[Sequence[int]] | np.ndarray) -> float:
    """Fleiss' kappa from an items x categories matrix of rating counts (same number of raters per item)."""
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        return float("nan")
    per_item = table.sum(axis=1)
    if not np.all(per_item == per_item[0]) or per_item[0] < 2:
        raise ValueError("fleiss_kappa needs the same number (>= 2) of ratings for every item")
    r = per_item[0]
    p_j = table.sum(axis=0) / table.sum()
    p_i = ((table**2).sum(axis=1) - r) / (r * (r - 1))
    p_bar, p_e = p_i.mean(), (p_j**2).sum()
    if p_e == 1.0:
        return 1.0 if p_bar == 1.0 else float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))
