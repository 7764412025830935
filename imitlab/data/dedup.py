"""Exact and near-duplicate removal (MinHash LSH from ``datasketch``).

Duplicates are judged on the prompt (the user turns) by default, since the same question asked twice
over-weights it whatever the teacher said; ``key="conversation"`` judges the whole conversation. Samples
of one prompt (same ``prompt_id``) are one group: kept or dropped together, never deduplicated against
each other. The first occurrence wins, so the result does not depend on anything but input order.

Public entry point: :func:`dedup`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from datasketch import MinHash, MinHashLSH

from imitlab.data.schema import all_text, group_key, user_text
from imitlab.stage_config import StageConfig

_WORD = re.compile(r"\w+", re.UNICODE)


class DedupConfig(StageConfig):
    key: Literal["prompt", "conversation"] = "prompt"
    near: bool = True
    threshold: float = 0.8  # estimated Jaccard similarity of word shingles at which texts are near-duplicates
    shingle: int = 3  # words per shingle
    num_perm: int = 128
    seed: int = 1


def _normalize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _minhash(words: list[str], cfg: DedupConfig) -> MinHash:
    n = cfg.shingle
    shingles = {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}
    m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
    m.update_batch([s.encode() for s in shingles])
    return m


def dedup(records: list[dict[str, Any]], cfg: DedupConfig | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the kept records and a report: ``{"exact": n, "near": n, "removed": [{group, dup_of, kind, ...}]}``."""
    cfg = cfg or DedupConfig()
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(group_key(rec), []).append(rec)
    text_of = user_text if cfg.key == "prompt" else all_text
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm) if cfg.near else None
    hashes: dict[str, MinHash] = {}
    exact_seen: dict[str, str] = {}
    removed: list[dict[str, Any]] = []
    kept_groups: set[str] = set()
    for gid, recs in groups.items():
        words = _normalize(text_of(recs[0]))
        digest = hashlib.sha256(" ".join(words).encode()).hexdigest()
        if digest in exact_seen:
            removed.append({"group": gid, "dup_of": exact_seen[digest], "kind": "exact", "records": len(recs)})
            continue
        if lsh is not None:
            m = _minhash(words, cfg)
            best = max(((other, m.jaccard(hashes[other])) for other in lsh.query(m)), key=lambda x: x[1], default=None)
            if best is not None and best[1] >= cfg.threshold:
                removed.append(
                    {"group": gid, "dup_of": best[0], "kind": "near", "similarity": round(best[1], 3),
                     "records": len(recs)}
                )  # fmt: skip
                continue
            lsh.insert(gid, m)
            hashes[gid] = m
        exact_seen[digest] = gid
        kept_groups.add(gid)
    kept = [r for r in records if group_key(r) in kept_groups]
    report = {
        "key": cfg.key,
        "groups_in": len(groups),
        "groups_kept": len(kept_groups),
        "exact": sum(r["kind"] == "exact" for r in removed),
        "near": sum(r["kind"] == "near" for r in removed),
        "records_removed": len(records) - len(kept),
        "removed": removed,
    }
    return kept, report
