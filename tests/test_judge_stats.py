"""imitlab.stats: bootstrap CIs and agreement statistics, checked against worked textbook examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imitlab.stats import bootstrap_ci, cohen_kappa, fleiss_kappa


def test_bootstrap_ci_covers_mean_and_narrows_with_n() -> None:
    rng = np.random.default_rng(1)
    small = bootstrap_ci(rng.random(30) < 0.7)
    large = bootstrap_ci(rng.random(3000) < 0.7)
    assert small.low < small.value < small.high
    assert large.low <= 0.7 <= large.high
    assert (large.high - large.low) < (small.high - small.low) / 3


def test_bootstrap_ci_is_seeded_and_handles_edges() -> None:
    assert bootstrap_ci([1, 0, 1, 1], seed=3) == bootstrap_ci([1, 0, 1, 1], seed=3)
    assert math.isnan(bootstrap_ci([]).value)
    one = bootstrap_ci([0.5])
    assert one.value == one.low == one.high == 0.5


def test_bootstrap_ci_on_rows_for_a_correlation() -> None:
    x = np.arange(50, dtype=float)
    rows = np.stack([x, 2 * x + 1], axis=1)
    est = bootstrap_ci(rows, lambda d: float(np.corrcoef(d[:, 0], d[:, 1])[0, 1]))
    assert est.value == pytest.approx(1.0)


def test_cohen_kappa_wikipedia_example() -> None:
    # 50 proposals: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> kappa 0.4
    a = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["a", "b"], ["a", "b"]) == 1.0


def test_fleiss_kappa_wikipedia_example() -> None:
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [2, 1]])
