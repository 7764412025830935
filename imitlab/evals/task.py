"""Benchmark declarations and the registry.

A benchmark is data plus a small declaration, the way lm-evaluation-harness declares tasks: where its items
come from (a loader over the data directory), how one item becomes a prompt (``str.format`` templates over
the item's fields), where its few-shot examples come from and how many, and how it is scored. The runner
reads only these fields, so a new benchmark is a new module in ``imitlab/evals/tasks/`` that calls
:func:`register`; nothing else changes.

Items are plain dicts with an ``"id"`` plus what their kind needs:

* ``choice``: ``choices`` (the continuations to score, without the delimiter) and ``gold`` (an index);
  ``letters`` tasks score answer letters (``choices`` = ``["A", "B", ...]``) and also carry ``options``.
* ``generate``: ``answers`` (every accepted gold answer).
* ``code``: ``prompt``, ``test``, ``entry_point`` (HumanEval's layout).

A declaration also carries the benchmark's facts that other stages need, so nothing else re-declares them:
its ``display_name`` (tables and plots), its ``headline`` metric (the one number a study reports), and
``contamination_fields``, the item fields whose text training data must not contain (decontamination reads
them through :func:`contamination_texts`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from imitlab.errors import ImitlabError
from imitlab.sources import HubRef

Item = dict[str, Any]
Kind = Literal["choice", "generate", "code"]


@dataclass(frozen=True)
class FewShot:
    """Where a task's k-shot examples come from: never its test items, and the same for every run."""

    k: int
    load: Callable[[Path], list[Item]]  # the pool of solved examples
    match: str | None = None  # an item's shots share this field's value with it (MMLU: the subject)


@dataclass(frozen=True)
class HubData:
    """The benchmark as the Hugging Face hub has it (lm-eval's ``dataset_path``/``dataset_name``/splits), and how
    its rows become the items the local loader gives. Read when no local files serve (imitlab.sources)."""

    ref: HubRef
    items: Callable[[list[dict[str, Any]]], list[Item]]  # the split's rows, in order -> items
    split: str = "test"
    fewshot_split: str | None = None  # the few-shot pool's split; its rows go through ``fewshot_items``
    fewshot_items: Callable[[list[dict[str, Any]]], list[Item]] | None = None  # default: ``items``


@dataclass(frozen=True)
class Task:
    name: str
    kind: Kind
    files: tuple[str, ...]  # relative to the data dir: checked up front, hashed into the manifest
    load: Callable[[Path], list[Item]]
    template: str  # one item's prompt, ``str.format(**item)``
    target: str = ""  # a solved shot's answer text, ``str.format(**item)``
    description: str = ""  # text before the shots, ``str.format(**item)``
    fewshot: FewShot | None = None
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    stop: tuple[str, ...] = ("\n",)
    max_tokens: int = 32
    metrics: tuple[str, ...] = ("em", "contains", "f1")  # generate tasks: names in metrics.GENERATE_METRICS
    group: str | None = None  # report per-value scores of this field (MMLU: subject)
    letters: bool = False  # choices are answer letters, so an API model can answer by letter
    about: str = ""
    display_name: str = ""  # how tables and plots name it (default: the registry name)
    headline: str = ""  # the metric a study reports (default: acc, pass@1, or the first of ``metrics``)
    contamination_fields: tuple[str, ...] = ("question",)  # item fields (str or list of str) to decontaminate
    hub: HubData | None = None  # the same benchmark on the hub, for machines without the local files
    # named subsets of the ``group`` values (lm-eval's task groups, e.g. MMLU's mmlu_stem -> its subjects)
    subsets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.display_name or self.name

    @property
    def headline_metric(self) -> str:
        if self.headline:
            return self.headline
        return {"choice": "acc", "code": "pass@1"}.get(self.kind) or self.metrics[0]

    def metric_names(self) -> tuple[str, ...]:
        """Every metric a summary of this task can hold (pass@k for k > 1 only with several samples)."""
        if self.kind == "choice":
            return ("acc",) + (() if self.letters else ("acc_norm",)) + (("acc_macro",) if self.group else ())
        if self.kind == "code":
            return ("pass@1", "pass@10", "pass@100")
        return self.metrics

    def shot_text(self, shot: Item) -> str:
        return self.template.format(**shot) + self.target_delimiter + self.target.format(**shot)

    def prefix(self, item: Item, shots: list[Item]) -> str:
        """Description plus the solved shots: the part every item with the same shots shares."""
        text = self.description.format(**item)
        return text + "".join(self.shot_text(s) + self.fewshot_delimiter for s in shots)


_REGISTRY: dict[str, Task] = {}
_LOADED = False


def register(task: Task) -> Task:
    if task.name in _REGISTRY:
        raise ValueError(f"benchmark {task.name!r} is registered twice")
    from imitlab.evals.metrics import GENERATE_METRICS

    unknown = [m for m in task.metrics if m not in GENERATE_METRICS]
    if task.kind == "generate" and unknown:
        raise ValueError(f"benchmark {task.name!r}: unknown metric(s) {unknown}; known: {sorted(GENERATE_METRICS)}")
    if task.headline_metric not in task.metric_names():
        raise ValueError(
            f"benchmark {task.name!r}: headline {task.headline_metric!r} is not one of its metrics "
            f"({', '.join(task.metric_names())})"
        )
    _REGISTRY[task.name] = task
    return task


def _load_builtin() -> None:
    global _LOADED
    if not _LOADED:
        from imitlab.evals import tasks

        for module in pkgutil.iter_modules(tasks.__path__):
            importlib.import_module(f"{tasks.__name__}.{module.name}")
        _LOADED = True


def known_tasks() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_task(name: str) -> Task:
    _load_builtin()
    if name not in _REGISTRY:
        raise ImitlabError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(known_tasks())}")
    return _REGISTRY[name]


def contamination_texts(task: Task, data_dir: Path | None) -> Iterator[str]:
    """The texts of the items ``task`` scores that training data must not contain (its ``contamination_fields``),
    read the way the runner reads them (local files, else the hub copy), so a benchmark's data is declared once."""
    from imitlab.evals.data import open_task_data

    for item in open_task_data(task, data_dir).items():
        for name in task.contamination_fields:
            value = item.get(name)
            if value is None:
                raise ImitlabError(f"{task.name}: item {item['id']!r} has no field {name!r} (contamination_fields)")
            yield from ([value] if isinstance(value, str) else value)


def check_files(task: Task, data_dir: Path) -> list[Path]:
    """The task's data files, or an error saying which is missing under which data directory."""
    paths = [data_dir / f for f in task.files]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ImitlabError(
            f"{task.name}: data not found: {', '.join(missing)} (data directory {data_dir}). "
            "Pass --data-dir DIR or set $IMITLAB_DATA=DIR to a directory laid out like shared/data."
        )
    return paths
