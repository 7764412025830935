"""The catalogue of evaluation sets, by the names the rest of imitlab uses, for decontamination.

Every registered benchmark (its items' ``contamination_fields``, read by its ``Task`` declaration), every judge
prompt set (the prompts it judges: mt-bench's first turns), and the few public sets imitlab neither scores nor
judges (:data:`OTHER_EVAL_SETS`). It sits above ``evals`` and ``judge`` so that the data stage
(``imitlab.data.decontaminate``) can take it as an argument instead of importing them: the CLI and the sweep
pass :data:`CATALOGUE` in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

from imitlab.errors import ImitlabError
from imitlab.fileio import read_text
from imitlab.prompts.schema import iter_json_records


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


class Catalogue:
    """:class:`imitlab.data.decontaminate.EvalSetCatalogue` over the registries."""

    def names(self) -> list[str]:
        return eval_set_names()

    def texts(self, name: str, root: Path) -> list[str]:
        return eval_texts(name, root)


CATALOGUE = Catalogue()
