"""Reading benchmark files with errors that name the file, the line and the field."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_jsonl(path: Path, required: dict[str, type | tuple[type, ...]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) for every non-blank line, checking each required field's type."""
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ImitlabError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ImitlabError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            for name, kind in required.items():
                if name not in record:
                    raise ImitlabError(f"{path}:{lineno}: missing field {name!r}")
                if not isinstance(record[name], kind):
                    raise ImitlabError(
                        f"{path}:{lineno}: field {name!r} should be {_names(kind)}, got {type(record[name]).__name__}"
                    )
            yield lineno, record


def read_csv(path: Path, columns: int) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, row) of a header-less CSV whose rows all have ``columns`` fields."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        for row in reader:
            if not row:
                continue
            if len(row) != columns:
                raise ImitlabError(f"{path}:{reader.line_num}: expected {columns} fields, got {len(row)}")
            yield reader.line_num, row


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
