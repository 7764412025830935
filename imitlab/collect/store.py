"""Append-only JSONL output that survives kill -9: resume with nothing lost and nothing duplicated.

Each batch of finished records goes to the file in one ``write`` on an ``O_APPEND`` descriptor followed
by ``fsync``; a SIGKILL can stop the process between batches but not tear a line in the middle of a
``write``. A power cut can leave a torn last line: :func:`load_done` cuts the file back to its last
complete line before resuming. Records waiting in memory when the process dies are simply collected
again on the next run (from the response cache, so at no cost).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_path, iter_jsonl, repair_tail

log = logging.getLogger(__name__)


def load_done(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Records already collected, keyed by (prompt_id, sample). Duplicates (which the writer never makes,
    but a hand-edited file might hold) are compacted away, keeping the first."""
    repair_tail(path)
    if not path.is_file():
        return {}
    done: dict[tuple[str, int], dict[str, Any]] = {}
    duplicates = 0
    for lineno, rec in iter_jsonl(path):
        try:
            key = (str(rec["prompt_id"]), int(rec["sample"]))
        except (KeyError, TypeError, ValueError):
            raise ImitlabError(f"{path}:{lineno}: lacks 'prompt_id'/'sample'; not a collect output") from None
        if key in done:
            duplicates += 1
            continue
        done[key] = rec
    if duplicates:
        log.warning("%s: %d duplicate records; rewriting the file without them", path, duplicates)
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for rec in done.values():
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return done


class AppendLog:
    """Group-committing JSONL appender for use inside one event loop.

    ``append`` never blocks on the disk; a single writer task writes whatever is queued in one ``write``
    and fsyncs it in a thread, so throughput does not depend on fsync latency.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._pending: list[bytes] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def append(self, record: dict[str, Any]) -> None:
        self._pending.append((json.dumps(record, ensure_ascii=False) + "\n").encode())
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                batch, self._pending = self._pending, []
                data = b"".join(batch)
                view = memoryview(data)
                while view:  # os.write on a regular file writes everything; loop for safety
                    n = os.write(self._fd, view)
                    view = view[n:]
                await asyncio.to_thread(os.fsync, self._fd)
                self.written += len(batch)
            if self._closing and not self._pending:
                return

    async def aclose(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        os.close(self._fd)
