"""Export human ratings, and merge them with judge verdicts: human win/tie/loss, inter-rater agreement,
and judge-vs-human agreement."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text
from imitlab.judge.aggregate import json_ready, tally
from imitlab.judge.sources import read_records
from imitlab.rate.db import RatingStore
from imitlab.stats import cohen_kappa, fleiss_kappa

_OUTCOME = {"a": "win", "b": "loss", "tie": "tie"}
CATEGORIES = ("win", "tie", "loss")


def export(db_path: str | Path, out: str | Path) -> int:
    """Write every rating as a JSONL row (atomically); returns the number of rows."""
    rows = RatingStore(db_path).ratings()
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return len(rows)


def majority(outcomes: list[str]) -> str:
    """The most common outcome; a tie between the top outcomes is a tie."""
    counts = Counter(outcomes).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return "tie"
    return counts[0][0]


def _judge_outcomes(judge_dir: str | Path) -> dict[str, str]:
    path = Path(judge_dir) / "items.jsonl"
    if not path.is_file():
        raise ImitlabError(f"no judge results at {path} (run `imitlab judge --out {judge_dir}` first)")
    return {str(r["id"]): r["outcome"] for _, r in read_records(path)}


def agreement(per_item: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Inter-rater agreement from ``item -> rater -> outcome``: pairwise Cohen's kappa and Fleiss' kappa."""
    raters = sorted({r for votes in per_item.values() for r in votes})
    pairs = []
    for r1, r2 in itertools.combinations(raters, 2):
        common = [i for i, votes in per_item.items() if r1 in votes and r2 in votes]
        if common:
            x, y = [per_item[i][r1] for i in common], [per_item[i][r2] for i in common]
            agree = sum(a == b for a, b in zip(x, y, strict=True)) / len(common)
            pairs.append({"raters": [r1, r2], "n": len(common), "agreement": agree, "cohen_kappa": cohen_kappa(x, y)})
    # Fleiss' kappa needs the same number of ratings per item: use the items with the most common count (>= 2).
    sizes = Counter(len(v) for v in per_item.values() if len(v) >= 2)
    fleiss = None
    if sizes:
        k = sizes.most_common(1)[0][0]
        table = [[Counter(v.values())[c] for c in CATEGORIES] for v in per_item.values() if len(v) == k]
        fleiss = {"raters_per_item": k, "n": len(table), "kappa": fleiss_kappa(table)}
    return {"raters": raters, "pairwise": pairs, "fleiss": fleiss}


def report(
    db_path: str | Path,
    *,
    judge_dir: str | Path | None = None,
    out: str | Path | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Human results (majority per item, with CIs), agreement, and agreement with the judge when given."""
    per_item: dict[str, dict[str, str]] = defaultdict(dict)
    models: set[tuple[str, str]] = set()
    for r in RatingStore(db_path).ratings():
        per_item[r["item_id"]][r["rater"]] = _OUTCOME[r["verdict"]]
        models.add((r["model_a"], r["model_b"]))
    human = {item: majority(list(votes.values())) for item, votes in per_item.items()}
    result: dict[str, Any] = {
        "models": sorted(models),
        "n_items_rated": len(per_item),
        "n_ratings": sum(len(v) for v in per_item.values()),
        "human": tally(human.values(), n_resamples=n_resamples, seed=seed).as_dict(),
        "inter_rater": agreement(per_item),
    }
    merged = [{"id": i, "human": dict(v), "human_majority": human[i]} for i, v in sorted(per_item.items())]
    if judge_dir is not None:
        judge = _judge_outcomes(judge_dir)
        both = [i for i in human if judge.get(i) in CATEGORIES]
        x, y = [human[i] for i in both], [judge[i] for i in both]
        result["judge_vs_human"] = {
            "n": len(both),
            "agreement": (sum(a == b for a, b in zip(x, y, strict=True)) / len(both)) if both else None,
            "cohen_kappa": cohen_kappa(x, y) if both else None,
            "judge_on_rated_items": tally(
                [judge[i] for i in human if i in judge], n_resamples=n_resamples, seed=seed
            ).as_dict(),
        }
        for row in merged:
            row["judge"] = judge.get(row["id"])
    result = json_ready(result)
    if out is not None:
        out = Path(out)
        atomic_write_text(out / "human_summary.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
        atomic_write_text(out / "merged.jsonl", "".join(json.dumps(r) + "\n" for r in merged))
    return result
