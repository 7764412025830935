"""The prompt-set format every prompt source writes and ``imitlab collect`` reads.

A prompt set is a JSONL file, one prompt per line::

    {"id": "sharegpt_500:17", "turns": ["first user message", "second user message"],
     "system": null, "source": "ShareGPT_V3_filtered_500.json", "meta": {"orig_id": "fzcoUcK_0"}}

``turns`` holds the user's messages in order; the teacher answers each in turn (a one-turn prompt is
the common case). ``id`` is unique within the set and stable across re-imports, so collection can resume.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_path


class PromptFormatError(ImitlabError, ValueError):
    """A prompt or data file does not have the expected shape (the message names file, line and field)."""


@dataclass(frozen=True)
class PromptRecord:
    id: str
    turns: list[str]
    source: str = ""
    system: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Open a text file for reading, transparently un-gzipping ``*.gz``."""
    path = Path(path)
    if not path.is_file():
        raise PromptFormatError(f"{path}: file not found")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_json_records(path: str | os.PathLike[str]) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(where, number, record)`` for a JSONL file or a JSON array.

    ``where`` is "file:LINE" for JSONL or "file: record N" for an array; ``number`` is the line or record number.

    Blank JSONL lines are skipped; a line that is not JSON is an error naming the file and line.
    """
    path = Path(path)
    name = path.name.removesuffix(".gz")
    with open_text(path) as f:
        if name.endswith(".json"):
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise PromptFormatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
            if isinstance(data, dict):  # a single object, or {"data": [...]}-style wrappers are not guessed at
                data = [data]
            if not isinstance(data, list):
                raise PromptFormatError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
            for i, record in enumerate(data, 1):
                yield f"{path}: record {i}", i, record
            return
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PromptFormatError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            yield f"{path}:{lineno}", lineno, record


def _check_record(where: str, obj: Any) -> PromptRecord:
    if not isinstance(obj, dict):
        raise PromptFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    pid = obj.get("id")
    if not isinstance(pid, str) or not pid:
        raise PromptFormatError(f"{where}: field 'id' must be a non-empty string")
    turns = obj.get("turns")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise PromptFormatError(f"{where}: field 'turns' must be a non-empty list of non-empty strings")
    system = obj.get("system")
    if system is not None and not isinstance(system, str):
        raise PromptFormatError(f"{where}: field 'system' must be a string or null")
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise PromptFormatError(f"{where}: field 'meta' must be an object")
    return PromptRecord(id=pid, turns=turns, source=str(obj.get("source", "")), system=system, meta=meta)


def read_prompt_set(path: str | os.PathLike[str]) -> list[PromptRecord]:
    """Read and validate a prompt set. Duplicate ids and an empty set are errors."""
    records: list[PromptRecord] = []
    seen: dict[str, str] = {}
    for where, _, obj in iter_json_records(path):
        record = _check_record(where, obj)
        if record.id in seen:
            raise PromptFormatError(f"{where}: duplicate id {record.id!r} (first at {seen[record.id]})")
        seen[record.id] = where
        records.append(record)
    if not records:
        raise PromptFormatError(f"{path}: the prompt set is empty")
    return records


def write_prompt_set(path: str | os.PathLike[str], records: Iterable[PromptRecord]) -> int:
    """Write a prompt set atomically; returns the number written. Refuses an empty set and duplicate ids."""
    records = list(records)
    if not records:
        raise PromptFormatError(f"{path}: refusing to write an empty prompt set")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise PromptFormatError(f"{path}: duplicate prompt id {dup!r}")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
    return len(records)
