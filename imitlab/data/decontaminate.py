"""N-gram decontamination against the evaluation sets, with a report of what was removed.

The GPT-3 rule: a training conversation is contaminated if it shares any ``n``-word sequence (``n=13``)
with an evaluation item; an item shorter than ``n`` words (most NQ and TriviaQA questions) counts as
one sequence, matched whole, if it has at least ``min_words`` words (shorter ones, like "who is the
president", are too generic to call a leak). Text is compared as lower-cased word tokens. A match
removes the whole group (all samples of that prompt).

Evaluation sets are named as everywhere else in imitlab and read from the data directory
(``imitlab.config.data_dir``) through a catalogue the caller passes in (:data:`imitlab.eval_sets.CATALOGUE`: each
benchmark by its ``Task`` declaration, each judge prompt set by the judge's loader), so this data stage imports
nothing about evaluation or judging. Any prompt file the importers read can be added (``eval_files``). Public
entry point: :func:`decontaminate`.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Protocol

import pydantic

from imitlab.data.schema import all_text, group_key, user_text
from imitlab.errors import ImitlabError
from imitlab.prompts.importers import import_prompts
from imitlab.stage_config import StageConfig

_WORD = re.compile(r"\w+", re.UNICODE)


class EvalSetCatalogue(Protocol):
    """Where the evaluation sets come from, by name: :data:`imitlab.eval_sets.CATALOGUE` (benchmarks, judge prompt
    sets and a few public sets), passed in by the caller so this data stage imports nothing about evaluation."""

    def names(self) -> list[str]: ...

    def texts(self, name: str, root: Path) -> list[str]: ...


class DecontamConfig(StageConfig):
    eval_sets: list[str] | None = None  # None: every set the catalogue knows
    eval_files: list[Path] = pydantic.Field(default_factory=list)  # extra evaluation prompts, any importable format
    data_dir: Path | None = None  # default: $IMITLAB_DATA
    n: int = 13
    min_words: int = 6
    check: Literal["prompt", "all"] = "all"  # compare only the user turns, or the answers too


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class NgramIndex:
    """Hashes of evaluation n-grams (and of whole short items), each mapped to the item it came from."""

    def __init__(self, n: int, min_words: int) -> None:
        self.n = n
        self.min_words = min_words
        self.by_len: dict[int, dict[int, int]] = {}  # sequence length -> hash -> item number
        self.items: list[tuple[str, int, str]] = []  # (eval set, index in set, text)
        self.skipped_short = 0

    def add(self, eval_set: str, index: int, text: str) -> None:
        words = _words(text)
        if len(words) < self.min_words:
            self.skipped_short += 1
            return
        item = len(self.items)
        self.items.append((eval_set, index, text))
        size = min(self.n, len(words))
        table = self.by_len.setdefault(size, {})
        for i in range(len(words) - size + 1):
            table.setdefault(hash(tuple(words[i : i + size])), item)

    def match(self, text: str) -> tuple[int, str] | None:
        """The first evaluation item that shares a sequence with ``text``, and that sequence."""
        words = _words(text)
        for size, table in sorted(self.by_len.items(), reverse=True):
            for i in range(len(words) - size + 1):
                item = table.get(hash(tuple(words[i : i + size])))
                if item is not None:
                    return item, " ".join(words[i : i + size])
        return None


def build_index(cfg: DecontamConfig, catalogue: EvalSetCatalogue | None = None) -> tuple[NgramIndex, dict[str, int]]:
    index = NgramIndex(cfg.n, cfg.min_words)
    sizes: dict[str, int] = {}
    if catalogue is None and cfg.eval_sets != []:
        raise ImitlabError("named evaluation sets need a catalogue: pass imitlab.eval_sets.CATALOGUE")
    known = catalogue.names() if catalogue is not None else []
    names = known if cfg.eval_sets is None else cfg.eval_sets
    unknown = [s for s in names if s not in known]
    if unknown:
        raise ImitlabError(f"unknown evaluation set(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if names:
        from imitlab.config import data_dir

        assert catalogue is not None
        root = data_dir(cfg.data_dir)
        for name in names:
            try:
                texts = catalogue.texts(name, root)
            except (KeyError, TypeError) as exc:
                raise ImitlabError(
                    f"evaluation set {name} in {root} does not have the expected fields ({exc})"
                ) from None
            if not texts:
                raise ImitlabError(f"evaluation set {name}: no files found under {root}")
            for i, text in enumerate(texts):
                index.add(name, i, text)
            sizes[name] = len(texts)
    for path in cfg.eval_files:
        records = import_prompts([path], turns="all", dedupe=False).records
        for i, rec in enumerate(records):
            for turn in rec.turns:
                index.add(Path(path).name, i, turn)
        sizes[Path(path).name] = len(records)
    if not sizes:
        raise ImitlabError("no evaluation sets given to decontaminate against")
    return index, sizes


def decontaminate(
    records: list[dict[str, Any]], cfg: DecontamConfig | None = None, catalogue: EvalSetCatalogue | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the clean records and a report naming each removed group, the eval item and the shared words.
    Named sets (``cfg.eval_sets``; None: all) are read through ``catalogue`` (:data:`imitlab.eval_sets.CATALOGUE`)."""
    cfg = cfg or DecontamConfig()
    index, sizes = build_index(cfg, catalogue)
    text_of = user_text if cfg.check == "prompt" else all_text
    bad: dict[str, dict[str, Any]] = {}
    for rec in records:
        gid = group_key(rec)
        if gid in bad:
            continue
        hit = index.match(text_of(rec))
        if hit is not None:
            item, ngram = hit
            eval_set, eval_index, eval_text = index.items[item]
            bad[gid] = {
                "group": gid,
                "record": rec["id"],
                "eval_set": eval_set,
                "eval_index": eval_index,
                "eval_text": eval_text[:300],
                "shared": ngram,
            }
    kept = [r for r in records if group_key(r) not in bad]
    report = {
        "n": cfg.n,
        "min_words": cfg.min_words,
        "check": cfg.check,
        "eval_sets": sizes,
        "eval_items_indexed": len(index.items),
        "eval_items_too_short": index.skipped_short,
        "groups_removed": len(bad),
        "records_removed": len(records) - len(kept),
        "removed_by_eval_set": dict(Counter(b["eval_set"] for b in bad.values())),
        "removed": list(bad.values()),
    }
    return kept, report
