"""A response cache keyed by (teacher, messages, sampling parameters, sample index).

A rerun, a resumed run or a second sweep over the same prompts costs nothing: every successful teacher
answer is stored before it is written to the output. SQLite (stdlib) gives atomic, crash-safe commits
and lets several processes share one cache file. Only successes are cached; failures are retried.
The sample index is part of the key so that ``n_samples=2`` stores two distinct answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from imitlab.config import cache_dir


def cache_key(teacher: str, messages: list[dict[str, str]], params: dict[str, Any], sample: int) -> str:
    canonical = json.dumps(
        {"teacher": teacher, "messages": messages, "params": params, "sample": sample},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_cache_path(cache_root: str | os.PathLike[str] | None = None) -> Path:
    return cache_dir(cache_root) / "collect" / "responses.sqlite"


class ResponseCache:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0)
        # WAL lets readers and one writer work at once across processes; synchronous=NORMAL is still
        # crash-safe for the application (a crash loses at most the last commits, never corrupts).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)"
        )
        self._db.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
            (key, json.dumps(value, ensure_ascii=False), time.time()),
        )
        self._db.commit()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()
