"""A held-out split, deterministic and by prompt group (samples of one prompt never straddle the split).

Groups are ordered by ``sha256(seed:group)``; the first ``heldout`` of them (a count, or a fraction of
the groups) are held out. The same input and seed always give the same split, and adding records to the
input moves no existing group from one side to the other. Public entry point: :func:`split`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from imitlab.data.schema import group_key
from imitlab.errors import ImitlabError
from imitlab.stage_config import StageConfig


class SplitConfig(StageConfig):
    heldout: float = 0.05  # a fraction of the groups (< 1) or a number of groups (>= 1)
    seed: int = 0


def group_order(gid: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{gid}".encode()).hexdigest()


def split(
    records: list[dict[str, Any]], cfg: SplitConfig | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Return (train, heldout, report)."""
    cfg = cfg or SplitConfig()
    groups = sorted({group_key(r) for r in records})
    if cfg.heldout <= 0:
        raise ImitlabError(f"heldout must be positive, not {cfg.heldout}")
    n_held = int(cfg.heldout) if cfg.heldout >= 1 else max(1, math.floor(cfg.heldout * len(groups)))
    if n_held >= len(groups):
        raise ImitlabError(
            f"cannot hold out {n_held} of {len(groups)} prompt groups: nothing would be left to train on"
        )
    # Rank by hash rather than sampling, so a group's side depends only on its own id and the seed.
    held = set(sorted(groups, key=lambda g: group_order(g, cfg.seed))[:n_held])
    train = [r for r in records if group_key(r) not in held]
    heldout = [r for r in records if group_key(r) in held]
    report = {"seed": cfg.seed, "groups": len(groups), "heldout_groups": n_held, "train_records": len(train),
              "heldout_records": len(heldout)}  # fmt: skip
    return train, heldout, report
