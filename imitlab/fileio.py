"""Files that survive crashes: atomic writes (a reader, or a crash, never sees a half-written file or
directory), and the one JSONL reader and torn-tail repair every append-only log in imitlab uses."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``dest``; on success rename it onto ``dest``, on error delete it.

    The temporary lives in the same directory so the final ``os.replace`` is a same-filesystem rename,
    which POSIX makes atomic. Its name starts with ``.tmp-`` so a crashed leftover is never mistaken
    for a cache entry (and :func:`clean_stale_temps` can sweep it).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".tmp-{dest.name}-", dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp create private (0600/0700) entries; give the result the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod((0o777 if is_dir else 0o666) & ~umask)
        if is_dir and dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def clean_stale_temps(directory: str | os.PathLike[str]) -> None:
    """Remove ``.tmp-*`` leftovers of writes that were killed before they could clean up."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for leftover in directory.glob(".tmp-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Open a UTF-8 text file for reading, gunzipping a ``.gz`` one."""
    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def iter_records(path: str | os.PathLike[str]) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(where, number, record)`` from a JSONL file or a JSON document (gzipped or not).

    A file whose text starts with ``[``, or is named ``*.json``, is one JSON document: an array of records,
    or a single record. Anything else is JSONL, blank lines skipped. ``where`` is ``file:LINE`` (JSONL) or
    ``file: record N`` (array), for error messages. Records are not checked; callers check their shape.
    """
    from imitlab.errors import ImitlabError

    path = Path(path)
    if not path.is_file():
        raise ImitlabError(f"file not found: {path}")
    with open_text(path) as f:
        head = f.read(4096).lstrip()
    if head.startswith("[") or path.name.removesuffix(".gz").endswith(".json"):
        with open_text(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise ImitlabError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if isinstance(data, dict):  # a single record; {"data": [...]}-style wrappers are not guessed at
            data = [data]
        if not isinstance(data, list):
            raise ImitlabError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
        for number, record in enumerate(data, 1):
            yield f"{path}: record {number}", number, record
        return
    for lineno, record in _json_lines(path):
        yield f"{path}:{lineno}", lineno, record


def iter_jsonl(
    path: str | os.PathLike[str], required: dict[str, type | tuple[type, ...]] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) for every non-blank line of a JSONL file (gzipped or not).

    Every error names the file and line: a line that is not JSON, not an object, or lacks a ``required``
    field of the given type.
    """
    from imitlab.errors import ImitlabError

    path = Path(path)
    if not path.is_file():
        raise ImitlabError(f"file not found: {path}")
    for lineno, record in _json_lines(path):
        if not isinstance(record, dict):
            raise ImitlabError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        for name, kind in (required or {}).items():
            if name not in record:
                raise ImitlabError(f"{path}:{lineno}: missing field {name!r}")
            if not isinstance(record[name], kind):
                raise ImitlabError(
                    f"{path}:{lineno}: field {name!r} should be {_type_names(kind)}, got {type(record[name]).__name__}"
                )
        yield lineno, record


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for every non-blank line; a line that is not JSON names file and line."""
    from imitlab.errors import ImitlabError

    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ImitlabError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of a JSONL file, in order (see :func:`iter_jsonl` for the errors)."""
    return [record for _, record in iter_jsonl(path)]


def repair_tail(path: str | os.PathLike[str]) -> int:
    """Cut a torn last line (no trailing newline: a write killed mid-line) off an append-only JSONL file,
    so the next append starts on a clean line. Returns the number of bytes removed."""
    path = Path(path)
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        keep, pos = 0, size  # walk back to the previous newline in blocks, never reading the whole file
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            idx = f.read(step).rfind(b"\n")
            if idx >= 0:
                keep = pos + idx + 1
                break
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    log.warning("%s: removed a torn last line (%d bytes) left by an interrupted write", path, size - keep)
    return size - keep
