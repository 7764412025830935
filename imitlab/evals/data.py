"""Reading benchmark files with errors that name the file, the line and the field.

JSONL benchmark files go through :func:`imitlab.fileio.iter_jsonl`; this module adds the CSV reader (MMLU).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from imitlab.errors import ImitlabError
from imitlab.fileio import read_text


def read_csv(path: Path, columns: int) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, row) of a header-less CSV whose rows all have ``columns`` fields."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))  # read_text: encodings, NUL bytes, gzip
    for row in reader:
        if not row:
            continue
        if len(row) != columns:
            raise ImitlabError(f"{path}:{reader.line_num}: expected {columns} fields, got {len(row)}")
        yield reader.line_num, row
