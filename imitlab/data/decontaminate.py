"""N-gram decontamination against the evaluation sets, with a report of what was removed.

The GPT-3 rule: a training conversation is contaminated if it shares any ``n``-word sequence (``n=13``)
with an evaluation item; an item shorter than ``n`` words (most NQ and TriviaQA questions) counts as
one sequence, matched whole, if it has at least ``min_words`` words (shorter ones, like "who is the
president", are too generic to call a leak). Text is compared as lower-cased word tokens. A match
removes the whole group (all samples of that prompt).

Evaluation sets are named as everywhere else in imitlab (:func:`eval_set_names`) and read from the data
directory (``imitlab.config.data_dir``) by whoever declares them: a registered benchmark's items through its
``Task`` declaration (:func:`imitlab.evals.task.contamination_texts`), a judge prompt set through
:func:`imitlab.judge.sources.load_prompts` (the prompts it judges: mt-bench's first turns), and the few public
sets imitlab does not run (:data:`OTHER_EVAL_SETS`) here. Reading those declarations is this module's one
reach past the data stage; nothing else about evaluation or judging is imported. Any prompt file the importers
read can be added (``eval_files``). Public entry point: :func:`decontaminate`.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pydantic

from imitlab.data.schema import all_text, group_key, user_text
from imitlab.errors import ImitlabError
from imitlab.fileio import read_text
from imitlab.prompts.importers import import_prompts
from imitlab.prompts.schema import iter_json_records
from imitlab.stage_config import StageConfig

_WORD = re.compile(r"\w+", re.UNICODE)


def _jsonl_field(rel: str, key: str, strip: tuple[str, ...] = ()) -> Callable[[Path], Iterator[str]]:
    def load(root: Path) -> Iterator[str]:
        for path in sorted(root.glob(rel)):
            for _, _, obj in iter_json_records(path):
                value = obj[key]
                for text in value if isinstance(value, list) else [value]:
                    for s in strip:
                        text = text.replace(s, " ")
                    yield text

    return load


def _csv_column(rel: str, column: int, header: bool) -> Callable[[Path], Iterator[str]]:
    def load(root: Path) -> Iterator[str]:
        for path in sorted(root.glob(rel)):
            rows = csv.reader(io.StringIO(read_text(path), newline=""))
            if header:
                next(rows, None)
            for row in rows:
                if len(row) > column:
                    yield row[column]

    return load


# Public evaluation sets imitlab neither scores nor judges (no declaration elsewhere holds their files), kept
# out of training data all the same: a study may be evaluated on them elsewhere.
OTHER_EVAL_SETS: dict[str, Callable[[Path], Iterator[str]]] = {
    "mbpp": _jsonl_field("mbpp/mbpp.jsonl", "text"),
    "truthfulqa": _csv_column("truthfulqa/TruthfulQA.csv", 2, header=True),
}


def eval_set_names() -> list[str]:
    """Every evaluation set, by the name the rest of imitlab uses: the registered benchmarks (``nq_open``,
    ``arc_easy``, ...), the judge's prompt sets (``koala``, ``vicuna80``, ``mt-bench``, ``alpaca-eval``), and
    :data:`OTHER_EVAL_SETS`."""
    from imitlab.evals.task import known_tasks
    from imitlab.judge.sources import PROMPT_SETS

    return [*known_tasks(), *PROMPT_SETS, *OTHER_EVAL_SETS]


def eval_texts(name: str, root: Path) -> list[str]:
    """The texts of evaluation set ``name`` under the data directory ``root``, read by its own declaration."""
    from imitlab.evals.task import contamination_texts, get_task, known_tasks
    from imitlab.judge.sources import PROMPT_SETS, load_prompts

    if name in known_tasks():
        return list(contamination_texts(get_task(name), root))
    if name in PROMPT_SETS:
        return [item.prompt for item in load_prompts(name, data=root)]
    if name in OTHER_EVAL_SETS:
        return list(OTHER_EVAL_SETS[name](root))
    raise ImitlabError(f"unknown evaluation set {name!r}; known: {', '.join(eval_set_names())}")


class DecontamConfig(StageConfig):
    eval_sets: list[str] = pydantic.Field(default_factory=eval_set_names)
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


def build_index(cfg: DecontamConfig) -> tuple[NgramIndex, dict[str, int]]:
    index = NgramIndex(cfg.n, cfg.min_words)
    sizes: dict[str, int] = {}
    known = eval_set_names() if cfg.eval_sets else []
    unknown = [s for s in cfg.eval_sets if s not in known]
    if unknown:
        raise ImitlabError(f"unknown evaluation set(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if cfg.eval_sets:
        from imitlab.config import data_dir

        root = data_dir(cfg.data_dir)
        for name in cfg.eval_sets:
            try:
                texts = eval_texts(name, root)
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
    records: list[dict[str, Any]], cfg: DecontamConfig | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the clean records and a report naming each removed group, the eval item and the shared words."""
    cfg = cfg or DecontamConfig()
    index, sizes = build_index(cfg)
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
