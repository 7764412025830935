"""The prompt-set format every prompt source writes and ``imitlab collect`` reads.

A prompt set is a JSONL file, one prompt per line::

    {"id": "sharegpt_500:17", "turns": ["first user message", "second user message"],
     "system": null, "source": "ShareGPT_V3_filtered_500.json", "meta": {"orig_id": "fzcoUcK_0"}}

``turns`` holds the user's messages in order; the teacher answers each in turn (a one-turn prompt is
the common case). ``id`` is unique within the set and stable across re-imports, so collection can resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from imitlab import fileio
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
    if not Path(path).is_file():
        raise PromptFormatError(f"{path}: file not found")
    return fileio.open_text(path)


def iter_json_records(path: str | os.PathLike[str]) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(where, number, record)`` for a JSONL file or a JSON array (:func:`imitlab.fileio.iter_records`).

    ``where`` is "file:LINE" for JSONL or "file: record N" for an array; errors are :class:`PromptFormatError`.
    """
    if not Path(path).is_file():
        raise PromptFormatError(f"{path}: file not found")
    try:
        yield from fileio.iter_records(path)
    except PromptFormatError:
        raise
    except ImitlabError as exc:
        raise PromptFormatError(str(exc)) from None


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
