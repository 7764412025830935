"""Reading benchmark data: local files with errors that name the file, the line and the field, or the same
benchmark through ``datasets`` (a local ``datasets`` folder or the hub; see :mod:`imitlab.sources`).

JSONL benchmark files go through :func:`imitlab.fileio.iter_jsonl`; this module adds the CSV reader (MMLU) and
:func:`open_task_data`, the one place the runner gets a benchmark's items and few-shot pool from.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.evals.task import Item, Task, check_files
from imitlab.fileio import read_text, sha256_file
from imitlab.sources import DataSourceError, Located, env_var, load_rows, locate, rows_sha256


def read_csv(path: Path, columns: int) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, row) of a header-less CSV whose rows all have ``columns`` fields."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))  # read_text: encodings, NUL bytes, gzip
    for row in reader:
        if not row:
            continue
        if len(row) != columns:
            raise ImitlabError(f"{path}:{reader.line_num}: expected {columns} fields, got {len(row)}")
        yield reader.line_num, row


# -- where a benchmark's items come from ----------------------------------------------------------------------
@dataclass
class TaskData:
    """A benchmark's items and few-shot pool, read from its local files or through ``datasets`` (imitlab.sources)."""

    task: Task
    located: Located
    _cache: dict[str, list[Item]] = field(default_factory=dict, repr=False)

    def items(self) -> list[Item]:
        if "items" not in self._cache:
            self._cache["items"] = self._read(fewshot=False)
        return self._cache["items"]

    def fewshot_pool(self) -> list[Item]:
        if self.task.fewshot is None:
            return []
        if "fewshot" not in self._cache:
            self._cache["fewshot"] = self._read(fewshot=True)
        return self._cache["fewshot"]

    def sha256(self) -> str:
        """The data's digest: the task's files (as before the hub path existed), else the rows read."""
        if self.located.origin == "files":
            return hash_paths(check_files(self.task, self.located.data_dir))  # type: ignore[arg-type]
        rows = self._rows(fewshot=False) + (self._rows(fewshot=True) if self._has_fewshot_split() else [])
        return rows_sha256(rows)

    def describe(self) -> dict[str, str]:
        described = self.located.describe()
        if self.located.origin == "datasets" and self.task.hub is not None:
            described["split"] = self.task.hub.split
            if self._has_fewshot_split():
                described["fewshot_split"] = self.task.hub.fewshot_split  # type: ignore[assignment]
        return described

    def _has_fewshot_split(self) -> bool:
        return self.task.fewshot is not None and self.task.hub is not None and self.task.hub.fewshot_split is not None

    def _read(self, fewshot: bool) -> list[Item]:
        if self.located.origin == "files":
            root = self.located.data_dir
            assert root is not None
            return self.task.fewshot.load(root) if fewshot else self.task.load(root)  # type: ignore[union-attr]
        hub = self.task.hub
        assert hub is not None
        rows = self._rows(fewshot)
        convert = (hub.fewshot_items or hub.items) if fewshot else hub.items
        try:
            return convert(rows)
        except (KeyError, TypeError, ValueError, IndexError) as exc:  # rows without the hub data set's columns
            raise DataSourceError(
                f"{self.task.name}: {self.located.ref} does not have the columns of {hub.ref} "
                f"({type(exc).__name__}: {exc})"
            ) from None

    def _rows(self, fewshot: bool) -> list[dict[str, Any]]:
        key = "rows:fewshot" if fewshot else "rows"
        if key not in self._cache:
            hub = self.task.hub
            assert hub is not None
            if fewshot and hub.fewshot_split is None:
                raise DataSourceError(f"{self.task.name}: its hub copy {hub.ref} declares no few-shot split")
            split = hub.fewshot_split if fewshot else hub.split
            self._cache[key] = load_rows(self.located, split, primary=not fewshot)  # type: ignore[arg-type]
        return self._cache[key]  # type: ignore[return-value]


def open_task_data(
    task: Task, data_dir: str | os.PathLike[str] | None, overrides: Mapping[str, str] | None = None
) -> TaskData:
    """Where ``task``'s items come from: ``--dataset``/``$IMITLAB_DATASET_<NAME>``, else its files under the data
    directory, else its hub copy. Nothing is read yet; an error here names what would serve instead."""
    explicit = (overrides or {}).get(task.name) or os.environ.get(env_var(task.name))
    if explicit and task.hub is None:
        raise DataSourceError(
            f"{task.name}: --dataset/{env_var(task.name)} needs a hub declaration (Task.hub) to map rows to items; "
            "this benchmark reads only its local files"
        )
    hub = task.hub.ref if task.hub is not None else None
    return TaskData(task, locate(task.name, task.files, hub, data_dir=data_dir, overrides=overrides))


def hash_paths(paths: list[Path]) -> str:
    """One digest over files and folders (every file below them, by name and content)."""
    digest = hashlib.sha256()
    for path in paths:
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                digest.update(f"{f.name}:{sha256_file(f)}\n".encode())
    return digest.hexdigest()
