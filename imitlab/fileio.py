"""Atomic writes: a reader, or a crash, never sees a half-written file or directory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
